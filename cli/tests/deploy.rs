//! Deploying the binaries to a real sshd host: uploads once, skips unchanged files, names what
//! a host that cannot run them lacks.

mod support;

use c1m_orchestrator::check::facts;
use c1m_orchestrator::run::deploy::{deploy, BINARIES};
use c1m_transport::ssh::{self, SshConfig};
use c1m_transport::{Become, Transport};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::Lab;

fn bin_dir() -> PathBuf {
    std::env::var_os("C1M_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_c1m"))
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

fn connect(lab: &Lab) -> Box<dyn Transport> {
    let h = &lab.hosts[0];
    ssh::connect(&SshConfig {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        key_file: Some(lab.keys.ed25519.clone()),
        known_hosts: lab.known_hosts.clone(),
        accept_new_host_keys: false,
        become_: Become::default(),
        connect_timeout: Duration::from_secs(5),
    })
    .expect("ssh to the test host")
}

#[test]
fn second_deploy_uploads_nothing_and_a_changed_binary_is_sent_again() {
    let Some(lab) = Lab::start("deploy", 1) else {
        return;
    };
    let mut t = connect(&lab);
    let f = facts::gather(t.as_mut()).unwrap();
    // The test host is a network namespace on this filesystem: a scratch directory keeps the
    // real /var/lib/c1m/bin untouched.
    let remote = lab.dir.join("remote-bin");
    let remote = remote.to_str().unwrap();
    let local = lab.dir.join("local-bin");
    std::fs::create_dir_all(&local).unwrap();
    for b in BINARIES {
        std::fs::copy(bin_dir().join(b), local.join(b)).unwrap();
    }

    let first = deploy(t.as_mut(), &f, &local, remote).unwrap();
    assert_eq!(first.uploaded, BINARIES.to_vec());
    let second = deploy(t.as_mut(), &f, &local, remote).unwrap();
    assert!(second.uploaded.is_empty(), "{second:?}");
    assert_eq!(second.unchanged, BINARIES.to_vec());
    let mode = std::fs::metadata(Path::new(remote).join("c1m-server"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // Trailing bytes leave an ELF runnable but change its hash.
    let mut data = std::fs::read(local.join("c1m-server")).unwrap();
    data.extend_from_slice(b"\0rebuilt");
    std::fs::write(local.join("c1m-server"), data).unwrap();
    let third = deploy(t.as_mut(), &f, &local, remote).unwrap();
    assert_eq!(third.uploaded, vec!["c1m-server".to_string()]);
    assert_eq!(third.unchanged, vec!["c1m-client".to_string()]);
}

#[test]
fn a_host_that_cannot_run_the_binaries_is_refused_with_the_reason() {
    let Some(lab) = Lab::start("deploy_refused", 1) else {
        return;
    };
    let mut t = connect(&lab);
    let mut f = facts::gather(t.as_mut()).unwrap();
    let remote = lab.dir.join("remote-bin");
    let remote = remote.to_str().unwrap();

    // What the loader prints when the host's glibc is older than the build machine's.
    let local = lab.dir.join("old-glibc");
    std::fs::create_dir_all(&local).unwrap();
    for b in BINARIES {
        std::fs::write(
            local.join(b),
            format!("#!/bin/sh\necho \"{b}: /lib/x86_64-linux-gnu/libc.so.6: version \\`GLIBC_2.99' not found\" >&2\nexit 1\n"),
        )
        .unwrap();
    }
    let e = deploy(t.as_mut(), &f, &local, remote).unwrap_err();
    assert!(e.contains("cannot run c1m-server"), "{e}");
    assert!(e.contains("GLIBC_2.99"), "{e}");
    assert!(e.starts_with(&lab.hosts[0].name), "{e}");

    f.arch = "aarch64".into();
    let e = deploy(t.as_mut(), &f, &bin_dir(), remote).unwrap_err();
    assert!(e.contains("architecture is aarch64"), "{e}");
}
