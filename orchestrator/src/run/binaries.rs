//! Finding `c1m-server` and `c1m-client`: they are built and shipped beside `c1m`.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// The path of a companion binary: `$C1M_BIN_DIR/NAME`, else the directory of the running `c1m`.
pub fn locate(name: &str) -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("C1M_BIN_DIR") {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p);
        }
    }
    bail!(
        "cannot find `{name}` (looked at {}); build it with `cargo build --release --workspace --bins` \
         or point C1M_BIN_DIR at the directory that holds it",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The directory `c1m-server` and `c1m-client` are in here (both are looked up).
pub fn dir() -> Result<PathBuf> {
    let server = locate("c1m-server")?;
    let client = locate("c1m-client")?;
    match (server.parent(), client.parent()) {
        (Some(a), Some(b)) if a == b => Ok(a.to_path_buf()),
        _ => bail!(
            "{} and {} are not in one directory; point C1M_BIN_DIR at a directory that holds both",
            server.display(),
            client.display()
        ),
    }
}
