//! What a host allows, for the capacity plan: limits, sysctls, memory and addresses, read with
//! one shell command over any transport (no Python on the host).

use c1m_proto::ceiling::{CgroupTasks, HostLimits};
use c1m_transport::{Transport, TransportError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prints `key=value` lines; sysctls are read from /proc/sys so a missing one (conntrack not
/// loaded) is simply absent.
const PROBE: &str = r#"echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "nproc=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
echo "nofile_soft=$(ulimit -Sn)"
echo "nofile_hard=$(ulimit -Hn)"
awk '/^(MemTotal|MemFree|MemAvailable):/ {sub(":", "", $1); print $1 "_kb=" $2}' /proc/meminfo
for k in fs/file-max fs/nr_open net/ipv4/tcp_mem net/ipv4/tcp_rmem net/ipv4/tcp_wmem \
         net/ipv4/ip_local_port_range net/core/somaxconn net/ipv4/tcp_max_syn_backlog \
         net/netfilter/nf_conntrack_max net/netfilter/nf_conntrack_buckets \
         net/netfilter/nf_conntrack_count net/netfilter/nf_conntrack_tcp_timeout_established \
         kernel/pid_max kernel/threads-max vm/max_map_count kernel/osrelease \
         kernel/io_uring_disabled; do
  [ -r /proc/sys/$k ] && echo "$(echo $k | tr / .)=$(tr -s ' \t' '  ' < /proc/sys/$k)"
done
# pids.max of this shell's cgroup and of each ancestor that sets one (cgroup v2, or v1's pids
# hierarchy): a process started like this one, as the server is, shares those caps.
cg=$(awk -F: '$2 ~ /(^|,)pids(,|$)/ { v1 = $3 } $1 == "0" { v2 = $3 }
  END { if (v1 != "") print "/sys/fs/cgroup/pids " v1; else if (v2 != "") print "/sys/fs/cgroup " v2 }' /proc/self/cgroup 2>/dev/null)
root=${cg%% *}
cg=${cg#* }
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
  [ -n "$root" ] && [ -n "$cg" ] || break
  cg=${cg%/}
  if [ -r "$root$cg/pids.max" ] && [ "$(cat "$root$cg/pids.max")" != max ]; then
    echo "cgroup_pids=$(cat "$root$cg/pids.max") $(cat "$root$cg/pids.current" 2>/dev/null || echo 0) ${cg:-/}"
  fi
  [ -n "$cg" ] || break
  cg=${cg%/*}
done
# Threads and processes alive now (/proc/loadavg's fourth field is running/total scheduling
# entities): kernel.threads-max and pid_max count these too. Read by the shell itself: a
# program started costs ~30 ms in a TCG guest.
read -r _ _ _ t _ < /proc/loadavg 2>/dev/null && echo "tasks=${t#*/}"
echo "addresses=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); printf "%s ", a[1]}')"
"#;

/// One host's facts. Numbers that could not be read are `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostFacts {
    pub kernel: String,
    pub arch: String,
    pub glibc: String,
    pub nproc: u64,
    pub nofile_soft: Option<u64>,
    pub nofile_hard: Option<u64>,
    pub mem_total: u64,
    pub mem_free: u64,
    pub mem_available: u64,
    /// Sysctls as read, by dotted name (`fs.file-max`, `net.ipv4.tcp_mem`, …).
    pub sysctl: BTreeMap<String, String>,
    pub addresses: Vec<String>,
    /// The tightest cgroup cap on tasks over the probe's cgroup and its ancestors, if any.
    #[serde(default)]
    pub cgroup_tasks: Option<CgroupTasksFact>,
    /// Threads and processes alive on the host when it was probed.
    #[serde(default)]
    pub tasks: Option<u64>,
}

/// `pids.max`, `pids.current` and the path of one cgroup, as the probe found them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupTasksFact {
    pub path: String,
    pub max: u64,
    pub current: u64,
}

impl CgroupTasksFact {
    /// Parses `MAX CURRENT PATH`; the path may hold spaces.
    fn parse(v: &str) -> Option<CgroupTasksFact> {
        let mut it = v.splitn(3, ' ');
        let max = it.next()?.parse().ok()?;
        let current = it.next()?.parse().ok()?;
        let path = it
            .next()
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_string();
        Some(CgroupTasksFact { path, max, current })
    }

    fn headroom(&self) -> u64 {
        self.max.saturating_sub(self.current)
    }
}

impl HostFacts {
    /// Parses the probe's output.
    pub fn parse(text: &str) -> HostFacts {
        let mut f = HostFacts::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let n = || v.parse::<u64>().ok();
            match k {
                "kernel" => f.kernel = v.into(),
                "arch" => f.arch = v.into(),
                "glibc" => f.glibc = v.into(),
                "nproc" => f.nproc = n().unwrap_or(1),
                // `unlimited` means no cap from the rlimit; fs.nr_open still applies.
                "nofile_soft" => f.nofile_soft = n().or((v == "unlimited").then_some(u64::MAX)),
                "nofile_hard" => f.nofile_hard = n().or((v == "unlimited").then_some(u64::MAX)),
                // In kB: mawk would print bytes of a large machine in scientific notation.
                "MemTotal_kb" => f.mem_total = n().unwrap_or(0) * 1024,
                "MemFree_kb" => f.mem_free = n().unwrap_or(0) * 1024,
                "MemAvailable_kb" => f.mem_available = n().unwrap_or(0) * 1024,
                "tasks" => f.tasks = n(),
                "addresses" => f.addresses = v.split_whitespace().map(String::from).collect(),
                // One line per capped cgroup on the way up; the one with least room binds.
                "cgroup_pids" => {
                    if let Some(c) = CgroupTasksFact::parse(v) {
                        if f.cgroup_tasks
                            .as_ref()
                            .is_none_or(|o| c.headroom() < o.headroom())
                        {
                            f.cgroup_tasks = Some(c);
                        }
                    }
                }
                k if ["fs.", "net.", "kernel.", "vm."]
                    .iter()
                    .any(|p| k.starts_with(p)) =>
                {
                    f.sysctl.insert(k.into(), v.into());
                }
                _ => {}
            }
        }
        f
    }

    /// Field `i` of a sysctl as a number (`tcp_mem` has three).
    pub fn sysctl_num(&self, key: &str, i: usize) -> Option<u64> {
        self.sysctl
            .get(key)?
            .split_whitespace()
            .nth(i)?
            .parse()
            .ok()
    }

    /// Whether conntrack is loaded (its sysctls exist).
    pub fn conntrack_loaded(&self) -> bool {
        self.sysctl.contains_key("net.netfilter.nf_conntrack_max")
    }

    /// Whether conntrack is tracking flows: loaded is not enough (its hooks register only when a
    /// rule needs them), but a host gathered over SSH whose table is empty is not tracking,
    /// since the SSH session itself would be in it.
    pub fn conntrack_tracking(&self) -> bool {
        self.sysctl_num("net.netfilter.nf_conntrack_count", 0)
            .is_some_and(|n| n > 0)
    }

    /// Source ports per (source IP, destination) from `ip_local_port_range`.
    pub fn local_ports(&self) -> Option<u64> {
        let lo = self.sysctl_num("net.ipv4.ip_local_port_range", 0)?;
        let hi = self.sysctl_num("net.ipv4.ip_local_port_range", 1)?;
        Some(hi.saturating_sub(lo) + 1)
    }

    /// The limits a server model's own ceilings depend on (`procs`: `--procs`, the worker
    /// processes of `prefork-sync`; `idle_clients`: the clients send nothing,
    /// `--protocol idle`).
    pub fn host_limits(&self, procs: Option<usize>, idle_clients: bool) -> HostLimits {
        let num = |k: &str| self.sysctl_num(k, 0);
        HostLimits {
            nofile_hard: self.nofile_hard,
            pid_max: num("kernel.pid_max"),
            threads_max: num("kernel.threads-max"),
            max_map_count: num("vm.max_map_count"),
            mem_available: (self.mem_available > 0).then_some(self.mem_available),
            kernel_release: self
                .sysctl
                .get("kernel.osrelease")
                .cloned()
                .or_else(|| (!self.kernel.is_empty()).then(|| self.kernel.clone())),
            io_uring_disabled: num("kernel.io_uring_disabled"),
            procs,
            idle_clients,
            tasks_in_use: self.tasks,
            cgroup_tasks: self.cgroup_tasks.as_ref().map(|c| CgroupTasks {
                path: c.path.clone(),
                max: c.max,
                current: c.current,
            }),
        }
    }

    /// The facts as `run.json` records them per host ("tuning in effect").
    pub fn tuning(&self) -> BTreeMap<String, String> {
        let mut t = self.sysctl.clone();
        let num = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        t.insert("nofile_soft".into(), num(self.nofile_soft));
        t.insert("nofile_hard".into(), num(self.nofile_hard));
        t.insert("nproc".into(), self.nproc.to_string());
        t.insert("kernel".into(), self.kernel.clone());
        t
    }
}

/// Runs the probe on a host.
pub fn gather(t: &mut dyn Transport) -> Result<HostFacts, TransportError> {
    let out = t.exec(PROBE, None)?;
    Ok(HostFacts::parse(&out.stdout_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use c1m_transport::local::LocalTransport;
    use c1m_transport::Become;

    #[test]
    fn this_machine() {
        let mut t = LocalTransport::new("localhost", &Become::default());
        let f = gather(&mut t).unwrap();
        assert!(f.nproc >= 1);
        assert!(f.nofile_hard.unwrap() >= f.nofile_soft.unwrap());
        assert!(f.mem_free > 0 && f.mem_total >= f.mem_free);
        assert!(f.sysctl_num("fs.file-max", 0).unwrap() > 0);
        assert!(f.sysctl_num("net.ipv4.tcp_mem", 2).is_some());
        assert!(f.local_ports().unwrap() > 1000);
        assert!(!f.kernel.is_empty() && !f.arch.is_empty());
        let l = f.host_limits(None, false);
        assert!(l.pid_max.unwrap() >= 301 && l.threads_max.unwrap() > 0);
        assert!(l.max_map_count.unwrap() > 0);
        assert_eq!(l.kernel_release.as_deref(), Some(f.kernel.as_str()));
        // This test's own process and thread are alive, so at least two tasks; fewer than the
        // kernel allows.
        let tasks = l.tasks_in_use.unwrap();
        assert!(tasks >= 2 && tasks < l.threads_max.unwrap(), "{tasks}");
    }

    #[test]
    fn unlimited_and_missing_values() {
        let f = HostFacts::parse(
            "nofile_hard=unlimited\nnofile_soft=1024\ngarbage\n=\nfs.file-max=10\n",
        );
        assert_eq!(f.nofile_hard, Some(u64::MAX));
        assert!(!f.conntrack_loaded());
        assert_eq!(f.local_ports(), None);
        let l = f.host_limits(Some(3), false);
        assert_eq!(
            (l.pid_max, l.io_uring_disabled, l.procs),
            (None, None, Some(3))
        );
    }

    #[test]
    fn model_limits_parse() {
        let f = HostFacts::parse(
            "kernel=6.1.0-18-amd64\nkernel.pid_max=32768\nkernel.threads-max=192729\n\
             vm.max_map_count=65530\nkernel.io_uring_disabled=2\nMemAvailable_kb=1024\n",
        );
        let l = f.host_limits(None, false);
        assert_eq!(
            (
                l.pid_max,
                l.threads_max,
                l.max_map_count,
                l.io_uring_disabled
            ),
            (Some(32_768), Some(192_729), Some(65_530), Some(2))
        );
        assert_eq!(l.mem_available, Some(1 << 20));
        assert_eq!(l.kernel_release.as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(l.cgroup_tasks, None);
    }

    #[test]
    fn the_cgroup_with_least_room_is_kept() {
        // A login session over SSH on a Debian guest: the scope and the user's slice both cap.
        let f = HostFacts::parse(
            "cgroup_pids=1133 4 /user.slice/user-0.slice/session-4.scope
\
             cgroup_pids=2493 40 /user.slice/user-0.slice
\
             cgroup_pids=oops
cgroup_pids=12 x /bad
",
        );
        let c = f.host_limits(None, false).cgroup_tasks.unwrap();
        assert_eq!(
            (c.path.as_str(), c.max, c.current),
            ("/user.slice/user-0.slice/session-4.scope", 1133, 4)
        );
        let f = HostFacts::parse("cgroup_pids=100 1 /a b\ncgroup_pids=500 450 /a\n");
        assert_eq!(f.cgroup_tasks.unwrap().path, "/a");
    }
}
