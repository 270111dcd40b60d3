//! Each server model's own ceilings on a host: the limits that stop that model before the
//! ones every run shares (fd tables of the default model, file-max, 4-tuples, kernel memory),
//! each with the number of connections it allows and the fix. The preflight reads the host's
//! limits into [`HostLimits`] and names what [`ceilings`] finds; a comparison run names the
//! lowest one as what bound the model.

use crate::layout;
use crate::model::{kernel_version, PerConnection, ServerModel, Tables, IO_URING_MIN_KERNEL};

/// The limits of the server's host that decide a model's ceiling (`None`: not known).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostLimits {
    pub nofile_hard: Option<u64>,
    pub pid_max: Option<u64>,
    pub threads_max: Option<u64>,
    pub max_map_count: Option<u64>,
    /// Bytes of memory the server can still take (MemAvailable).
    pub mem_available: Option<u64>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_release: Option<String>,
    pub io_uring_disabled: Option<u64>,
    /// Worker processes asked for (`--procs`); `prefork-sync`'s K.
    pub procs: Option<usize>,
    /// The tightest `pids.max` over the cgroups a process started like the server sits in.
    pub cgroup_tasks: Option<CgroupTasks>,
    /// The clients send nothing (`--protocol idle`): a model must hold silent connections.
    pub idle_clients: bool,
    /// Threads and processes already alive on the host (`/proc/loadavg`), which count against
    /// `kernel.threads-max` and `kernel.pid_max` before the server's first thread.
    pub tasks_in_use: Option<u64>,
}

/// A cgroup's cap on tasks (threads and processes), as the pids controller keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTasks {
    /// The cgroup's path in its hierarchy (`/user.slice/user-0.slice`).
    pub path: String,
    /// `pids.max`.
    pub max: u64,
    /// `pids.current` when it was read: tasks already there, the server's not yet among them.
    pub current: u64,
}

impl CgroupTasks {
    /// The systemd unit the cgroup is (its last path component), whose `TasksMax` sets it.
    pub fn unit(&self) -> Option<&str> {
        self.path
            .rsplit('/')
            .next()
            .filter(|u| u.ends_with(".slice") || u.ends_with(".scope") || u.ends_with(".service"))
    }
}

/// One limit of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    /// The setting (`kernel.pid_max`, `RLIMIT_NOFILE (hard), one fd table`…).
    pub limit: String,
    /// Its value here, as found.
    pub found: String,
    /// Connections the model can hold under it.
    pub holds: u64,
    /// Why the limit binds this model, in a clause.
    pub why: String,
    /// What would raise it.
    pub fix: String,
}

/// Memory a connection's thread takes beyond its socket: a 16 KiB kernel stack, the task and
/// its bookkeeping (~10 KiB), the touched pages of a 64 KiB user stack (~12 KiB).
pub const BYTES_PER_THREAD: u64 = 40 * 1024;

/// Processes and threads the rest of the host is assumed to use when their count was not read.
const HOST_TASKS: u64 = 1_000;

/// Tasks of the server itself besides its connections' threads (main, stats, accept loops).
const SERVER_TASKS: u64 = 8;

/// Mappings of the server process besides its threads' stacks.
const OTHER_MAPPINGS: u64 = 1_000;

/// The model's own ceilings on a host with `limits`, lowest first. Empty when nothing but the
/// shared limits applies to it.
pub fn ceilings(model: ServerModel, ports: u16, limits: &HostLimits) -> Vec<Ceiling> {
    let mut out = Vec::new();
    match model.tables() {
        Tables::One => {
            if let Some(hard) = limits.nofile_hard {
                let per_table = layout::plan(1, hard, 64 + u64::from(ports), None, false, 1)
                    .map_or(0, |l| l.conns_per_table);
                out.push(Ceiling {
                    limit: "RLIMIT_NOFILE (hard), one fd table".into(),
                    found: hard.to_string(),
                    holds: per_table,
                    why: format!(
                        "{model} is one thread, so all its connections share one fd table"
                    ),
                    fix: "raise the hard nofile (limits.conf / LimitNOFILE, at most fs.nr_open), \
                          or choose a model with a table per thread (epoll-threads)"
                        .into(),
                });
            }
        }
        Tables::OnePerProcess => {
            let k = limits.procs.unwrap_or(8) as u64;
            out.push(Ceiling {
                limit: "worker processes (--procs)".into(),
                found: k.to_string(),
                holds: k,
                why: format!("{model} serves one connection per process until it closes"),
                fix: "more worker processes (--procs), each a process per connection held".into(),
            });
        }
        Tables::PerThread | Tables::PerProcess => {}
    }
    if model.per_connection() == PerConnection::Thread {
        // The host's own tasks as counted when it was probed, and the server's besides its
        // connections' threads; a guess when the count is unknown.
        let taken = limits.tasks_in_use.map_or(HOST_TASKS, |t| t + SERVER_TASKS);
        let per_task = |limit: &str, found: Option<u64>, divisor: u64, fix: String| {
            found.map(|v| Ceiling {
                limit: limit.into(),
                found: match limits.tasks_in_use {
                    Some(t) => format!("{v} ({t} tasks already alive)"),
                    None => v.to_string(),
                },
                holds: v.saturating_sub(taken) / divisor,
                why: format!("{model} runs a thread per connection"),
                fix,
            })
        };
        out.extend(per_task(
            "kernel.pid_max",
            limits.pid_max,
            1,
            "sysctl -w kernel.pid_max=4194304 (every thread takes a pid)".into(),
        ));
        out.extend(per_task(
            "kernel.threads-max",
            limits.threads_max,
            1,
            "sysctl -w kernel.threads-max=<connections + 10%>".into(),
        ));
        if let Some(maps) = limits.max_map_count {
            out.push(Ceiling {
                limit: "vm.max_map_count".into(),
                found: maps.to_string(),
                holds: maps.saturating_sub(OTHER_MAPPINGS) / 2,
                why: "each thread's stack and its guard page are two mappings of one process"
                    .into(),
                fix: "sysctl -w vm.max_map_count=<2 × connections + 1000>".into(),
            });
        }
        if let Some(cg) = &limits.cgroup_tasks {
            // systemd caps a login session's tasks (DefaultTasksMax for its scope, 15% of the
            // kernel's; TasksMax=33% for user-UID.slice): a server started over SSH, as a remote
            // run starts it, stops there long before threads-max.
            let fix = match cg.unit() {
                Some(unit) => format!(
                    "systemctl set-property --runtime {unit} TasksMax=infinity (c1m provision's \
                     tune.yml lifts it for login sessions)"
                ),
                None => format!("raise pids.max of the cgroup {}", cg.path),
            };
            out.push(Ceiling {
                limit: format!("cgroup pids.max ({})", cg.path),
                found: format!("{} ({} in use)", cg.max, cg.current),
                holds: cg.max.saturating_sub(cg.current + SERVER_TASKS),
                why: format!("{model} runs a thread per connection in the server's cgroup"),
                fix,
            });
        }
        if let Some(mem) = limits.mem_available {
            out.push(Ceiling {
                limit: "memory per thread".into(),
                found: format!("{} MiB available", mem / (1 << 20)),
                holds: mem / BYTES_PER_THREAD,
                why: format!(
                    "a thread costs ~{} KiB (kernel stack, task, touched user stack)",
                    BYTES_PER_THREAD / 1024
                ),
                fix: "a smaller --stack-kib helps little: the kernel's part dominates; more memory"
                    .into(),
            });
        }
    }
    if limits.idle_clients && !model.holds_silent_peers() {
        let also = match model {
            ServerModel::ThreadPerConn => "",
            _ => ", accepting no other connection meanwhile",
        };
        out.push(Ceiling {
            limit: "--protocol idle".into(),
            found: "clients send no greeting".into(),
            holds: 0,
            why: format!(
                "{model} waits for each connection's greeting with a blocking read and closes \
                 it when none comes within 10 s{also}: it cannot hold idle connections"
            ),
            fix: "an event-driven model (epoll-threads, the default; epoll, prefork, half-sync, \
                  tokio, io-uring), or a protocol that sends a greeting (--protocol echo)"
                .into(),
        });
    }
    if model == ServerModel::IoUring {
        if let Some(v) = limits.io_uring_disabled.filter(|&v| v != 0) {
            out.push(Ceiling {
                limit: "kernel.io_uring_disabled".into(),
                found: v.to_string(),
                holds: 0,
                why: "io_uring is switched off for this process".into(),
                fix: "sysctl -w kernel.io_uring_disabled=0".into(),
            });
        }
        if let Some(release) = &limits.kernel_release {
            if kernel_version(release).is_some_and(|v| v < IO_URING_MIN_KERNEL) {
                out.push(Ceiling {
                    limit: "kernel version".into(),
                    found: release.trim().into(),
                    holds: 0,
                    why: format!(
                        "multishot recv with provided buffers needs Linux {}.{}",
                        IO_URING_MIN_KERNEL.0, IO_URING_MIN_KERNEL.1
                    ),
                    fix: "a newer kernel, or another model".into(),
                });
            }
        }
    }
    out.sort_by_key(|c| c.holds);
    out
}

/// The ceiling that stops `model` short of `target` connections, if one does.
pub fn binding(
    model: ServerModel,
    ports: u16,
    limits: &HostLimits,
    target: u64,
) -> Option<Ceiling> {
    ceilings(model, ports, limits)
        .into_iter()
        .find(|c| c.holds < target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kind: hard nofile 20,000, pid_max 32,768, 24 GiB.
    fn here() -> HostLimits {
        HostLimits {
            nofile_hard: Some(20_000),
            pid_max: Some(32_768),
            threads_max: Some(192_729),
            max_map_count: Some(65_530),
            mem_available: Some(20 << 30),
            kernel_release: Some("6.18.44".into()),
            io_uring_disabled: Some(0),
            procs: None,
            cgroup_tasks: None,
            idle_clients: false,
            tasks_in_use: None,
        }
    }

    #[test]
    fn only_the_blocking_models_cannot_hold_idle_clients() {
        let idle = HostLimits {
            idle_clients: true,
            ..here()
        };
        for m in ServerModel::ALL {
            let c = ceilings(m, 20, &idle)
                .into_iter()
                .find(|c| c.limit == "--protocol idle");
            assert_eq!(c.is_some(), !m.holds_silent_peers(), "{m}");
            if let Some(c) = c {
                assert_eq!(c.holds, 0);
                assert!(
                    c.why.contains(m.name()) && c.why.contains("idle"),
                    "{}",
                    c.why
                );
                assert_eq!(binding(m, 20, &idle, 1).map(|c| c.holds), Some(0), "{m}");
            }
        }
        assert!(!ServerModel::Sync.holds_silent_peers());
        assert!(ServerModel::EpollThreads.holds_silent_peers());
        assert_eq!(binding(ServerModel::Tokio, 20, &idle, 1_000), None);
    }

    #[test]
    fn each_model_names_what_stops_it_here() {
        let at = |m| binding(m, 20, &here(), 200_000).map(|c| (c.limit, c.holds));
        let (limit, holds) = at(ServerModel::ThreadPerConn).unwrap();
        assert_eq!((limit.as_str(), holds), ("kernel.pid_max", 31_768));
        let (limit, holds) = at(ServerModel::Epoll).unwrap();
        assert!(limit.starts_with("RLIMIT_NOFILE") && (19_000..20_000).contains(&holds));
        assert_eq!(at(ServerModel::PreforkSync).unwrap().1, 8);
        for free in [
            ServerModel::EpollThreads,
            ServerModel::Prefork,
            ServerModel::HalfSync,
            ServerModel::Tokio,
            ServerModel::IoUring,
        ] {
            assert_eq!(at(free), None, "{free}");
        }
    }

    #[test]
    fn raised_pid_max_moves_thread_per_conn_to_the_next_limit() {
        let l = HostLimits {
            pid_max: Some(4_194_304),
            ..here()
        };
        let c = binding(ServerModel::ThreadPerConn, 20, &l, 200_000).unwrap();
        assert_eq!(c.limit, "vm.max_map_count");
        assert_eq!(c.holds, 32_265);
    }

    #[test]
    fn threads_already_alive_count_against_threads_max() {
        // The lab's server guest after tune.yml lifted the task caps: threads-max 7,557 and
        // ~90 tasks of its own; thread-per-conn held 7,470 there (at 6,557 under the old
        // 1,000-task guess).
        let l = HostLimits {
            pid_max: Some(4_194_304),
            threads_max: Some(7_557),
            tasks_in_use: Some(90),
            ..here()
        };
        let c = binding(ServerModel::ThreadPerConn, 20, &l, 100_000).unwrap();
        assert_eq!(c.limit, "kernel.threads-max");
        assert_eq!(c.holds, 7_557 - 90 - SERVER_TASKS);
        assert!(c.found.contains("90 tasks already alive"), "{}", c.found);
        let unknown = HostLimits {
            tasks_in_use: None,
            ..l
        };
        let c = binding(ServerModel::ThreadPerConn, 20, &unknown, 100_000).unwrap();
        assert_eq!(c.holds, 7_557 - HOST_TASKS);
    }

    #[test]
    fn a_login_sessions_task_cap_binds_thread_per_conn_first() {
        // A guest of the lab: 958 MiB, threads-max 7,557; the SSH session's scope gets 15% of it.
        let l = HostLimits {
            pid_max: Some(4_194_304),
            threads_max: Some(7_557),
            cgroup_tasks: Some(CgroupTasks {
                path: "/user.slice/user-0.slice/session-4.scope".into(),
                max: 1_133,
                current: 5,
            }),
            ..here()
        };
        let c = binding(ServerModel::ThreadPerConn, 20, &l, 100_000).unwrap();
        assert_eq!(
            c.limit,
            "cgroup pids.max (/user.slice/user-0.slice/session-4.scope)"
        );
        assert_eq!(c.holds, 1_133 - 5 - SERVER_TASKS);
        assert!(
            c.fix.contains("session-4.scope TasksMax=infinity"),
            "{}",
            c.fix
        );
        // Models without a thread per connection do not care.
        assert_eq!(binding(ServerModel::EpollThreads, 20, &l, 100_000), None);
        // A cgroup that is not a systemd unit is named by its path.
        let bare = CgroupTasks {
            path: "/c1m".into(),
            max: 100,
            current: 0,
        };
        assert_eq!(bare.unit(), None);
    }

    #[test]
    fn io_uring_on_an_old_or_closed_kernel_holds_nothing() {
        let old = HostLimits {
            kernel_release: Some("5.10.0-28-amd64".into()),
            ..here()
        };
        let c = binding(ServerModel::IoUring, 20, &old, 1).unwrap();
        assert_eq!((c.limit.as_str(), c.holds), ("kernel version", 0));
        let off = HostLimits {
            io_uring_disabled: Some(2),
            ..here()
        };
        assert_eq!(
            binding(ServerModel::IoUring, 20, &off, 1).unwrap().limit,
            "kernel.io_uring_disabled"
        );
    }
}
