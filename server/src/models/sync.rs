//! `sync` (the course's single-thread synchronous model, as NTP serves): one thread, a blocking
//! accept over every port, read the greeting (blocking, at most [`GREETING_WAIT`]), echo it,
//! keep the fd, next. It never reads a connection again, so later messages go unanswered and a
//! peer that leaves is not noticed; it holds what one fd table holds.
//!
//! [`GREETING_WAIT`]: crate::conn::GREETING_WAIT

use super::{accept_failed, counter_blocks, listeners, BlockingAccept, Ctx};
use crate::conn::{self, After};
use crate::counters::{add, Counters};
use anyhow::Context;
use c1m_proto::threads::Workers;
use std::sync::Arc;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    one_at_a_time(ctx, After::Keep)
}

/// One thread that accepts a connection and serves it as `after` says before it accepts the
/// next: `sync`, and each worker process of `prefork-sync`.
pub(super) fn one_at_a_time(ctx: &Ctx, after: After) -> anyhow::Result<Arc<Vec<Counters>>> {
    let counters = counter_blocks(1);
    let listeners = listeners(ctx).context("taking the listeners")?;
    let c = counters.clone();
    let cap = ctx.plan.conns_per_table;
    let run = move |mut acceptor: BlockingAccept| -> std::io::Result<()> {
        let mut scratch = [0u8; 4096];
        let mut kept = 0u64;
        loop {
            if kept >= cap {
                // The table is full but for the process's own fds; `sync` never closes what it
                // keeps, so this is where it stops.
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
            match acceptor.accept() {
                Ok(fd) => {
                    add(&c[0].accepted, 1);
                    kept += u64::from(conn::serve_blocking(&c[0], fd, &mut scratch, after));
                }
                Err(e) => accept_failed(&c[0], e),
            }
        }
    };
    let workers = Workers::new("c1m-server");
    workers
        .spawn(0, move || Ok(BlockingAccept::new(&listeners)), run)
        .context("spawning the server thread")?;
    workers.wait_ready(1).context("server thread setup")?;
    Ok(counters)
}
