//! The SSH transport against real OpenSSH servers in network namespaces (see `support`).

mod support;

use c1m::transport::ssh::{self, SshConfig};
use c1m::transport::{Become, Transport};
use std::path::Path;
use std::time::Duration;
use support::{Lab, SshHost};

fn config(lab: &Lab, host: &SshHost, user: &str, key: &Path) -> SshConfig {
    SshConfig {
        name: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
        user: user.to_string(),
        key_file: Some(key.to_path_buf()),
        known_hosts: lab.known_hosts.clone(),
        accept_new_host_keys: false,
        become_: Become::default(),
        connect_timeout: Duration::from_secs(5),
    }
}

fn root_config(lab: &Lab) -> SshConfig {
    config(lab, &lab.hosts[0], "root", &lab.keys.ed25519)
}

fn connect(cfg: &SshConfig) -> Box<dyn Transport> {
    ssh::connect(cfg).unwrap_or_else(|e| panic!("connect {}: {e}", cfg.name))
}

#[test]
fn exec_returns_stdout_stderr_and_status() {
    let Some(lab) = Lab::start("exec_returns_stdout_stderr_and_status", 1) else {
        return;
    };
    let mut t = connect(&root_config(&lab));
    let out = t
        .exec("echo out; echo err >&2; id -un; exit 3", None)
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout_str(), "out\nroot\n");
    assert_eq!(out.stderr_str(), "err\n");
    let out = t.exec("true", None).unwrap();
    assert!(out.success() && out.stdout.is_empty() && out.stderr.is_empty());
    // Killed by a signal.
    assert_eq!(t.exec("kill -9 $$", None).unwrap().status, -1);
    assert_eq!(t.host(), "h0");
}
