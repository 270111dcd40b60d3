//! `tokio` (the course's micro-processes / coroutines, as Go and Erlang run them): a tokio task
//! per connection on the multi-thread runtime, an accept task per port. A task waits for its
//! socket to be readable, reads into its worker thread's scratch buffer and echoes at once, so
//! what a connection keeps is the task and the runtime's registration, not a buffer. The
//! runtime's threads share the process's one fd table, so the model scales past the fd cap by
//! worker processes, each a runtime of its own.
//!
//! Each process has its own listener in every port's SO_REUSEPORT group, and the kernel spreads
//! connections over the group by a hash, not by room: at 1M over 53 tables of 19,138 a few
//! tables fill before the rest, and the connections hashed to them would wait in a queue nobody
//! accepts from until the client gives up. So a full process leaves the groups (closes its
//! listeners) and rejoins when it has room again; with `net.ipv4.tcp_migrate_req` (set in a
//! local run's namespace) what was queued on a closed listener moves to one that is open.

use super::{counter_blocks, open_listeners, Ctx};
use crate::conn::{self, Close};
use crate::counters::{add, Counters};
use crate::event_loop::SCRATCH;
use anyhow::Context;
use c1m_proto::sys;
use c1m_proto::threads::Workers;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

thread_local! {
    /// Each runtime thread reads into this; nothing is kept across an await.
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SCRATCH]);
}

pub fn start(ctx: &Ctx) -> anyhow::Result<Arc<Vec<Counters>>> {
    let counters = counter_blocks(1);
    let addrs = ctx.addrs();
    let fastopen = ctx.spec.fastopen;
    let c = counters.clone();
    let cap = ctx.plan.conns_per_table;
    let listen_addrs = addrs.clone();
    let setup = move || -> io::Result<(tokio::runtime::Runtime, Vec<std::net::TcpListener>)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .enable_time()
            .thread_name("tokio-worker")
            .build()?;
        let listeners = listen_addrs
            .iter()
            .map(|&addr| listen(addr, fastopen))
            .collect::<io::Result<_>>()?;
        Ok((rt, listeners))
    };
    let run = move |(rt, listeners): (tokio::runtime::Runtime, Vec<std::net::TcpListener>)| {
        rt.block_on(async move {
            let mut accepts = Vec::new();
            for (l, addr) in listeners.into_iter().zip(addrs) {
                let l = TcpListener::from_std(l)?;
                accepts.push(tokio::spawn(accept_loop(addr, l, c.clone(), cap, fastopen)));
            }
            for a in accepts {
                a.await.map_err(io::Error::other)?;
            }
            Ok(())
        })
    };
    let workers = Workers::new("c1m-server");
    workers
        .spawn(0, setup, run)
        .context("spawning the runtime")?;
    workers.wait_ready(1).context("runtime setup")?;
    Ok(counters)
}

/// Accepts on one port while the process's table has room (`cap` connections: the runtime's
/// threads and the stats reader share the table with them). A full process closes its listener,
/// so the port's SO_REUSEPORT group hashes new connections to processes with room, and opens a
/// new one when connections have closed.
async fn accept_loop(
    addr: SocketAddrV4,
    listener: TcpListener,
    c: Arc<Vec<Counters>>,
    cap: u64,
    fastopen: bool,
) {
    let mut listener = Some(listener);
    loop {
        let open = c[0]
            .accepted
            .load(Relaxed)
            .saturating_sub(c[0].closed.load(Relaxed));
        if open >= cap {
            listener = None;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if listener.is_none() {
            match listen(addr, fastopen).and_then(TcpListener::from_std) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    c[0].accept_error(e.raw_os_error().unwrap_or(0));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(l) = &listener else { continue };
        match l.accept().await {
            Ok((stream, _)) => {
                add(&c[0].accepted, 1);
                tokio::spawn(serve(stream, c.clone()));
            }
            Err(e) => {
                // EMFILE and the like: back off rather than spin; the connection stays queued.
                c[0].accept_error(e.raw_os_error().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A listener on `addr` in the port's SO_REUSEPORT group: at start, and again when a process
/// that was full rejoins the group.
fn listen(addr: SocketAddrV4, fastopen: bool) -> io::Result<std::net::TcpListener> {
    let fd = open_listeners(&[addr], None, fastopen)?
        .pop()
        .ok_or_else(|| io::Error::other("no listener opened"))?;
    // SAFETY: fd is a listening socket just opened and owned by nothing else.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// One connection's task.
async fn serve(stream: TcpStream, c: Arc<Vec<Counters>>) {
    let c = &c[0];
    let fd = stream.as_raw_fd();
    let mut got = 0u8;
    let why = loop {
        if stream.readable().await.is_err() {
            break Close::Reset;
        }
        let step = SCRATCH_BUF.with_borrow_mut(|buf| {
            // try_io clears the readiness on EAGAIN, so the next `readable` waits for data.
            match stream.try_io(Interest::READABLE, || {
                sys::read(fd, buf).map_err(io::Error::from_raw_os_error)
            }) {
                Ok(0) => Err(Close::PeerClosed),
                Ok(n) => conn::received(c, &mut got, &buf[..n])
                    .and_then(|()| conn::echo(c, fd, &buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
                Err(_) => Err(Close::Reset),
            }
        });
        if let Err(why) = step {
            break why;
        }
    };
    conn::count_close(c, why, got);
    // Dropping the stream closes the socket (RST: linger 0 comes from the listener).
}
