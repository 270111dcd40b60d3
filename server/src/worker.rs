//! One event loop: its own fd table, epoll instance and listeners.

use crate::counters::{add, Counters};
use c1m_proto::errors;
use c1m_proto::greeting;
use c1m_proto::layout::unshare_fd_table;
use c1m_proto::sys::{self, Epoll};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::Arc;

/// Listener tokens count down from the top so they never collide with fds.
const LISTENER_TOKEN: u64 = u64::MAX - 65_536;

/// Scratch space for one read; echoed straight back, never kept.
const SCRATCH: usize = 16 * 1024;

pub struct WorkerConfig {
    pub addrs: Vec<SocketAddrV4>,
    pub backlog: i32,
    pub unshare: bool,
    /// Highest fd this table can hold (the hard RLIMIT_NOFILE).
    pub fd_limit: usize,
    /// Attach the source-address steering program to the listeners (base, workers).
    pub steer: Option<(std::net::Ipv4Addr, u32)>,
    /// Accept first data in the SYN (TCP Fast Open).
    pub fastopen: bool,
}

/// Sets up a worker (unshare, epoll, listeners); returns it ready to run, or why it could not.
pub fn setup(cfg: &WorkerConfig, counters: Arc<Vec<Counters>>, index: usize) -> io::Result<Worker> {
    if cfg.unshare {
        unshare_fd_table()?;
    }
    let epoll = Epoll::new(1024)?;
    let mut listeners = Vec::with_capacity(cfg.addrs.len());
    for addr in &cfg.addrs {
        let fd = sys::listener(*addr, cfg.backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
        if cfg.fastopen {
            sys::enable_fastopen(fd, cfg.backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("Fast Open on {addr}: {e}")))?;
        }
        if let Some((base, n)) = cfg.steer {
            sys::steer_by_source(fd, base, n)
                .map_err(|e| io::Error::new(e.kind(), format!("steering on {addr}: {e}")))?;
        }
        epoll.add(
            fd,
            sys::IN | sys::ET,
            LISTENER_TOKEN + listeners.len() as u64,
        )?;
        listeners.push(fd);
    }
    Ok(Worker {
        epoll,
        listeners,
        state: vec![0u8; cfg.fd_limit + 1],
        scratch: vec![0u8; SCRATCH],
        counters,
        index,
    })
}

pub struct Worker {
    epoll: Epoll,
    listeners: Vec<RawFd>,
    /// Greeting bytes received, by fd: the whole per-connection state.
    state: Vec<u8>,
    scratch: Vec<u8>,
    counters: Arc<Vec<Counters>>,
    index: usize,
}

/// Why a connection is closed.
enum Close {
    PeerClosed,
    Garbage,
    Overflow,
    Reset,
}

impl Worker {
    /// Runs the loop forever; the process exits around it.
    pub fn run(mut self) -> io::Result<()> {
        let mut ready: Vec<(u32, u64)> = Vec::with_capacity(1024);
        loop {
            ready.clear();
            ready.extend(self.epoll.wait(-1)?);
            for &(events, token) in &ready {
                if token >= LISTENER_TOKEN {
                    let l = self.listeners[(token - LISTENER_TOKEN) as usize];
                    self.accept_all(l);
                } else {
                    self.on_ready(token as RawFd, events);
                }
            }
        }
    }

    fn c(&self) -> &Counters {
        &self.counters[self.index]
    }

    fn accept_all(&mut self, listener: RawFd) {
        let mut accepted = 0;
        loop {
            match sys::accept(listener) {
                Ok(fd) => {
                    if fd as usize >= self.state.len() {
                        // Cannot happen while the fd limit holds; never index out of bounds.
                        sys::close(fd);
                        add(&self.c().accept_errors[errors::slot(libc::EMFILE)], 1);
                        continue;
                    }
                    self.state[fd as usize] = 0;
                    accepted += 1;
                    // The greeting usually arrived with the handshake's last ACK: echo it now,
                    // before registering, and save a trip through epoll. Registering after the
                    // read loses nothing: EPOLL_CTL_ADD reports data that is already there.
                    if !self.serve(fd, false) {
                        continue;
                    }
                    if let Err(e) = self
                        .epoll
                        .add(fd, sys::IN | sys::RDHUP | sys::ET, fd as u64)
                    {
                        let slot = errors::slot(e.raw_os_error().unwrap_or(0));
                        add(&self.c().accept_errors[slot], 1);
                        self.close(fd);
                    }
                }
                Err(libc::EAGAIN) => break,
                Err(libc::EINTR) | Err(libc::ECONNABORTED) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the queue stays; the next connection retries it.
                    add(&self.c().accept_errors[errors::slot(e)], 1);
                    break;
                }
            }
        }
        add(&self.c().accepted, accepted);
    }

    fn on_ready(&mut self, fd: RawFd, events: u32) {
        self.serve(fd, events & (sys::RDHUP | sys::HUP | sys::ERR) != 0);
    }

    fn close(&mut self, fd: RawFd) {
        add(&self.counters[self.index].closed, 1);
        self.state[fd as usize] = 0;
        sys::close(fd);
    }

    /// Reads what a connection sent and echoes it; closes it on EOF, error or abuse. Returns
    /// whether the connection is still open.
    fn serve(&mut self, fd: RawFd, hup: bool) -> bool {
        let mut bytes_in = 0u64;
        let outcome = loop {
            let n = match sys::read(fd, &mut self.scratch) {
                Ok(0) => break Some(Close::PeerClosed),
                Ok(n) => n,
                Err(libc::EAGAIN) => break None,
                Err(libc::EINTR) => continue,
                Err(_) => break Some(Close::Reset),
            };
            bytes_in += n as u64;
            let got = self.state[fd as usize] as usize;
            if got < greeting::LEN {
                if !greeting::prefix_matches(got, &self.scratch[..n]) {
                    break Some(Close::Garbage);
                }
                let now = (got + n).min(greeting::LEN);
                self.state[fd as usize] = now as u8;
                if now == greeting::LEN {
                    add(&self.c().greeted, 1);
                }
            }
            match sys::write(fd, &self.scratch[..n]) {
                Ok(w) if w == n => add(&self.c().bytes_out, n as u64),
                Ok(w) => {
                    add(&self.c().bytes_out, w as u64);
                    break Some(Close::Overflow);
                }
                Err(libc::EAGAIN) => break Some(Close::Overflow),
                Err(_) => break Some(Close::Reset),
            }
            // A short read on a stream socket drained the queue: the next byte raises a new edge.
            if n < self.scratch.len() && !hup {
                break None;
            }
        };
        add(&self.c().bytes_in, bytes_in);
        if let Some(why) = outcome {
            let c = &self.counters[self.index];
            match why {
                Close::PeerClosed if (self.state[fd as usize] as usize) < greeting::LEN => {
                    add(&c.incomplete, 1)
                }
                Close::PeerClosed => {}
                Close::Garbage => add(&c.garbage, 1),
                Close::Overflow => add(&c.overflow, 1),
                Close::Reset => add(&c.reset, 1),
            }
            self.close(fd);
            return false;
        }
        true
    }
}
