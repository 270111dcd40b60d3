//! One connection's protocol, the same in every model: the greeting arrives in any number of
//! pieces and is echoed, later bytes are echoed, a first byte that cannot start a greeting is
//! garbage, and every close is counted by why. The state a connection needs is one byte (how
//! much of its greeting has arrived); where that byte lives is the model's.

use crate::counters::{add, Counters};
use c1m_proto::{greeting, sys};
use std::os::fd::RawFd;
use std::time::Duration;

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// EOF from the peer.
    PeerClosed,
    /// The first bytes were not a greeting.
    Garbage,
    /// The peer sent more than it read back: the send buffer filled.
    Overflow,
    /// A read or write failed (ECONNRESET, EPIPE…).
    Reset,
    /// A blocking model waited for a greeting that did not come in time.
    Silent,
}

/// What a piece of received data meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// More of the greeting, or bytes after it.
    Fine,
    /// The greeting's last byte: it is complete.
    Greeted,
    /// Not a greeting.
    Garbage,
}

/// Takes `data`, received after `got` bytes of the greeting, and advances `got`.
pub fn take(got: &mut u8, data: &[u8]) -> Took {
    let at = *got as usize;
    if at >= greeting::LEN {
        return Took::Fine;
    }
    if !greeting::prefix_matches(at, data) {
        return Took::Garbage;
    }
    let now = (at + data.len()).min(greeting::LEN);
    *got = now as u8;
    if now == greeting::LEN {
        Took::Greeted
    } else {
        Took::Fine
    }
}

/// Whether the greeting is complete after `got` bytes.
pub fn greeted(got: u8) -> bool {
    got as usize >= greeting::LEN
}

/// Counts a received piece: its bytes, and the greeting when it completes. `Err` for garbage.
pub fn received(c: &Counters, got: &mut u8, data: &[u8]) -> Result<(), Close> {
    add(&c.bytes_in, data.len() as u64);
    match take(got, data) {
        Took::Fine => Ok(()),
        Took::Greeted => {
            add(&c.greeted, 1);
            Ok(())
        }
        Took::Garbage => Err(Close::Garbage),
    }
}

/// Echoes `data` with one `send`: anything short of all of it means the peer is not reading
/// (a full send buffer on a non-blocking socket, the send timeout on a blocking one).
pub fn echo(c: &Counters, fd: RawFd, data: &[u8]) -> Result<(), Close> {
    loop {
        return match sys::write(fd, data) {
            Ok(w) => {
                add(&c.bytes_out, w as u64);
                if w == data.len() {
                    Ok(())
                } else {
                    Err(Close::Overflow)
                }
            }
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) => Err(Close::Overflow),
            Err(_) => Err(Close::Reset),
        };
    }
}

/// Counts a close of a connection whose greeting had `got` bytes. The caller closes the fd.
pub fn count_close(c: &Counters, why: Close, got: u8) {
    match why {
        Close::PeerClosed | Close::Silent if !greeted(got) => add(&c.incomplete, 1),
        Close::PeerClosed | Close::Silent => {}
        Close::Garbage => add(&c.garbage, 1),
        Close::Overflow => add(&c.overflow, 1),
        Close::Reset => add(&c.reset, 1),
    }
    add(&c.closed, 1);
}

/// Serves a non-blocking connection that is ready: reads until the queue is empty and echoes
/// each piece. `Ok` while it stays open; the reason to close it otherwise (the caller closes and
/// counts it). `hup`: the peer has shut down, so read on to the end even after a short read.
pub fn serve_ready(
    c: &Counters,
    fd: RawFd,
    got: &mut u8,
    scratch: &mut [u8],
    hup: bool,
) -> Result<(), Close> {
    loop {
        let n = match sys::read(fd, scratch) {
            Ok(0) => return Err(Close::PeerClosed),
            Ok(n) => n,
            Err(libc::EAGAIN) => return Ok(()),
            Err(libc::EINTR) => continue,
            Err(_) => return Err(Close::Reset),
        };
        received(c, got, &scratch[..n])?;
        echo(c, fd, &scratch[..n])?;
        // A short read on a stream socket drained the queue: the next byte raises a new edge.
        if n < scratch.len() && !hup {
            return Ok(());
        }
    }
}

/// How long a blocking model waits for a greeting before it gives the connection up: a silent
/// peer must not stall a single-threaded server for ever.
pub const GREETING_WAIT: Duration = Duration::from_secs(10);

/// How long a blocking model waits on a peer that does not read its echo.
pub const SEND_WAIT: Duration = Duration::from_secs(2);

/// What a blocking model does once the greeting is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep the fd open and never read it again (`sync`).
    Keep,
    /// Serve later messages until the peer closes (`thread-per-conn`, `prefork-sync`).
    Serve,
}

/// A blocking model's whole connection on the calling thread: the greeting within
/// [`GREETING_WAIT`], then as `after` says. A connection that ends is closed and counted here.
/// Returns whether it stays open.
pub fn serve_blocking(c: &Counters, fd: RawFd, scratch: &mut [u8], after: After) -> bool {
    let mut got = 0u8;
    let ended = sys::set_blocking_with_timeouts(fd, GREETING_WAIT, SEND_WAIT)
        .map_err(|_| Close::Reset)
        .and_then(|()| read_echo(c, fd, &mut got, scratch, true))
        .and_then(|()| match after {
            After::Keep => Ok(()),
            After::Serve => sys::set_blocking_with_timeouts(fd, Duration::ZERO, SEND_WAIT)
                .map_err(|_| Close::Reset)
                .and_then(|()| read_echo(c, fd, &mut got, scratch, false)),
        });
    match ended {
        Ok(()) => true,
        Err(why) => {
            count_close(c, why, got);
            sys::close(fd);
            false
        }
    }
}

/// Blocking reads and echoes: until the greeting is complete (`greeting_only`), or until the
/// connection must close (then always `Err`).
fn read_echo(
    c: &Counters,
    fd: RawFd,
    got: &mut u8,
    scratch: &mut [u8],
    greeting_only: bool,
) -> Result<(), Close> {
    loop {
        if greeting_only && greeted(*got) {
            return Ok(());
        }
        let n = match sys::read(fd, scratch) {
            Ok(0) => return Err(Close::PeerClosed),
            Ok(n) => n,
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) => return Err(Close::Silent),
            Err(_) => return Err(Close::Reset),
        };
        received(c, got, &scratch[..n])?;
        echo(c, fd, &scratch[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_in_pieces_then_later_bytes() {
        let g = greeting::greeting(42);
        let mut got = 0;
        assert_eq!(take(&mut got, &g[..1]), Took::Fine);
        assert_eq!(take(&mut got, &g[1..31]), Took::Fine);
        assert_eq!(take(&mut got, &g[31..]), Took::Greeted);
        assert_eq!(take(&mut got, b"anything at all"), Took::Fine);
        assert!(greeted(got));
        let mut fresh = 0;
        assert_eq!(take(&mut fresh, b"GET / HTTP/1.1"), Took::Garbage);
        assert_eq!(fresh, 0);
    }

    #[test]
    fn closes_are_counted_by_reason() {
        let c = Counters::default();
        count_close(&c, Close::PeerClosed, 10);
        count_close(&c, Close::PeerClosed, greeting::LEN as u8);
        count_close(&c, Close::Garbage, 0);
        count_close(&c, Close::Silent, 0);
        let s = crate::counters::snapshot(std::slice::from_ref(&c));
        assert_eq!(s.closed, 4);
        assert_eq!(s.errors.get("incomplete"), Some(&2));
        assert_eq!(s.errors.get("garbage"), Some(&1));
    }
}
