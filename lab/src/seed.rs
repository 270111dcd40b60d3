//! Keys and seed disks. The host generates each VM's ed25519 host key before the VM first boots
//! and hands it over on a read-only seed disk (a tar archive the image's `c1m-seed` unit
//! unpacks before sshd starts). The host therefore knows every host key without ever trusting
//! the network for it, and strict host-key checking holds from the first connection.

use super::exec::run;
use super::layout::VmSpec;
use anyhow::{Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Creates the lab's login key at `key` unless it exists; returns its public half.
pub fn ensure_login_key(key: &Path) -> Result<String> {
    if !key.is_file() {
        keygen(key, "c1m-lab")?;
    }
    read_pub(key)
}

fn keygen(key: &Path, comment: &str) -> Result<()> {
    if let Some(dir) = key.parent() {
        fs::create_dir_all(dir)?;
    }
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(key))?;
    Ok(())
}

fn read_pub(key: &Path) -> Result<String> {
    let p = key.with_extension("pub");
    let s = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(s.trim().to_string())
}

/// Writes `vm_dir/seed.tar` for `vm` (fresh host key, root's authorized_keys) and returns the
/// host key's public line (`ssh-ed25519 AAAA… comment`).
pub fn write_seed(vm: &VmSpec, vm_dir: &Path, login_pub: &str) -> Result<String> {
    let tree = vm_dir.join("seed");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    let ssh_dir = tree.join("etc/ssh");
    let root_ssh = tree.join("root/.ssh");
    fs::create_dir_all(&ssh_dir)?;
    fs::create_dir_all(&root_ssh)?;
    fs::set_permissions(tree.join("root"), fs::Permissions::from_mode(0o700))?;
    fs::set_permissions(&root_ssh, fs::Permissions::from_mode(0o700))?;
    let host_key = ssh_dir.join("ssh_host_ed25519_key");
    keygen(&host_key, &format!("root@{}", vm.name))?;
    let auth = root_ssh.join("authorized_keys");
    fs::write(&auth, format!("{login_pub}\n"))?;
    fs::set_permissions(&auth, fs::Permissions::from_mode(0o600))?;
    let host_pub = read_pub(&host_key)?;
    // A tar archive is a valid raw disk (its size is a multiple of 512 bytes).
    run(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(vm_dir.join("seed.tar"))
        .arg("-C")
        .arg(&tree)
        .args(["etc", "root"]))?;
    // The private key now lives only in the seed archive (and then in the VM).
    fs::remove_dir_all(&tree)?;
    Ok(host_pub)
}

/// known_hosts lines: the address, key type and key (the comment dropped).
pub fn known_hosts(entries: &[(&VmSpec, String)]) -> String {
    let mut out = String::new();
    for (vm, pub_line) in entries {
        let key: Vec<&str> = pub_line.split_whitespace().take(2).collect();
        out.push_str(&format!("{} {}\n", vm.addr, key.join(" ")));
    }
    out
}
