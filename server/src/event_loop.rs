//! The edge-triggered epoll loop of the asynchronous models (`epoll-threads`, `epoll`,
//! `prefork`): one fd table, one epoll instance, its listeners, a byte of state per connection.
//! Which listeners it has and how it shares them is the model's ([`Listening`]).

use crate::conn::{self, Close};
use crate::counters::{add, Counters};
use crate::slots::Slots;
use c1m_proto::sys::{self, Epoll};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// Listener tokens count down from the top so they never collide with fds.
const LISTENER_TOKEN: u64 = u64::MAX - 65_536;

/// Scratch space for one read; echoed straight back, never kept.
pub const SCRATCH: usize = 16 * 1024;

/// How a loop's listeners are shared with other loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// Listeners of its own, one per port in each port's SO_REUSEPORT group: the kernel picks
    /// the loop for each new connection.
    Own,
    /// Listeners shared with other processes' loops, woken one at a time (EPOLLEXCLUSIVE).
    Shared,
}

/// A loop ready to run.
pub struct Loop {
    epoll: Epoll,
    listeners: Vec<RawFd>,
    listening: Listening,
    /// Connections this loop holds at most: at `cap` it stops listening until one closes, so
    /// the table keeps room for the process's other fds and (shared listeners) other loops
    /// take the new connections.
    cap: u64,
    /// Whether the listeners are in the epoll set now.
    armed: bool,
    open: u64,
    /// Greeting bytes received, by fd: the whole per-connection state.
    got: Slots<u8>,
    scratch: Vec<u8>,
    counters: Arc<Vec<Counters>>,
    index: usize,
}

impl Loop {
    /// A loop over `listeners` (already listening) for a table that holds fds up to `fd_limit`.
    pub fn new(
        listeners: Vec<RawFd>,
        listening: Listening,
        cap: u64,
        fd_limit: usize,
        counters: Arc<Vec<Counters>>,
        index: usize,
    ) -> io::Result<Loop> {
        let mut l = Loop {
            epoll: Epoll::new(1024)?,
            listeners,
            listening,
            cap,
            armed: false,
            open: 0,
            got: Slots::new(fd_limit),
            scratch: vec![0u8; SCRATCH],
            counters,
            index,
        };
        l.arm(true)?;
        Ok(l)
    }

    /// Adds (`on`) or removes the listeners from the epoll set.
    fn arm(&mut self, on: bool) -> io::Result<()> {
        if self.armed == on {
            return Ok(());
        }
        let exclusive = match self.listening {
            Listening::Own => 0,
            Listening::Shared => libc::EPOLLEXCLUSIVE as u32,
        };
        for (i, &fd) in self.listeners.iter().enumerate() {
            if on {
                self.epoll
                    .add(fd, sys::IN | sys::ET | exclusive, LISTENER_TOKEN + i as u64)?;
            } else {
                self.epoll.delete(fd)?;
            }
        }
        self.armed = on;
        Ok(())
    }

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
                    let hup = events & (sys::RDHUP | sys::HUP | sys::ERR) != 0;
                    self.serve(token as RawFd, hup);
                }
            }
            self.arm(self.open < self.cap)?;
        }
    }

    fn c(&self) -> &Counters {
        &self.counters[self.index]
    }

    fn accept_all(&mut self, listener: RawFd) {
        loop {
            if self.open >= self.cap {
                // Full: the rest wait in the queue (for another loop, or for a close).
                break;
            }
            match sys::accept(listener) {
                Ok(fd) => {
                    let Some(slot) = self.got.get_mut(fd) else {
                        // Cannot happen while the fd limit holds; never index out of bounds.
                        sys::close(fd);
                        self.c().accept_error(libc::EMFILE);
                        continue;
                    };
                    *slot = 0;
                    self.open += 1;
                    add(&self.c().accepted, 1);
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
                        self.c().accept_error(e.raw_os_error().unwrap_or(0));
                        self.close(fd, Close::Reset);
                    }
                }
                Err(libc::EAGAIN) => break,
                Err(libc::EINTR) | Err(libc::ECONNABORTED) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the queue stays; the next connection retries it.
                    self.c().accept_error(e);
                    break;
                }
            }
        }
    }

    fn close(&mut self, fd: RawFd, why: Close) {
        let got = self.got.get(fd).copied().unwrap_or(0);
        conn::count_close(&self.counters[self.index], why, got);
        self.open = self.open.saturating_sub(1);
        sys::close(fd);
    }

    /// Reads what a connection sent and echoes it; closes it on EOF, error or abuse. Returns
    /// whether the connection is still open.
    fn serve(&mut self, fd: RawFd, hup: bool) -> bool {
        let c = &self.counters[self.index];
        let Some(got) = self.got.get_mut(fd) else {
            return false;
        };
        match conn::serve_ready(c, fd, got, &mut self.scratch, hup) {
            Ok(()) => true,
            Err(why) => {
                self.close(fd, why);
                false
            }
        }
    }
}
