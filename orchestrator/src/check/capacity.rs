//! Whether a host can hold its part of a run: every limit that would stop it becomes a finding
//! naming the setting, the value found, the value needed and the exact fix. Shared by the
//! local run's preflight and `c1m check`.

use super::facts::HostFacts;
use c1m_proto::ceiling::{self, HostLimits};
use c1m_proto::fmt;
use c1m_proto::model::ServerModel;
use serde::Serialize;

/// Kernel memory per socket (one end), measured here: ~8.3 KB per loopback connection with both
/// ends on one kernel.
pub const KERNEL_BYTES_PER_SOCKET: u64 = 4_150;

/// One limit checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub setting: String,
    pub found: String,
    pub needed: String,
    /// The exact command or change that fixes it; empty when it fits.
    pub fix: String,
    pub blocks: bool,
    /// A server model's own ceiling below the target: the connections it will hold. Named,
    /// never refusing, so a comparison of models still runs every one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stops_near: Option<u64>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.blocks {
            write!(
                f,
                "✗ {}: found {}, need {} — fix: {}",
                self.setting, self.found, self.needed, self.fix
            )
        } else if let Some(n) = self.stops_near {
            write!(
                f,
                "⚠ {}: found {}, need {} — this model stops near {}; fix: {}",
                self.setting,
                self.found,
                self.needed,
                fmt::int(n),
                self.fix
            )
        } else {
            write!(
                f,
                "✓ {}: {} (need {})",
                self.setting, self.found, self.needed
            )
        }
    }
}

/// What one host must hold.
#[derive(Debug, Clone, Default)]
pub struct HostDemand {
    /// Sockets in this host's kernel (both ends when client and server share it).
    pub sockets: u64,
    /// Of those, the server's (accepted) sockets; the rest are the client's.
    pub server_sockets: u64,
    /// Connections this host opens as a client (0 for a server only).
    pub client_share: u64,
    /// Flows conntrack would track on this host; 0 when it does not track them.
    pub tracked_flows: u64,
    pub source_ips: usize,
    pub ports: u16,
    /// How to fix a sysctl here: `sysctl -w` locally, `c1m provision` for inventory hosts.
    pub provision_hint: Option<String>,
}

impl HostDemand {
    fn fix_sysctl(&self, key: &str, value: u64) -> String {
        match &self.provision_hint {
            Some(hint) => format!("{hint} (or: sysctl -w {key}={value})"),
            None => format!("sysctl -w {key}={value}"),
        }
    }
}

/// Checks `d` against `f`: every limit that applies, in the order a person fixes them.
pub fn check_host(d: &HostDemand, f: &HostFacts) -> Vec<Finding> {
    [
        Some(fd_tables(d, f)),
        file_max(d, f),
        four_tuples(d, f),
        conntrack(d, f),
        kernel_memory(d, f),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The server model's own ceilings on this host ([`ceiling::ceilings`]), lowest first: each the
/// limit named, the connections it allows and its fix; one below `target` is marked with where
/// the model stops, and does not block the run.
pub fn model_ceilings(
    model: ServerModel,
    ports: u16,
    target: u64,
    limits: &HostLimits,
) -> Vec<Finding> {
    ceiling::ceilings(model, ports, limits)
        .into_iter()
        .map(|c| Finding {
            setting: format!("{model}: {}", c.limit),
            found: c.found,
            needed: format!(
                "≥ {}; it holds {}: {}",
                fmt::int(target),
                fmt::int(c.holds),
                c.why
            ),
            fix: c.fix,
            blocks: false,
            stops_near: (c.holds < target).then_some(c.holds),
        })
        .collect()
}

/// The hard RLIMIT_NOFILE caps each fd table; server and client have tables of their own, so
/// the larger side is sized.
fn fd_tables(d: &HostDemand, f: &HostFacts) -> Finding {
    let hard = f.nofile_hard.unwrap_or(1024);
    let per_side = d.server_sockets.max(d.client_share);
    let (needed, fix, blocks) = match c1m_proto::layout::plan(per_side, hard, 64, None, true, 1) {
        Ok(l) => (
            format!(
                "{} fd tables of {} (threads with unshare(CLONE_FILES))",
                l.tables(),
                fmt::int(l.conns_per_table)
            ),
            String::new(),
            false,
        ),
        Err(e) => ("at least 128".into(), e, true),
    };
    Finding {
        setting: "RLIMIT_NOFILE (hard)".into(),
        found: fmt::int(hard),
        needed,
        fix,
        blocks,
        stops_near: None,
    }
}

fn file_max(d: &HostDemand, f: &HostFacts) -> Option<Finding> {
    let file_max = f.sysctl_num("fs.file-max", 0)?;
    let need = d.sockets + d.sockets / 50 + 8_192;
    Some(Finding {
        setting: "fs.file-max".into(),
        found: fmt::int(file_max),
        needed: format!(
            "≥ {} ({} sockets + 2%)",
            fmt::int(need),
            fmt::int(d.sockets)
        ),
        fix: d.fix_sysctl("fs.file-max", need),
        blocks: file_max < need,
        stops_near: None,
    })
}

/// A client's connections each need a distinct (source IP, server port, local port).
fn four_tuples(d: &HostDemand, f: &HostFacts) -> Option<Finding> {
    if d.client_share == 0 {
        return None;
    }
    let per_pair = f.local_ports()?;
    let have = per_pair * u64::from(d.ports) * d.source_ips as u64;
    let ips_needed = d
        .client_share
        .div_ceil(per_pair * u64::from(d.ports).max(1));
    Some(Finding {
        setting: "4-tuples (source IPs × server ports × local ports)".into(),
        found: format!(
            "{} × {} × {} = {}",
            d.source_ips,
            d.ports,
            fmt::int(per_pair),
            fmt::int(have)
        ),
        needed: format!("≥ {}", fmt::int(d.client_share)),
        fix: format!(
            "use at least {ips_needed} source IPs (c1m_source_ips / --source-ips) or more \
             server ports (--port-count), or widen net.ipv4.ip_local_port_range"
        ),
        blocks: have < d.client_share,
        stops_near: None,
    })
}

fn conntrack(d: &HostDemand, f: &HostFacts) -> Option<Finding> {
    if d.tracked_flows == 0 {
        return None;
    }
    let max = f
        .sysctl_num("net.netfilter.nf_conntrack_max", 0)
        .unwrap_or(0);
    let need = d.tracked_flows + d.tracked_flows / 20 + 1_024;
    Some(Finding {
        setting: "net.netfilter.nf_conntrack_max (conntrack tracks these flows)".into(),
        found: fmt::int(max),
        needed: format!("≥ {}", fmt::int(need)),
        fix: d.fix_sysctl("net.netfilter.nf_conntrack_max", need),
        blocks: max < need,
        stops_near: None,
    })
}

/// Memory the kernel can give a run's sockets, and the margin kept back from it: MemAvailable
/// (free pages, and the page cache and reclaimable slab the kernel drops under pressure) less
/// 1/16 of the machine, and at least 512 MiB or 1/8 of the machine, whichever is less, for
/// everything else running and the kernel's own growth. (A flat 512 MiB would leave nothing
/// of the lab's 576 MiB client guests.) MemAvailable also counts the inodes and dentries of sockets already open, which stay
/// pinned while they live; judged before a run's sockets exist, that overstates nothing of its
/// own. A host that does not report MemAvailable is judged by MemFree.
pub fn usable_memory(f: &HostFacts) -> (u64, u64) {
    let have = if f.mem_available > 0 {
        f.mem_available
    } else {
        f.mem_free
    };
    let total = f.mem_total.max(have);
    let margin = (total / 16).max((512 << 20).min(total / 8));
    (have.saturating_sub(margin), margin)
}

fn kernel_memory(d: &HostDemand, f: &HostFacts) -> Option<Finding> {
    if f.mem_free == 0 && f.mem_available == 0 {
        return None;
    }
    let need = d.sockets * KERNEL_BYTES_PER_SOCKET;
    let (usable, margin) = usable_memory(f);
    Some(Finding {
        setting: "kernel memory (MemAvailable less a margin)".into(),
        found: format!(
            "{} ({} kept back)",
            fmt::bytes(usable as f64),
            fmt::bytes(margin as f64)
        ),
        needed: format!(
            "≈ {} ({} sockets × {} B)",
            fmt::bytes(need as f64),
            fmt::int(d.sockets),
            KERNEL_BYTES_PER_SOCKET
        ),
        fix: format!(
            "give the host more memory, or lower its share to about {} sockets",
            fmt::int(usable / KERNEL_BYTES_PER_SOCKET)
        ),
        blocks: need > usable,
        stops_near: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts::parse(
            "nofile_hard=20000\nnofile_soft=1024\nMemFree_kb=25165824\n\
             fs.file-max=2466170\nnet.ipv4.ip_local_port_range=32768 60999\n",
        )
    }

    #[test]
    fn too_small_file_max_blocks_with_the_sysctl_to_run() {
        let mut f = facts();
        f.sysctl.insert("fs.file-max".into(), "1000".into());
        let d = HostDemand {
            sockets: 200_000,
            client_share: 100_000,
            source_ips: 1,
            ports: 20,
            ..Default::default()
        };
        let fm = check_host(&d, &f)
            .into_iter()
            .find(|f| f.setting == "fs.file-max")
            .unwrap();
        assert!(fm.blocks);
        assert_eq!(fm.fix, "sysctl -w fs.file-max=212192");
    }

    #[test]
    fn too_few_source_ips_says_how_many() {
        let mut f = facts();
        f.sysctl
            .insert("net.ipv4.ip_local_port_range".into(), "30000 39999".into());
        let d = HostDemand {
            sockets: 1_000_000,
            client_share: 1_000_000,
            source_ips: 1,
            ports: 20,
            ..Default::default()
        };
        let p = check_host(&d, &f)
            .into_iter()
            .find(|f| f.setting.starts_with("4-tuples"))
            .unwrap();
        assert!(p.blocks);
        assert!(p.fix.contains("at least 5 source IPs"), "{}", p.fix);
    }

    #[test]
    fn conntrack_and_memory_block_with_fixes() {
        let mut f = facts();
        f.sysctl
            .insert("net.netfilter.nf_conntrack_max".into(), "262144".into());
        let d = HostDemand {
            sockets: 10_000_000,
            tracked_flows: 1_000_000,
            provision_hint: Some("run `c1m provision -i lab.yml`".into()),
            ..Default::default()
        };
        let all = check_host(&d, &f);
        let ct = all
            .iter()
            .find(|f| f.setting.starts_with("net.netfilter"))
            .unwrap();
        assert!(ct.blocks);
        assert_eq!(
            ct.fix,
            "run `c1m provision -i lab.yml` (or: sysctl -w net.netfilter.nf_conntrack_max=1051024)"
        );
        assert!(all
            .iter()
            .any(|f| f.setting.starts_with("kernel memory") && f.blocks));
    }

    #[test]
    fn a_model_below_the_target_is_named_but_does_not_block() {
        let limits = HostLimits {
            nofile_hard: Some(20_000),
            pid_max: Some(32_768),
            max_map_count: Some(65_530),
            ..Default::default()
        };
        let sync = model_ceilings(ServerModel::Sync, 20, 25_000, &limits);
        assert_eq!(sync.len(), 1);
        let s = &sync[0];
        assert!(!s.blocks && s.stops_near.is_some_and(|n| n < 20_000), "{s}");
        let line = s.to_string();
        assert!(
            line.starts_with("⚠ sync: RLIMIT_NOFILE") && line.contains("this model stops near"),
            "{line}"
        );
        let tpc = model_ceilings(ServerModel::ThreadPerConn, 20, 25_000, &limits);
        assert_eq!(tpc[0].setting, "thread-per-conn: kernel.pid_max");
        assert!(tpc.iter().all(|f| f.stops_near.is_none() && !f.blocks));
        let tpc = model_ceilings(ServerModel::ThreadPerConn, 20, 200_000, &limits);
        assert_eq!(tpc[0].stops_near, Some(31_768));
        assert!(tpc[0].fix.contains("kernel.pid_max"));
        assert!(model_ceilings(ServerModel::EpollThreads, 20, 1_000_000, &limits).is_empty());
    }

    #[test]
    fn a_fitting_demand_has_no_blocking_finding() {
        let d = HostDemand {
            sockets: 100_000,
            client_share: 50_000,
            source_ips: 1,
            ports: 20,
            ..Default::default()
        };
        assert!(check_host(&d, &facts()).iter().all(|f| !f.blocks));
    }
}
