//! `thread-per-conn` (the course's thread per request / multi-thread synchronous model, as
//! Apache's worker MPM runs): an acceptor per fd table takes connections with a blocking accept
//! and starts a thread for each (`--stack-kib`), which reads and echoes until the peer closes.
//! Each acceptor unshares its fd table before it starts, and the threads it starts share that
//! table, so the fd cap is not the ceiling: threads are (`kernel.pid_max`,
//! `kernel.threads-max`, `vm.max_map_count` — a stack and its guard are two mappings — and the
//! memory of a stack and a kernel stack per connection). A thread that cannot be started is
//! counted by errno (`accept_EAGAIN`) and its connection closed.

use super::{accept_failed, counter_blocks, open_listeners, BlockingAccept, Ctx};
use crate::conn::{self, After};
use crate::counters::{add, Counters};
use anyhow::Context;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys;
use c1m_proto::threads::Workers;
use std::sync::Arc;

/// Bytes a connection thread reads at once, on its own stack.
const READ: usize = 2048;

/// The smallest stack a connection thread may have: glibc's PTHREAD_STACK_MIN plus the read
/// buffer.
pub const MIN_STACK_KIB: usize = 16 + READ / 1024;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    let tables = ctx.plan.threads_per_proc;
    let counters = counter_blocks(tables);
    let stack = ctx.spec.stack_kib.max(MIN_STACK_KIB) * 1024;
    let workers = Workers::new("c1m-server");
    for index in 0..tables {
        let addrs = ctx.addrs();
        let unshare = ctx.plan.unshare;
        let setup = move || {
            if unshare {
                unshare_fd_table()?;
            }
            Ok(BlockingAccept::new(&open_listeners(&addrs, None)?))
        };
        let counters = counters.clone();
        let run = move |mut acceptor: BlockingAccept| -> std::io::Result<()> {
            let c = &counters[index];
            loop {
                let fd = match acceptor.accept() {
                    Ok(fd) => fd,
                    Err(e) => {
                        accept_failed(c, e);
                        continue;
                    }
                };
                add(&c.accepted, 1);
                let mine = counters.clone();
                let spawned = std::thread::Builder::new()
                    .stack_size(stack)
                    .spawn(move || {
                        let mut buf = [0u8; READ];
                        conn::serve_blocking(&mine[index], fd, &mut buf, After::Serve);
                    });
                if let Err(e) = spawned {
                    // pid_max, threads-max, max_map_count or memory: the ceiling, counted.
                    c.accept_error(e.raw_os_error().unwrap_or(libc::EAGAIN));
                    add(&c.refused, 1);
                    add(&c.closed, 1);
                    sys::close(fd);
                }
            }
        };
        workers
            .spawn(index, setup, run)
            .context("spawning an acceptor thread")?;
        workers.wait_ready(1).context("acceptor setup")?;
    }
    Ok(counters)
}
