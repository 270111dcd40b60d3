//! Judging an SSH operation by its progress, not by a budget per call.
//!
//! libssh2's own timeout bounds each blocking call from its start, so a transfer that keeps
//! moving but takes longer than the budget fails (an upload over a slow link), and a budget long
//! enough for that leaves a stopped link undetected for as long. Instead, an operation runs the
//! session non-blocking ([`NonBlocking`]); whenever libssh2 would block, a [`Watch`] sleeps in
//! `poll(2)` on the socket, sends keepalives when due, and gives up only when nothing moved for
//! the progress timeout. What counts as moving is the operation's [`Measure`].
//!
//! This module owns the waiting and the judging; the operations themselves live in
//! `channel_io` (commands) and `sftp_io` (files).

use crate::interrupted::{Flow, Halt, Interrupted};
use crate::TransportError;
use ssh2::{ErrorCode, Session};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// libssh2's "would block" code (`LIBSSH2_ERROR_EAGAIN`).
pub(super) const EAGAIN: ErrorCode = ErrorCode::Session(-37);

/// Longest single sleep: keepalives go out on time and the judgement stays fresh.
const TICK: Duration = Duration::from_secs(1);

/// What proves an operation is still getting somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    /// Any byte from the host (keepalive answers included), or any byte of ours its kernel
    /// acknowledges: a command that prints nothing for minutes on a live host is fine, and so
    /// is a host so busy that its SSH server is starved while its kernel still takes our
    /// keepalives (a guest working through a million sockets); a link that carries nothing is
    /// not.
    Host,
    /// Only the operation's own bytes (an SFTP transfer): a host that still answers keepalives
    /// but stopped taking the file is stalled.
    Payload,
}

/// One live session as an operation needs it: where to wait and how long without progress.
#[derive(Clone, Copy)]
pub(super) struct Link<'a> {
    pub host: &'a str,
    pub session: &'a Session,
    pub socket: RawFd,
    /// What a ProxyJump tunnel's pump carried, when `socket` is the local end of one: its
    /// kernel knows nothing of the far host.
    pub tunnel: Option<&'a Traffic>,
    /// The progress timeout.
    pub patience: Duration,
}

impl<'a> Link<'a> {
    pub fn watch(&self, what: impl Into<String>, flow: Flow, measure: Measure) -> Watch<'a> {
        let now = Instant::now();
        Watch {
            link: *self,
            what: what.into(),
            flow,
            measure,
            total: None,
            done: 0,
            started: now,
            last_progress: now,
            heard: self.counters(),
        }
    }

    /// Bytes received from the host and bytes of ours it took, both only growing: the
    /// socket's kernel counts, or a tunnel's. `None` where neither can tell.
    pub fn counters(&self) -> Option<(u64, u64)> {
        match self.tunnel {
            Some(t) => Some(t.counters()),
            None => link_counters(self.socket),
        }
    }

    /// Makes every later call on this session fail at once instead of waiting: after a stall
    /// the session's state is unknown, and dropping its channels and files would otherwise
    /// block on the dead link (their destructors close them in blocking mode).
    pub fn cut(&self) {
        self.session.set_timeout(1);
        // SAFETY: shutdown(2) on the session's socket, which stays open until the session drops.
        unsafe { libc::shutdown(self.socket, libc::SHUT_RDWR) };
    }
}

/// Runs the session non-blocking until dropped.
pub(super) struct NonBlocking<'a>(&'a Session);

impl<'a> NonBlocking<'a> {
    pub fn new(session: &'a Session) -> Self {
        session.set_blocking(false);
        NonBlocking(session)
    }
}

impl Drop for NonBlocking<'_> {
    fn drop(&mut self) {
        self.0.set_blocking(true);
    }
}

/// Why a watched operation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// Nothing moved for the progress timeout.
    NoProgress,
    /// The connection failed; what it said.
    Lost(String),
}

/// Why a step of an operation did not complete.
pub(super) enum Failed {
    /// The host answered with an error (an SFTP status such as "no such file"): not a link
    /// problem, and nothing a retry would change.
    Refused(ssh2::Error),
    /// The link stopped moving or broke.
    Halted(Stop),
}

/// The progress of one operation.
pub(super) struct Watch<'a> {
    link: Link<'a>,
    what: String,
    flow: Flow,
    measure: Measure,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_progress: Instant,
    /// The link's counters at the last look (see [`Link::counters`]).
    heard: Option<(u64, u64)>,
}

impl<'a> Watch<'a> {
    pub fn with_total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// Counts `n` bytes as moved before this watch began (a resumed upload).
    pub fn already(mut self, n: u64) -> Self {
        self.done = n;
        self
    }

    /// Changes what counts as progress from here on (the data phase of a transfer).
    pub fn measure(&mut self, measure: Measure) {
        self.measure = measure;
        self.heard = self.link.counters();
    }

    /// Counts `n` bytes of the operation as moved.
    pub fn moved(&mut self, n: usize) {
        if n > 0 {
            self.done += n as u64;
            self.last_progress = Instant::now();
        }
    }

    /// Counts something from the host as progress without counting it as the operation's bytes.
    pub fn heard(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Sleeps until the socket is ready the way libssh2 needs, or `cap` passes; sends a
    /// keepalive when one is due; fails when nothing moved for the progress timeout.
    pub fn wait(&mut self, cap: Duration) -> Result<(), Stop> {
        let session = self.link.session;
        let left = self
            .link
            .patience
            .saturating_sub(self.last_progress.elapsed());
        // Short naps against a short timeout: keepalives are sent when due only if we look.
        let nap = cap.min(left).min(TICK).min(self.link.patience / 8);
        let mut events = libc::POLLIN;
        if matches!(
            session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd: self.link.socket,
            events,
            revents: 0,
        };
        let ms = i32::try_from(nap.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Stop::Lost(format!("poll: {e}")));
            }
        }
        // libssh2 sends one only when the interval has passed since the last.
        match session.keepalive_send() {
            Ok(_) => {}
            Err(e) if e.code() == EAGAIN => {}
            Err(e) => return Err(Stop::Lost(format!("keepalive failed: {e}"))),
        }
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(Stop::Lost(socket_error(self.link.socket).to_string()));
        }
        if self.measure == Measure::Host {
            let heard = self.link.counters();
            if heard != self.heard {
                self.heard = heard;
                self.last_progress = Instant::now();
            }
        }
        if self.last_progress.elapsed() >= self.link.patience {
            return Err(Stop::NoProgress);
        }
        Ok(())
    }

    /// Repeats a libssh2 call until it stops saying "would block", waiting between tries.
    pub fn call<T>(&mut self, mut op: impl FnMut() -> Result<T, ssh2::Error>) -> Result<T, Failed> {
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == EAGAIN => self.wait(TICK).map_err(Failed::Halted)?,
                Err(e) => return Err(classify(e)),
            }
        }
    }

    /// The error for this operation stopped by `stop`, after cutting the link (see
    /// [`Link::cut`]).
    pub fn interrupted(&self, stop: Stop) -> TransportError {
        self.link.cut();
        let (halt, error) = match stop {
            Stop::NoProgress => (Halt::NoProgress, None),
            Stop::Lost(why) => (Halt::Lost, Some(why)),
        };
        TransportError::Interrupted(Box::new(Interrupted {
            host: self.link.host.to_string(),
            what: self.what.clone(),
            flow: self.flow,
            done: self.done,
            total: self.total,
            quiet: self.last_progress.elapsed(),
            took: self.started.elapsed(),
            attempts: 1,
            halt,
            error,
        }))
    }

    /// The error for a failed step: a refusal as a plain I/O error naming `doing`, a halt as
    /// [`Watch::interrupted`].
    pub fn failed(&self, doing: &str, f: Failed) -> TransportError {
        match f {
            Failed::Refused(e) => TransportError::Io(format!("{}: {doing}: {e}", self.link.host)),
            Failed::Halted(h) => self.interrupted(h),
        }
    }
}

/// libssh2's codes for a connection that failed underneath the session: the socket, the
/// transport's framing or encryption. Every other code is an answer from the host (a channel or
/// subsystem refused, an SFTP status) over a session that still works.
const LINK_FAILURES: [i32; 10] = [
    -1,  // SOCKET_NONE
    -4,  // INVALID_MAC
    -7,  // SOCKET_SEND
    -9,  // TIMEOUT
    -12, // DECRYPT
    -13, // SOCKET_DISCONNECT
    -14, // PROTO
    -30, // SOCKET_TIMEOUT
    -43, // SOCKET_RECV
    -45, // BAD_SOCKET
];

/// Whether a libssh2 error means the link failed (rather than the host saying no).
pub(super) fn classify(e: ssh2::Error) -> Failed {
    match e.code() {
        ErrorCode::Session(code) if LINK_FAILURES.contains(&code) => {
            Failed::Halted(Stop::Lost(e.message().to_string()))
        }
        _ => Failed::Refused(e),
    }
}

/// What a ProxyJump tunnel's pump handed to the session, in place of the kernel's counts (see
/// [`Link::counters`]). Only bytes from the far host count: what the jump host's session takes
/// of ours says nothing of the far host (it fills the jump host's socket buffer as readily when
/// the far host is gone), so a host too busy to answer is judged through a tunnel by its
/// answers alone.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    received: AtomicU64,
}

impl Traffic {
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn counters(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), 0)
    }
}

/// The kernel's counts of bytes received on the socket and of bytes of ours the peer
/// acknowledged (`TCP_INFO`); both only grow. `None` where the kernel cannot tell.
fn link_counters(socket: RawFd) -> Option<(u64, u64)> {
    tcp_info(socket)
        .filter(|(_, len)| *len >= std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8)
        .map(|(i, _)| (i.tcpi_bytes_received, i.tcpi_bytes_acked))
}

/// The kernel's smoothed round-trip time of the socket.
pub(super) fn smoothed_rtt(socket: RawFd) -> Option<Duration> {
    tcp_info(socket).map(|(i, _)| Duration::from_micros(u64::from(i.tcpi_rtt)))
}

fn tcp_info(socket: RawFd) -> Option<(libc::tcp_info, usize)> {
    // SAFETY: tcp_info is a C struct of integers, which TCP_INFO fills in.
    unsafe { sockopt(socket, libc::IPPROTO_TCP, libc::TCP_INFO) }
}

/// The pending error of a socket, e.g. "Connection timed out" when the host stopped answering.
fn socket_error(socket: RawFd) -> io::Error {
    // SAFETY: SO_ERROR fills in one int.
    match unsafe { sockopt::<libc::c_int>(socket, libc::SOL_SOCKET, libc::SO_ERROR) } {
        Some((err, _)) if err != 0 => io::Error::from_raw_os_error(err),
        _ => io::Error::other("socket error"),
    }
}

/// A socket option as the kernel fills it in, and how many bytes of it the kernel wrote.
///
/// # Safety
/// `T` must be the plain C type (integers only) the option `name` fills in, for which all
/// zeroes is a valid value.
unsafe fn sockopt<T>(socket: RawFd, level: libc::c_int, name: libc::c_int) -> Option<(T, usize)> {
    let mut value: T = std::mem::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value` and says how many in `len`.
    let rc = libc::getsockopt(socket, level, name, (&mut value as *mut T).cast(), &mut len);
    (rc == 0).then_some((value, len as usize))
}
