//! Kernel memory readings taken once a second during a run, and their deltas from the baseline.

use c1m_proto::procfs::{parse_meminfo, parse_sockstat, read_with};
use std::collections::BTreeMap;

/// One reading of /proc/meminfo and /proc/net/sockstat.
#[derive(Debug, Clone, Default)]
pub struct KernelSample {
    pub meminfo: BTreeMap<String, u64>,
    pub sockstat: BTreeMap<String, u64>,
}

impl KernelSample {
    /// From the text of a host's /proc/meminfo and /proc/net/sockstat (read over SSH).
    pub fn parse(meminfo: &str, sockstat: &str) -> KernelSample {
        KernelSample {
            meminfo: parse_meminfo(meminfo),
            sockstat: parse_sockstat(sockstat),
        }
    }

    pub fn take() -> KernelSample {
        KernelSample {
            meminfo: read_with("/proc/meminfo", parse_meminfo),
            sockstat: read_with("/proc/net/sockstat", parse_sockstat),
        }
    }

    fn mem(&self, key: &str) -> i64 {
        self.meminfo.get(key).copied().unwrap_or(0) as i64
    }

    pub fn slab(&self) -> u64 {
        self.meminfo.get("Slab").copied().unwrap_or(0)
    }

    pub fn tcp_mem_pages(&self) -> u64 {
        self.sockstat.get("TCP.mem").copied().unwrap_or(0)
    }

    pub fn tcp_inuse(&self) -> u64 {
        self.sockstat.get("TCP.inuse").copied().unwrap_or(0)
    }

    /// Kernel memory above `base`, by component.
    /// `both_ends` is left true (one kernel holds both ends); a run over hosts corrects it.
    pub fn delta(&self, base: &KernelSample) -> c1m_rundir::KernelMemory {
        let page = c1m_proto::procfs::page_size() as i64;
        c1m_rundir::KernelMemory {
            slab_delta_bytes: self.mem("Slab") - base.mem("Slab"),
            tcp_mem_delta_bytes: (self.tcp_mem_pages() as i64 - base.tcp_mem_pages() as i64) * page,
            pagetables_delta_bytes: self.mem("PageTables") - base.mem("PageTables"),
            kernel_stack_delta_bytes: self.mem("KernelStack") - base.mem("KernelStack"),
            both_ends: true,
        }
    }
}

/// The sum of a delta's components.
pub fn kernel_total(k: &c1m_rundir::KernelMemory) -> i64 {
    k.slab_delta_bytes
        + k.tcp_mem_delta_bytes
        + k.pagetables_delta_bytes
        + k.kernel_stack_delta_bytes
}

/// /proc/stat's first line as (all ticks, idle + iowait ticks); busy = 1 − Δidle/Δall.
pub fn cpu_times() -> (u64, u64) {
    cpu_times_from(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

pub fn cpu_times_from(stat: &str) -> (u64, u64) {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (v.iter().sum(), idle)
}
