//! The server models behind `--model`, one module each, and what they share: where a model puts
//! its connections ([`place`]), how a process's listeners come to be ([`listeners`]), and the
//! worker processes a master starts ([`worker_specs`]). Every model counts into
//! [`Counters`] blocks and serves connections with [`crate::conn`]; the binary's main loop
//! prints their sum.

mod epoll;
mod epoll_threads;
mod half_sync;
mod io_uring;
mod prefork;
mod prefork_sync;
mod sync;
mod thread_per_conn;
mod tokio_tasks;

use crate::counters::Counters;
use c1m_proto::launch::ServerSpec;
use c1m_proto::layout::{self, Layout};
use c1m_proto::model::{ServerModel, Tables};
use c1m_proto::stats::LayoutLine;
use c1m_proto::sys;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::Arc;

pub use thread_per_conn::MIN_STACK_KIB;

/// Worker processes of `prefork-sync` when `--procs` does not say.
pub const PREFORK_SYNC_PROCS: usize = 8;

/// What a model's workers in this process need.
pub struct Ctx<'a> {
    pub spec: &'a ServerSpec,
    pub plan: Layout,
    /// Highest fd a table can hold (the hard RLIMIT_NOFILE).
    pub fd_limit: usize,
}

impl Ctx<'_> {
    pub fn addrs(&self) -> Vec<SocketAddrV4> {
        self.spec
            .ports
            .iter()
            .map(|port| SocketAddrV4::new(self.spec.bind, port))
            .collect()
    }
}

/// Counter blocks for `n` writers.
pub fn counter_blocks(n: usize) -> Arc<Vec<Counters>> {
    Arc::new((0..n.max(1)).map(|_| Counters::default()).collect())
}

/// Starts the model's workers in this process; returns the counters they write.
pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    match ctx.spec.model {
        ServerModel::Sync => sync::start(ctx),
        ServerModel::ThreadPerConn => thread_per_conn::start(ctx),
        ServerModel::PreforkSync => prefork_sync::start(ctx),
        ServerModel::Epoll => epoll::start(ctx),
        ServerModel::EpollThreads => epoll_threads::start(ctx),
        ServerModel::Prefork => prefork::start(ctx),
        ServerModel::HalfSync => half_sync::start(ctx),
        ServerModel::Tokio => tokio_tasks::start(ctx),
        ServerModel::IoUring => io_uring::start(ctx),
    }
}

/// Raises the fd limit and places the model's connections: its fd tables over threads and
/// processes as its shape allows, and the layout line that says so (with the model's name and,
/// for a model that cannot hold the target, the capacity it can).
pub fn place(spec: &ServerSpec) -> Result<(Layout, LayoutLine), String> {
    let model = spec.model;
    let shape = model.tables();
    let mut w = spec.workers.clone();
    let child = w.child_of.is_some();
    match shape {
        Tables::PerThread => {}
        Tables::One => {
            if w.procs.is_some_and(|p| p > 1) {
                return Err(format!(
                    "--model {model} is one thread with one fd table; --procs does not apply \
                     (prefork or epoll-threads spread over processes)"
                ));
            }
            w.procs = None;
            w.threads = Some(1);
            w.no_unshare = true;
        }
        Tables::PerProcess | Tables::OnePerProcess => w.no_unshare = true,
    }
    let reserved = 1 + u64::from(spec.ports.count);
    let (mut plan, mut line) = layout::place("server", spec.connections, reserved, &w)?;
    match shape {
        Tables::PerThread => {}
        Tables::One => {
            plan.procs = 1;
            plan.threads_per_proc = 1;
        }
        Tables::PerProcess => {
            plan.threads_per_proc = 1;
            if model == ServerModel::Prefork && !child {
                // nginx's worker_processes auto: at least a worker per core.
                plan.procs = plan.procs.max(cores());
            }
        }
        Tables::OnePerProcess => {
            plan.threads_per_proc = 1;
            plan.conns_per_table = 1;
            if !child {
                plan.procs = spec.workers.procs.unwrap_or(PREFORK_SYNC_PROCS).max(1);
            }
        }
    }
    line.procs = plan.procs;
    line.threads_per_proc = plan.threads_per_proc;
    line.conns_per_table = plan.conns_per_table;
    line.capacity = plan.capacity();
    line.unshare = plan.unshare;
    line.model = model.name().into();
    if !child && plan.capacity() < spec.connections {
        eprintln!(
            "c1m-server: --model {model} holds at most {} connections here ({}); {} asked",
            plan.capacity(),
            match shape {
                Tables::One => format!("one fd table, hard RLIMIT_NOFILE {}", line.nofile_hard),
                _ => format!("one connection per process, {} processes", plan.procs),
            },
            spec.connections
        );
    }
    Ok((plan, line))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this process is the master of a model whose worker processes share its listeners.
pub fn shares_listeners(model: ServerModel) -> bool {
    matches!(model, ServerModel::Prefork | ServerModel::PreforkSync)
}

/// The specs of this server's worker processes; for a model whose workers share the master's
/// listeners, the listeners are opened here and handed down by fd number.
pub fn worker_specs(spec: &ServerSpec, plan: &Layout) -> io::Result<Vec<ServerSpec>> {
    let mut specs = spec.worker_processes(plan, std::process::id());
    if shares_listeners(spec.model) {
        let ctx = Ctx {
            spec,
            plan: *plan,
            fd_limit: 0,
        };
        let fds = open_listeners(&ctx.addrs(), None, ctx.spec.fastopen)?;
        for &fd in &fds {
            sys::set_inheritable(fd)?;
        }
        for s in &mut specs {
            s.listen_fds = fds.clone();
        }
    }
    Ok(specs)
}

/// A listener on every address, in each port's SO_REUSEPORT group; with `steer`, the
/// source-address steering program attached (base, workers); with `fastopen`, taking a
/// client's first data in its SYN (TCP Fast Open).
pub fn open_listeners(
    addrs: &[SocketAddrV4],
    steer: Option<(std::net::Ipv4Addr, u32)>,
    fastopen: bool,
) -> io::Result<Vec<RawFd>> {
    let backlog = sys::somaxconn();
    let open = |addr: &SocketAddrV4| -> io::Result<RawFd> {
        let fd = sys::listener(*addr, backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
        if fastopen {
            if let Err(e) = sys::enable_fastopen(fd, backlog) {
                sys::close(fd);
                return Err(io::Error::new(
                    e.kind(),
                    format!("Fast Open on {addr}: {e}"),
                ));
            }
        }
        if let Some((base, n)) = steer {
            if let Err(e) = sys::steer_by_source(fd, base, n) {
                sys::close(fd);
                return Err(io::Error::new(e.kind(), format!("steering on {addr}: {e}")));
            }
        }
        Ok(fd)
    };
    let mut out: Vec<RawFd> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match open(addr) {
            Ok(fd) => out.push(fd),
            Err(e) => {
                out.iter().for_each(|&fd| sys::close(fd));
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// This process's listeners: the ones its master handed down (`--listen-fds`), or its own.
pub fn listeners(ctx: &Ctx) -> io::Result<Vec<RawFd>> {
    if ctx.spec.listen_fds.is_empty() {
        return open_listeners(&ctx.addrs(), None, ctx.spec.fastopen);
    }
    for &fd in &ctx.spec.listen_fds {
        if !sys::is_listener(fd) {
            return Err(io::Error::other(format!(
                "--listen-fds: fd {fd} is not a listening socket"
            )));
        }
    }
    Ok(ctx.spec.listen_fds.clone())
}

/// A blocking accept over several listeners, for the synchronous models: `poll(2)` until one
/// has a connection, then `accept4` it. The listeners stay non-blocking, so a connection another
/// process took first means waiting again, not blocking in `accept`.
pub struct BlockingAccept {
    polls: Vec<libc::pollfd>,
    /// Where the next scan starts, so a busy first port does not starve the others.
    next: usize,
}

impl BlockingAccept {
    pub fn new(listeners: &[RawFd]) -> BlockingAccept {
        let polls = listeners
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        BlockingAccept { polls, next: 0 }
    }

    /// The next connection (a non-blocking socket), or the errno of a failed accept (EMFILE…).
    pub fn accept(&mut self) -> Result<RawFd, i32> {
        loop {
            match sys::poll_in(&mut self.polls, -1) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EINVAL)),
            }
            let n = self.polls.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.polls[i].revents == 0 {
                    continue;
                }
                self.next = (i + 1) % n;
                match sys::accept(self.polls[i].fd) {
                    Ok(fd) => return Ok(fd),
                    Err(libc::EAGAIN) | Err(libc::EINTR) | Err(libc::ECONNABORTED) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// After an accept failure: a table or the system out of fds must not turn the accept loop into
/// a spin; the connection waits in the queue for the next try.
pub fn accept_failed(c: &Counters, errno: i32) {
    c.accept_error(errno);
    std::thread::sleep(std::time::Duration::from_millis(10));
}

/// One event loop on a thread of its own, over this process's listeners.
fn one_loop(
    ctx: &Ctx,
    listening: crate::event_loop::Listening,
) -> anyhow::Result<Arc<Vec<Counters>>> {
    use anyhow::Context;
    let counters = counter_blocks(1);
    let listeners = listeners(ctx).context("taking the listeners")?;
    let cap = ctx.plan.conns_per_table;
    let lp =
        crate::event_loop::Loop::new(listeners, listening, cap, ctx.fd_limit, counters.clone(), 0)?;
    let workers = c1m_proto::threads::Workers::new("c1m-server");
    workers
        .spawn(0, move || Ok(lp), crate::event_loop::Loop::run)
        .context("spawning the event loop thread")?;
    workers.wait_ready(1).context("event loop setup")?;
    Ok(counters)
}
