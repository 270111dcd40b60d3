//! Is a VM's SSH answering? The banner says sshd runs; a real login with the pinned host key
//! says the seed worked and the inventory is usable.

use super::layout::VmSpec;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether `addr:22` sends an SSH banner within a second or two.
pub fn banner(vm: &VmSpec) -> bool {
    let sa = SocketAddr::from((vm.addr, 22));
    let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    matches!(s.read(&mut buf), Ok(n) if n >= 4 && buf.starts_with(b"SSH-"))
}

/// The system ssh client's arguments for logging in to `vm` with the lab key and strict
/// host-key checking against the lab's known_hosts.
pub fn ssh_args(vm: &VmSpec, key: &Path, known_hosts: &Path) -> Vec<String> {
    vec![
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "ConnectTimeout=5".into(),
        format!("root@{}", vm.addr),
    ]
}

/// Whether a batch-mode login to `vm` succeeds (runs `true` there).
pub fn login(vm: &VmSpec, key: &Path, known_hosts: &Path) -> bool {
    Command::new("ssh")
        .args(["-o", "BatchMode=yes"])
        .args(ssh_args(vm, key, known_hosts))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
