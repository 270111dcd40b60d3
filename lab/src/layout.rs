//! What the lab is: its four VMs, their addresses and memory, and where its files live.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The network namespace holding the lab's bridge and taps; nothing in it has an uplink.
pub const NETNS: &str = "c1m-lab";
/// The bridge inside [`NETNS`].
pub const BRIDGE: &str = "c1mbr0";
/// The veth end in the root namespace (carries [`HOST_ADDR`]) and its peer on the bridge.
pub const VETH_HOST: &str = "c1m-lab0";
pub const VETH_LAB: &str = "c1m-lab1";
/// The controller's address on the lab subnet.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
pub const PREFIX_LEN: u8 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Client,
}

/// One VM of the lab.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub role: Role,
    pub addr: Ipv4Addr,
    pub mem_mib: u64,
    pub cpus: u32,
}

impl VmSpec {
    /// The tap device inside the namespace (interface names are at most 15 bytes).
    pub fn tap(&self) -> String {
        format!("tap-{}", self.name)
    }
    /// A stable, locally administered MAC derived from the address.
    pub fn mac(&self) -> String {
        let o = self.addr.octets();
        format!("52:54:00:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
    }
}

/// Guest memory for a run of `connections` in total: the server holds every connection, each
/// client a third. The budget (4.5 KiB per connection on the server, 1.6 KiB per connection in
/// each client, plus a base for the guest's kernel and userspace) gives the issue's ~5 GiB and
/// ~2 GiB at 1M; it is a budget for kernel socket memory, not a measurement.
pub fn memory_mib(role: Role, connections: u64) -> u64 {
    let per_million = match role {
        Role::Server => 4608,
        Role::Client => 1664,
    };
    let base = match role {
        Role::Server => 512,
        Role::Client => 384,
    };
    let mib = base + connections.saturating_mul(per_million) / 1_000_000;
    // Round up to 64 MiB so the numbers people read stay simple.
    mib.div_ceil(64) * 64
}

/// The four VMs: `srv` at .10 and `cli1..3` at .11–.13.
pub fn vms(
    connections: u64,
    server_mib: Option<u64>,
    client_mib: Option<u64>,
    cpus: u32,
) -> Vec<VmSpec> {
    let mut v = vec![VmSpec {
        name: "srv".into(),
        role: Role::Server,
        addr: Ipv4Addr::new(10, 199, 0, 10),
        mem_mib: server_mib.unwrap_or_else(|| memory_mib(Role::Server, connections)),
        cpus,
    }];
    for i in 1..=3u8 {
        v.push(VmSpec {
            name: format!("cli{i}"),
            role: Role::Client,
            addr: Ipv4Addr::new(10, 199, 0, 10 + i),
            mem_mib: client_mib.unwrap_or_else(|| memory_mib(Role::Client, connections)),
            cpus,
        });
    }
    v
}

/// Files of a running lab under its state directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
        }
    }
    /// The lab's login key (kept across `down`/`up`, so inventories stay valid).
    pub fn key(&self) -> PathBuf {
        self.root.join("id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("lab.json")
    }
    /// Per-VM runtime files: overlay, seed, pid, QMP socket, console log, host key.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join("vms").join(name)
    }
    pub fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_matches_the_issue_for_a_million() {
        assert_eq!(memory_mib(Role::Server, 1_000_000), 5120);
        assert_eq!(memory_mib(Role::Client, 1_000_000), 2048);
        assert!(memory_mib(Role::Server, 100_000) < 1100);
        assert!(memory_mib(Role::Client, 100_000) < 600);
    }

    #[test]
    fn names_addresses_and_macs_are_distinct() {
        let v = vms(100_000, None, None, 1);
        let names: Vec<_> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["srv", "cli1", "cli2", "cli3"]);
        assert_eq!(v[3].addr, Ipv4Addr::new(10, 199, 0, 13));
        assert_eq!(v[0].mac(), "52:54:00:c7:00:0a");
        assert!(v.iter().all(|s| s.tap().len() <= 15));
    }
}
