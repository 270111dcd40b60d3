//! A private network namespace for a local run, with an established-connection hash table
//! sized for the test, whose listeners hand queued connections on when one of them closes.
//!
//! The root namespace's TCP ehash is sized at boot (262,144 buckets on a 24 GiB machine); with
//! two million sockets every packet lookup walks chains of eight. A new namespace takes its size
//! from `net.ipv4.tcp_child_ehash_entries` at creation, the per-namespace equivalent of booting
//! with `thash_entries=`. Traffic stays on loopback, inside the namespace.

use anyhow::{bail, Context, Result};
use std::process::Command;

const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_child_ehash_entries";
const PREFIX: &str = "c1m-run-";

/// `net.ipv4.tcp_migrate_req`: a connection queued on a listener that closes moves to another
/// listener of its SO_REUSEPORT group instead of being reset. A server model whose full process
/// leaves the group (tokio's) loses nothing that was already queued there.
const MIGRATE_REQ: &str = "net.ipv4.tcp_migrate_req=1";

/// A namespace that is deleted on drop.
pub struct PrivateNetns {
    pub name: String,
    pub ehash_entries: u64,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Buckets for `sockets` sockets: the next power of two, within the kernel's 2^24 cap.
pub fn buckets_for(sockets: u64) -> u64 {
    sockets.max(1024).next_power_of_two().min(1 << 24)
}

/// Why a private namespace cannot be made here, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    if !std::path::Path::new(SYSCTL).exists() {
        return Some("this kernel has no net.ipv4.tcp_child_ehash_entries (before 6.1)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed");
    }
    None
}

/// Whether `pid` is a live process: a zombie (a killed `c1m` whose parent has not reaped it)
/// is not.
fn alive(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Deletes namespaces of earlier runs whose process is gone (a crash, a SIGKILL).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !alive(pid) {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl PrivateNetns {
    /// Creates `c1m-run-<pid>` with `buckets` ehash buckets and loopback up. The global
    /// sysctl is changed only for the moment of creation and always put back.
    pub fn create(buckets: u64) -> Result<PrivateNetns> {
        // Concurrent runs must not interleave their save/set/restore of the global sysctl.
        let lock =
            std::fs::File::create("/run/c1m-netns.lock").context("creating /run/c1m-netns.lock")?;
        // SAFETY: flock on a file we hold open; released when `lock` is dropped.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            bail!(
                "locking /run/c1m-netns.lock: {}",
                std::io::Error::last_os_error()
            );
        }
        remove_stale();
        let name = format!("{PREFIX}{}", std::process::id());
        let old = std::fs::read_to_string(SYSCTL).context("reading tcp_child_ehash_entries")?;
        std::fs::write(SYSCTL, buckets.to_string()).context("setting tcp_child_ehash_entries")?;
        let made = ip(&["netns", "add", &name]);
        let restored = std::fs::write(SYSCTL, old.trim());
        made?;
        let ns = PrivateNetns {
            name,
            ehash_entries: buckets,
        };
        restored.context("restoring tcp_child_ehash_entries")?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        // Linux 5.14+; a namespace needs 6.1 (the ehash sysctl above), so it is always there.
        ip(&["netns", "exec", &ns.name, "sysctl", "-qw", MIGRATE_REQ])?;
        Ok(ns)
    }
}

/// `net.ipv4.tcp_fastopen` for a run's namespace: clients may send data in the SYN (1) and
/// servers accept it (2), neither side asking for cookies (4, 0x200). Only the run's own
/// loopback traffic lives there, so nothing else is exposed.
const FASTOPEN_FLAGS: u32 = 0x207;

impl PrivateNetns {
    /// Turns on TCP Fast Open inside the namespace (the sysctl is per namespace: the machine's
    /// own setting is untouched).
    pub fn enable_fastopen(&self) -> Result<()> {
        ip(&[
            "netns",
            "exec",
            &self.name,
            "sysctl",
            "-qw",
            &format!("net.ipv4.tcp_fastopen={FASTOPEN_FLAGS}"),
        ])
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts() {
        assert_eq!(buckets_for(2_000_000), 2_097_152);
        assert_eq!(buckets_for(10), 1024);
        assert_eq!(buckets_for(u64::MAX / 4), 1 << 24);
    }

    #[test]
    fn a_namespace_gets_its_size_and_the_sysctl_is_restored() {
        if let Some(why) = unavailable() {
            assert!(
                std::env::var_os("C1M_REQUIRE_LAB").is_none(),
                "cannot test netns: {why}"
            );
            eprintln!("skipped: {why}");
            return;
        }
        let before = std::fs::read_to_string(SYSCTL).unwrap();
        let a = PrivateNetns::create(1 << 16).unwrap();
        let size = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &a.name,
                "cat",
                "/proc/sys/net/ipv4/tcp_ehash_entries",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), "65536");
        assert_eq!(std::fs::read_to_string(SYSCTL).unwrap(), before);
        let migrate = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &a.name,
                "sysctl",
                "-n",
                "net.ipv4.tcp_migrate_req",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&migrate.stdout).trim(), "1");

        let fastopen = "/proc/sys/net/ipv4/tcp_fastopen";
        let machine = std::fs::read_to_string(fastopen).unwrap();
        a.enable_fastopen().unwrap();
        let inside = std::process::Command::new("ip")
            .args(["netns", "exec", &a.name, "cat", fastopen])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&inside.stdout).trim(), "519");
        assert_eq!(std::fs::read_to_string(fastopen).unwrap(), machine);
        let name = a.name.clone();
        drop(a);
        assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    }
}
