//! How many fd tables a host needs for N sockets, and how to spread them over threads and
//! processes.
//!
//! RLIMIT_NOFILE caps each *fd table*, not each process: a thread that calls
//! `unshare(CLONE_FILES)` gets a private copy of the table and a budget of its own. So the unit of
//! capacity is the table, and a layout is `procs × threads` tables.

use std::io;

/// The fd budget of this process after raising the soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard one: the hard one is the real cap.
pub fn raise_nofile() -> io::Result<FdBudget> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft_before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(FdBudget {
        soft_before,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Fraction of each table left free so that SO_REUSEPORT's hash spread, which is never exactly
/// even, does not overflow a table while others still have room.
pub const HEADROOM: f64 = 0.04;

/// A placement of connections onto fd tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub procs: usize,
    pub threads_per_proc: usize,
    /// Connections one table is planned to hold (after headroom).
    pub conns_per_table: u64,
    /// Whether each thread unshares its fd table (false: one table per process).
    pub unshare: bool,
}

impl Layout {
    pub fn tables(&self) -> usize {
        self.procs * self.threads_per_proc
    }
    pub fn capacity(&self) -> u64 {
        self.tables() as u64 * self.conns_per_table
    }
}

/// Plans a layout for `connections` sockets when each table may hold `fd_limit` fds of which
/// `reserved` are taken by other things (stdio, epoll, listeners).
///
/// `procs`: a fixed number of processes (`--procs`), or `None` to use one process when threads
/// can unshare their tables. `min_tables`: at least this many tables (so every core gets a loop).
pub fn plan(
    connections: u64,
    fd_limit: u64,
    reserved: u64,
    procs: Option<usize>,
    unshare: bool,
    min_tables: usize,
) -> Result<Layout, String> {
    let usable = fd_limit.saturating_sub(reserved);
    let per_table = ((usable as f64) * (1.0 - HEADROOM)).floor() as u64;
    if per_table == 0 {
        return Err(format!(
            "the fd limit ({fd_limit}) leaves no room for connections after {reserved} reserved fds; \
             raise `ulimit -n` (hard nofile) to at least {}",
            reserved + 64
        ));
    }
    let tables = connections
        .div_ceil(per_table)
        .max(min_tables as u64)
        .max(1) as usize;
    let layout = match (procs, unshare) {
        (Some(k), true) => {
            let k = k.max(1);
            Layout {
                procs: k,
                threads_per_proc: tables.div_ceil(k),
                conns_per_table: per_table,
                unshare: true,
            }
        }
        (Some(k), false) => Layout {
            procs: k.max(1).max(tables),
            threads_per_proc: 1,
            conns_per_table: per_table,
            unshare: false,
        },
        (None, true) => Layout {
            procs: 1,
            threads_per_proc: tables,
            conns_per_table: per_table,
            unshare: true,
        },
        (None, false) => Layout {
            procs: tables,
            threads_per_proc: 1,
            conns_per_table: per_table,
            unshare: false,
        },
    };
    Ok(layout)
}

/// Detaches the calling thread's fd table from the rest of the process, so that its sockets
/// count against a budget of their own.
pub fn unshare_fd_table() -> io::Result<()> {
    // SAFETY: unshare takes flags only; CLONE_FILES affects the calling thread alone.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Number of fds open in the calling thread's table right now.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/thread-self/fd")
        .map(|d| d.count().saturating_sub(1) as u64)
        .unwrap_or(0)
}

/// The flags both binaries take for placing their workers (flattened into each launch spec).
#[derive(clap::Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerArgs {
    /// Worker processes (default: one, with a thread per fd table; more only if asked).
    #[arg(long)]
    pub procs: Option<usize>,
    /// Worker threads per process (default: from the layout plan).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep one fd table per process (no unshare(CLONE_FILES)); the layout uses processes.
    #[arg(long)]
    pub no_unshare: bool,
    /// Stats interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Internal: run as worker process of the given supervisor pid.
    #[arg(long, hide = true)]
    pub child_of: Option<u32>,
    /// Driven by a controller through stdin (an SSH exec channel): stop as on SIGTERM when stdin
    /// reaches its end, and lead a process group of its own for the controller to signal.
    #[arg(long)]
    pub stop_on_eof: bool,
}

impl WorkerArgs {
    /// A worker process's flags: one process placed as its supervisor's plan says (its
    /// threads, the same table choice), tied to the supervisor `parent`, and never the one
    /// that watches stdin; whatever else there is stays as the supervisor's.
    pub fn for_worker_process(&self, plan: &Layout, parent: u32) -> WorkerArgs {
        WorkerArgs {
            procs: None,
            threads: Some(plan.threads_per_proc),
            no_unshare: !plan.unshare,
            child_of: Some(parent),
            stop_on_eof: false,
            ..self.clone()
        }
    }

    /// For a worker process: dies with its supervisor. False when the supervisor is already
    /// gone, and the worker should exit at once.
    fn adopt_parent(&self) -> bool {
        self.child_of.is_none_or(crate::sys::die_with_parent)
    }

    /// What a binary does first: takes control as `--stop-on-eof` asks, and as a worker
    /// process ties itself to its supervisor. False when that supervisor is already gone, and
    /// the process should exit at once.
    pub fn begin(&self) -> bool {
        self.take_control();
        self.adopt_parent()
    }

    /// Sets up what `--stop-on-eof` asks for; worker processes are never given it.
    fn take_control(&self) {
        if self.stop_on_eof && self.child_of.is_none() {
            crate::signals::controlled_by_stdin();
        }
    }
}

/// Raises the fd limit and plans where `connections` go: the layout, and the line that says so.
/// `reserved`: fds each table needs besides connections and stdio (epoll, listeners).
pub fn place(
    role: &str,
    connections: u64,
    reserved: u64,
    w: &WorkerArgs,
) -> Result<(Layout, crate::stats::LayoutLine), String> {
    let budget = raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    let reserved = open_fds() + reserved + 16;
    let mut plan = plan(
        connections,
        budget.soft,
        reserved,
        w.procs,
        !w.no_unshare,
        1,
    )?;
    if let Some(t) = w.threads {
        plan.threads_per_proc = t.max(1);
    }
    if w.child_of.is_some() {
        plan.procs = 1;
    }
    let line = crate::stats::LayoutLine {
        event: "layout".into(),
        role: role.into(),
        procs: plan.procs,
        threads_per_proc: plan.threads_per_proc,
        conns_per_table: plan.conns_per_table,
        capacity: plan.capacity(),
        unshare: plan.unshare,
        nofile_soft_before: budget.soft_before,
        nofile_hard: budget.hard,
        pid: std::process::id(),
        // SAFETY: getpgrp has no preconditions.
        pgid: unsafe { libc::getpgrp() } as u32,
        model: String::new(),
    };
    Ok((plan, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_under_a_20k_cap_needs_53_tables() {
        let l = plan(1_000_000, 20_000, 40, None, true, 1).unwrap();
        assert_eq!(l.procs, 1);
        assert_eq!(l.conns_per_table, 19_161);
        assert_eq!(l.tables(), 53);
        assert!(l.capacity() >= 1_000_000);
    }

    #[test]
    fn forced_procs_split_threads() {
        let l = plan(1_000_000, 20_000, 40, Some(4), true, 1).unwrap();
        assert_eq!((l.procs, l.threads_per_proc), (4, 14));
        let l = plan(1_000_000, 20_000, 40, Some(4), false, 1).unwrap();
        assert_eq!((l.procs, l.threads_per_proc), (53, 1));
    }

    #[test]
    fn tiny_limit_is_an_error_with_a_fix() {
        let e = plan(10, 30, 40, None, true, 1).unwrap_err();
        assert!(e.contains("ulimit -n"), "{e}");
    }

    #[test]
    fn unshared_thread_has_its_own_budget() {
        // An fd made in an unshared thread does not exist in the process's table.
        const HIGH: i32 = 777;
        let in_thread = std::thread::spawn(|| {
            unshare_fd_table().unwrap();
            let f = std::fs::File::open("/proc/self/stat").unwrap();
            // SAFETY: dup2 onto a free slot of this thread's private table.
            let r = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), HIGH) };
            // SAFETY: F_GETFD only queries.
            r == HIGH && unsafe { libc::fcntl(HIGH, libc::F_GETFD) } >= 0
        })
        .join()
        .unwrap();
        assert!(in_thread, "the fd exists in the thread that made it");
        // SAFETY: F_GETFD only queries.
        assert_eq!(unsafe { libc::fcntl(HIGH, libc::F_GETFD) }, -1);
    }
}
