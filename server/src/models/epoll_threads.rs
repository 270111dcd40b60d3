//! `epoll-threads` (the course's multi-thread asynchronous model, and the default): an
//! edge-triggered epoll loop per thread. Each thread unshares its fd table first, so every loop
//! has an RLIMIT_NOFILE budget of its own, then opens its own SO_REUSEPORT listener on every
//! port; the kernel spreads connections over them (or the steering program does). No fd ever
//! crosses threads.

use super::{counter_blocks, open_listeners, Ctx};
use crate::counters::Counters;
use crate::event_loop::{Listening, Loop};
use anyhow::Context;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::threads::Workers;
use std::sync::Arc;

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    let threads = ctx.plan.threads_per_proc;
    let counters = counter_blocks(threads);
    let workers = Workers::new("c1m-server");
    for index in 0..threads {
        let addrs = ctx.addrs();
        let fastopen = ctx.spec.fastopen;
        let unshare = ctx.plan.unshare;
        let fd_limit = ctx.fd_limit;
        let steer = ctx
            .spec
            .steer_source_base
            .filter(|_| index == 0)
            .map(|base| (base, threads as u32));
        let counters = counters.clone();
        let setup = move || {
            if unshare {
                unshare_fd_table()?;
            }
            let listeners = open_listeners(&addrs, steer, fastopen)?;
            // The table is this thread's alone: it may fill up to the fd limit.
            Loop::new(
                listeners,
                Listening::Own,
                u64::MAX,
                fd_limit,
                counters,
                index,
            )
        };
        workers
            .spawn(index, setup, Loop::run)
            .context("spawning a worker thread")?;
        // One at a time: listeners join each port's SO_REUSEPORT group in worker order, which
        // the steering program's numbering relies on.
        workers.wait_ready(1).context("worker setup")?;
    }
    Ok(counters)
}
