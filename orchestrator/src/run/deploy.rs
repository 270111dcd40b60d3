//! Putting `c1m-server` and `c1m-client` on a host before a run over SSH: into one directory,
//! skipping files whose SHA-256 and mode already match, and refusing a host that cannot run
//! them with the loader's own words (an older glibc names the missing `GLIBC_2.xx`).

use crate::check::facts::HostFacts;
use c1m_transport::upload::upload_if_changed;
use c1m_transport::{shell_quote, Transport};
use std::path::Path;

/// The binaries every host gets.
pub const BINARIES: [&str; 2] = ["c1m-server", "c1m-client"];

/// What a deploy did on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployed {
    pub uploaded: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Deploys the binaries from `local_dir` to `remote_dir` on the host behind `t`.
pub fn deploy(
    t: &mut dyn Transport,
    facts: &HostFacts,
    local_dir: &Path,
    remote_dir: &str,
) -> Result<Deployed, String> {
    let host = t.host().to_string();
    let ours = std::env::consts::ARCH;
    if !facts.arch.is_empty() && facts.arch != ours {
        return Err(format!(
            "{host}: its architecture is {}, and these binaries are built for {ours}; \
             build c1m on a {} machine to test this host",
            facts.arch, facts.arch
        ));
    }
    let dir = shell_quote(remote_dir);
    let made = t
        .exec(&format!("mkdir -p -- {dir}"), None)
        .map_err(|e| format!("{host}: {e}"))?;
    if !made.success() {
        return Err(format!(
            "{host}: cannot create {remote_dir}: {}",
            made.stderr_str().trim()
        ));
    }
    let mut d = Deployed::default();
    for name in BINARIES {
        let local = local_dir.join(name);
        let remote = format!("{}/{name}", remote_dir.trim_end_matches('/'));
        let sent =
            upload_if_changed(t, &local, &remote, 0o755).map_err(|e| format!("{host}: {e}"))?;
        if sent {
            d.uploaded.push(name.to_string());
        } else {
            d.unchanged.push(name.to_string());
        }
        // Run it once: the dynamic loader says exactly what a host lacks.
        let out = t
            .exec(&format!("{} --version", shell_quote(&remote)), None)
            .map_err(|e| format!("{host}: {e}"))?;
        if !out.success() {
            return Err(format!(
                "{host} cannot run {name} (glibc {} there): {}",
                if facts.glibc.is_empty() {
                    "unknown"
                } else {
                    &facts.glibc
                },
                out.stderr_str().trim()
            ));
        }
    }
    Ok(d)
}
