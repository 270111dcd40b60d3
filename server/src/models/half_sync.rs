//! `half-sync` (the course's half-sync/half-async model): per fd table, an epoll reactor
//! thread (the asynchronous half) accepts connections and waits for them to become readable,
//! then hands each ready connection to a pool of `--pool` worker threads (the synchronous half)
//! through a queue; a worker reads and echoes what is there and hands the connection back to
//! the reactor (EPOLLONESHOT re-armed). The pool threads are started by their reactor after it
//! unshared its fd table, so they share that table, and the model scales by tables as
//! `epoll-threads` does. Per connection: one byte of greeting state, plus its place in the
//! queue while it waits for a worker.

use super::{counter_blocks, open_listeners, Ctx};
use crate::conn;
use crate::counters::{add, Counters};
use crate::event_loop::SCRATCH;
use crate::slots::Slots;
use anyhow::Context;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys::{self, Epoll};
use c1m_proto::threads::Workers;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

/// Listener tokens count down from the top so they never collide with fds.
const LISTENER_TOKEN: u64 = u64::MAX - 65_536;

/// Interest of a connection waiting for its next message: level-triggered, one report, then
/// the worker that takes it re-arms it.
const CONN_EVENTS: u32 = sys::IN | sys::RDHUP | sys::ONESHOT;

/// Ready connections waiting for a worker.
#[derive(Default)]
struct Queue {
    ready: Mutex<VecDeque<RawFd>>,
    wake: Condvar,
}

impl Queue {
    fn push(&self, fd: RawFd) {
        if let Ok(mut q) = self.ready.lock() {
            q.push_back(fd);
        }
        self.wake.notify_one();
    }

    fn pop(&self) -> io::Result<RawFd> {
        let poisoned = |_| io::Error::other("a worker of the pool died holding the queue");
        let mut q = self.ready.lock().map_err(poisoned)?;
        loop {
            if let Some(fd) = q.pop_front() {
                return Ok(fd);
            }
            q = self.wake.wait(q).map_err(poisoned)?;
        }
    }
}

/// What a reactor and its pool share: the queue, the greeting bytes by fd, the epoll instance.
struct Group {
    queue: Queue,
    got: Slots<AtomicU8>,
}

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    let tables = ctx.plan.threads_per_proc;
    let pool = ctx.spec.pool.max(1);
    // Per table: the reactor's block, then one per worker.
    let counters = counter_blocks(tables * (1 + pool));
    let workers = Workers::new("c1m-server");
    for index in 0..tables {
        let addrs = ctx.addrs();
        let fastopen = ctx.spec.fastopen;
        let unshare = ctx.plan.unshare;
        let fd_limit = ctx.fd_limit;
        let counters = counters.clone();
        let base = index * (1 + pool);
        let setup = move || -> io::Result<Reactor> {
            if unshare {
                unshare_fd_table()?;
            }
            let epoll = Epoll::new(1024)?;
            let listeners = open_listeners(&addrs, None, fastopen)?;
            for (i, &fd) in listeners.iter().enumerate() {
                epoll.add(fd, sys::IN | sys::ET, LISTENER_TOKEN + i as u64)?;
            }
            let group = Arc::new(Group {
                queue: Queue::default(),
                got: Slots::new(fd_limit),
            });
            for w in 0..pool {
                let (group, counters) = (group.clone(), counters.clone());
                let handle = epoll.try_clone(1)?;
                std::thread::Builder::new()
                    .name(format!("pool-{index}-{w}"))
                    .stack_size(64 * 1024 + SCRATCH)
                    .spawn(move || work(&group, &handle, &counters[base + 1 + w]))?;
            }
            Ok(Reactor {
                epoll,
                listeners,
                group,
                counters,
                block: base,
            })
        };
        workers
            .spawn(index, setup, Reactor::run)
            .context("spawning a reactor thread")?;
        workers.wait_ready(1).context("reactor setup")?;
    }
    Ok(counters)
}

/// A worker of the pool: takes a ready connection, serves what it sent, hands it back.
fn work(group: &Group, epoll: &Epoll, c: &Counters) {
    let mut scratch = vec![0u8; SCRATCH];
    while let Ok(fd) = group.queue.pop() {
        let Some(slot) = group.got.get(fd) else {
            continue;
        };
        let mut got = slot.load(Relaxed);
        // Level-triggered: whatever this leaves unread is reported again after the re-arm.
        let served = conn::serve_ready(c, fd, &mut got, &mut scratch, false);
        slot.store(got, Relaxed);
        let served = served.and_then(|()| {
            epoll
                .modify(fd, CONN_EVENTS, fd as u64)
                .map_err(|_| conn::Close::Reset)
        });
        if let Err(why) = served {
            conn::count_close(c, why, got);
            sys::close(fd);
        }
    }
}

/// The asynchronous half of one table.
struct Reactor {
    epoll: Epoll,
    listeners: Vec<RawFd>,
    group: Arc<Group>,
    counters: Arc<Vec<Counters>>,
    block: usize,
}

impl Reactor {
    fn run(mut self) -> io::Result<()> {
        let mut ready: Vec<(u32, u64)> = Vec::with_capacity(1024);
        loop {
            ready.clear();
            ready.extend(self.epoll.wait(-1)?);
            for &(_, token) in &ready {
                if token >= LISTENER_TOKEN {
                    let l = self.listeners[(token - LISTENER_TOKEN) as usize];
                    self.accept_all(l);
                } else {
                    self.group.queue.push(token as RawFd);
                }
            }
        }
    }

    fn accept_all(&self, listener: RawFd) {
        let c = &self.counters[self.block];
        loop {
            match sys::accept(listener) {
                Ok(fd) => {
                    let Some(slot) = self.group.got.get(fd) else {
                        sys::close(fd);
                        c.accept_error(libc::EMFILE);
                        continue;
                    };
                    slot.store(0, Relaxed);
                    add(&c.accepted, 1);
                    if let Err(e) = self.epoll.add(fd, CONN_EVENTS, fd as u64) {
                        c.accept_error(e.raw_os_error().unwrap_or(0));
                        conn::count_close(c, conn::Close::Reset, 0);
                        sys::close(fd);
                    }
                }
                Err(libc::EAGAIN) => break,
                Err(libc::EINTR) | Err(libc::ECONNABORTED) => continue,
                Err(e) => {
                    c.accept_error(e);
                    break;
                }
            }
        }
    }
}
