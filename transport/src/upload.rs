//! Deploying a file only when it differs, so re-running a playbook does not re-send binaries.

use super::{shell_quote, Transport, TransportError};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Uploads `local` to `remote` with `mode` unless the remote file already has the same SHA-256
/// and mode; `Ok(true)` when it uploaded (or fixed the mode).
pub fn upload_if_changed(
    t: &mut dyn Transport,
    local: &Path,
    remote: &str,
    mode: u32,
) -> Result<bool, TransportError> {
    let data = std::fs::read(local)
        .map_err(|e| TransportError::Io(format!("cannot read {}: {e}", local.display())))?;
    let want = hex(&Sha256::digest(&data));
    let r = shell_quote(remote);
    let out = t.exec(
        &format!("[ -f {r} ] || exit 0; sha256sum -- {r} && stat -c %a -- {r}"),
        None,
    )?;
    if !out.success() {
        return Err(TransportError::Io(format!(
            "{}: cannot hash {remote}: {}",
            t.host(),
            out.stderr_str().trim()
        )));
    }
    let stdout = out.stdout_str();
    let mut lines = stdout.lines();
    let have = lines.next().and_then(|l| l.split_whitespace().next());
    let have_mode = lines
        .next()
        .and_then(|m| u32::from_str_radix(m.trim(), 8).ok());
    if have == Some(want.as_str()) && have_mode == Some(mode & 0o7777) {
        return Ok(false);
    }
    t.write_file(remote, &data, mode)?;
    Ok(true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
