//! What this machine allows, checked before a local run starts: every limit that would stop
//! the run becomes a finding naming the setting, the value found, the value needed and the fix.

use std::collections::BTreeMap;
use std::fmt;

/// Kernel memory per connection with both ends on one host (measured here with a C epoll
/// probe: ~8.25 KB); used to judge whether a run fits before it starts.
pub const KERNEL_BYTES_PER_CONN_BOTH_ENDS: u64 = 8_300;

/// One limit checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub setting: String,
    pub found: String,
    pub needed: String,
    /// The exact command or change that fixes it; empty when it fits.
    pub fix: String,
    pub blocks: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.blocks {
            write!(
                f,
                "✗ {}: found {}, need {} — fix: {}",
                self.setting, self.found, self.needed, self.fix
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

/// What the run needs.
#[derive(Debug, Clone)]
pub struct Demand {
    pub connections: u64,
    pub ports: u16,
    pub source_ips: usize,
}

/// The machine's settings that matter, as read now (also written to run.json as "tuning").
pub fn read_tuning() -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    for key in [
        "fs/file-max",
        "fs/nr_open",
        "net/ipv4/tcp_mem",
        "net/ipv4/tcp_rmem",
        "net/ipv4/tcp_wmem",
        "net/ipv4/ip_local_port_range",
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/netfilter/nf_conntrack_max",
        "net/netfilter/nf_conntrack_count",
    ] {
        if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/{key}")) {
            t.insert(
                key.replace('/', "."),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            );
        }
    }
    let budget = nofile();
    t.insert("nofile_soft".into(), budget.0.to_string());
    t.insert("nofile_hard".into(), budget.1.to_string());
    t.insert(
        "nproc".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string(),
    );
    t
}

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}

fn num(t: &BTreeMap<String, String>, key: &str, field: usize) -> Option<u64> {
    t.get(key)?.split_whitespace().nth(field)?.parse().ok()
}

/// Whether conntrack tracks loopback traffic here: open one loopback connection and see whether
/// the table grew. (Built-in conntrack registers its hooks only when a rule needs them.)
pub fn conntrack_tracks_loopback() -> bool {
    let count = || -> Option<u64> {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let Some(before) = count() else {
        return false;
    };
    let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(addr) = l.local_addr() else {
        return false;
    };
    let c = std::net::TcpStream::connect(addr);
    let a = l.accept();
    let after = count().unwrap_or(before);
    drop((c, a));
    after > before
}

/// Checks the demand against this machine. `both_ends`: client and server share this kernel.
pub fn check(d: &Demand, tuning: &BTreeMap<String, String>, both_ends: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let n = d.connections;
    let sockets = if both_ends { 2 * n } else { n };
    let fmtn = crate::fmt::int;

    let hard = num(tuning, "nofile_hard", 0).unwrap_or(1024);
    let tables = c1m_proto::layout::plan(n, hard, 64, None, true, 1);
    out.push(match tables {
        Ok(l) => Finding {
            setting: "RLIMIT_NOFILE (hard)".into(),
            found: fmtn(hard),
            needed: format!(
                "{} fd tables of {} per side (threads with unshare(CLONE_FILES))",
                l.tables(),
                fmtn(l.conns_per_table)
            ),
            fix: String::new(),
            blocks: false,
        },
        Err(e) => Finding {
            setting: "RLIMIT_NOFILE (hard)".into(),
            found: fmtn(hard),
            needed: "at least 128".into(),
            fix: e,
            blocks: true,
        },
    });

    if let Some(file_max) = num(tuning, "fs.file-max", 0) {
        let need = sockets + sockets / 50 + 8_192;
        out.push(Finding {
            setting: "fs.file-max".into(),
            found: fmtn(file_max),
            needed: format!("≥ {} ({} sockets + 2%)", fmtn(need), fmtn(sockets)),
            fix: format!("sysctl -w fs.file-max={need}"),
            blocks: file_max < need,
        });
    }

    if let Some(range) = tuning.get("net.ipv4.ip_local_port_range") {
        let mut it = range
            .split_whitespace()
            .filter_map(|v| v.parse::<u64>().ok());
        if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
            let per_pair = hi.saturating_sub(lo) + 1;
            let have = per_pair * u64::from(d.ports) * d.source_ips as u64;
            let ips_needed = n.div_ceil(per_pair * u64::from(d.ports).max(1));
            out.push(Finding {
                setting: "4-tuples (source IPs × server ports × local ports)".into(),
                found: format!(
                    "{} × {} × {} = {}",
                    d.source_ips,
                    d.ports,
                    fmtn(per_pair),
                    fmtn(have)
                ),
                needed: format!("≥ {}", fmtn(n)),
                fix: format!(
                    "use at least {ips_needed} source IPs (--source-ips) or more --ports, \
                     or widen net.ipv4.ip_local_port_range"
                ),
                blocks: have < n,
            });
        }
    }

    if conntrack_tracks_loopback() {
        let max = num(tuning, "net.netfilter.nf_conntrack_max", 0).unwrap_or(0);
        let need = n + n / 20 + 1_024;
        out.push(Finding {
            setting: "net.netfilter.nf_conntrack_max (conntrack is tracking these flows)".into(),
            found: fmtn(max),
            needed: format!("≥ {}", fmtn(need)),
            fix: format!("sysctl -w net.netfilter.nf_conntrack_max={need}"),
            blocks: max < need,
        });
    }

    let meminfo = c1m_proto::procfs::read_with("/proc/meminfo", c1m_proto::procfs::parse_meminfo);
    if let Some(&free) = meminfo.get("MemFree") {
        let per = if both_ends {
            KERNEL_BYTES_PER_CONN_BOTH_ENDS
        } else {
            KERNEL_BYTES_PER_CONN_BOTH_ENDS / 2
        };
        let need = n * per;
        // MemAvailable counts socket inode and dentry caches that stay pinned while the
        // sockets live, overstating headroom; judge against MemFree with 10% kept back.
        let usable = free / 10 * 9;
        out.push(Finding {
            setting: "kernel memory (MemFree)".into(),
            found: crate::fmt::bytes(free as f64),
            needed: format!(
                "≈ {} ({} connections × {} B{})",
                crate::fmt::bytes(need as f64),
                fmtn(n),
                per,
                if both_ends { ", both ends local" } else { "" }
            ),
            fix: format!(
                "lower --connections to about {} or free memory",
                fmtn(usable / per.max(1))
            ),
            blocks: need > usable,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_small_file_max_blocks_with_the_sysctl_to_run() {
        let mut t = read_tuning();
        t.insert("fs.file-max".into(), "1000".into());
        let d = Demand {
            connections: 100_000,
            ports: 20,
            source_ips: 1,
        };
        let f = check(&d, &t, true);
        let fm = f.iter().find(|f| f.setting == "fs.file-max").unwrap();
        assert!(fm.blocks);
        assert!(fm.fix.starts_with("sysctl -w fs.file-max="), "{}", fm.fix);
    }

    #[test]
    fn too_few_source_ips_says_how_many() {
        let mut t = read_tuning();
        t.insert("net.ipv4.ip_local_port_range".into(), "30000 39999".into());
        let d = Demand {
            connections: 1_000_000,
            ports: 20,
            source_ips: 1,
        };
        let f = check(&d, &t, true);
        let p = f
            .iter()
            .find(|f| f.setting.starts_with("4-tuples"))
            .unwrap();
        assert!(p.blocks);
        assert!(p.fix.contains("at least 5 source IPs"), "{}", p.fix);
    }

    #[test]
    fn memory_beyond_memfree_blocks() {
        let t = read_tuning();
        let d = Demand {
            connections: 1_000_000_000,
            ports: 20,
            source_ips: 50_000,
        };
        let f = check(&d, &t, true);
        assert!(f
            .iter()
            .any(|f| f.setting.starts_with("kernel memory") && f.blocks));
    }
}
