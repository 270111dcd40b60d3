//! `ProxyJump`: reaching a host through another host's SSH session. The jump host's session
//! opens a `direct-tcpip` channel to the target's address and port; libssh2 needs a socket for
//! the target's own session, so that session gets one end of a socketpair and a thread pumps
//! bytes between the other end and the channel. The target's host key is checked as for a
//! direct connection; the jump host's was checked when its session opened.
//!
//! The thread owns the jump host's session. It ends, closing the channel and that session,
//! when the target's session closes its end, when the channel or the jump host's connection
//! ends (the target's session then sees its socket close), or when [`Tunnel`] is dropped.

use super::progress::Traffic;
use super::{SshConfig, SshTransport};
use crate::TransportError;
use ssh2::Channel;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The pump of one tunnel; dropping it stops the pump and closes the jump host's session.
pub(super) struct Tunnel {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    traffic: Arc<Traffic>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The pump wakes at least every POLL_MS to see the flag.
            let _ = t.join();
        }
    }
}

impl Tunnel {
    /// What the pump carried so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }
}

/// How long the pump sleeps in poll(2) at most before it looks at its stop flag and keepalives.
const POLL_MS: i32 = 200;
/// Bytes buffered per direction.
const BUF: usize = 64 * 1024;

/// Opens a channel from `via` to `target`'s address and port; the target's session is to use
/// the returned socket.
pub(super) fn open(
    via: SshTransport,
    target: &SshConfig,
    via_name: &str,
) -> Result<(UnixStream, Tunnel), TransportError> {
    let host_port = format!("{}:{}", target.address, target.port);
    // A target the jump host cannot reach must fail like a direct connect would, not wait for
    // the jump host's own TCP timeout.
    via.session
        .set_timeout(u32::try_from(target.connect_timeout.as_millis()).unwrap_or(u32::MAX));
    let channel = via
        .session
        .channel_direct_tcpip(&target.address, target.port, None)
        .map_err(|e| {
            TransportError::Unreachable(format!(
                "{} ({host_port}): jump host {via_name} cannot open a connection to it: {e}",
                target.name
            ))
        })?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| {
        TransportError::Io(format!("{}: cannot make a socket pair: {e}", target.name))
    })?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| TransportError::Io(format!("{}: socket pair: {e}", target.name)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Traffic::default());
    let (flag, counts) = (stop.clone(), traffic.clone());
    let thread = std::thread::Builder::new()
        .name(format!("c1m-jump-{}", target.name))
        .spawn(move || pump(via, channel, theirs, &flag, &counts))
        .map_err(|e| {
            TransportError::Io(format!("{}: cannot start the tunnel: {e}", target.name))
        })?;
    Ok((
        ours,
        Tunnel {
            stop,
            thread: Some(thread),
            traffic,
        },
    ))
}

/// One direction's bytes not yet written.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The source has ended: once `buf` is written, the end is passed on.
    ended: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn pump(
    via: SshTransport,
    mut channel: Channel,
    mut local: UnixStream,
    stop: &AtomicBool,
    traffic: &Traffic,
) {
    via.session.set_blocking(false);
    let mut up = Pending::default(); // target's session → channel
    let mut down = Pending::default(); // channel → target's session
    let mut chunk = vec![0u8; 16 * 1024];
    let mut next_keepalive = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut progressed = false;
        // From the target's session.
        if !up.ended && up.buf.len() < BUF {
            match local.read(&mut chunk) {
                Ok(0) => up.ended = true,
                Ok(n) => {
                    up.buf.extend_from_slice(&chunk[..n]);
                    progressed = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => up.ended = true,
            }
        }
        if !up.buf.is_empty() {
            match channel.write(&up.buf) {
                Ok(n) => {
                    up.buf.drain(..n);
                    progressed |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if up.ended && up.buf.is_empty() {
            // The target's session is gone: nothing more to carry.
            break;
        }
        // From the channel.
        if !down.ended && down.buf.len() < BUF {
            match channel.read(&mut chunk) {
                Ok(0) if channel.eof() => down.ended = true,
                Ok(0) => {}
                Ok(n) => {
                    down.buf.extend_from_slice(&chunk[..n]);
                    progressed = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => down.ended = true,
            }
        }
        if !down.buf.is_empty() {
            match local.write(&down.buf) {
                Ok(n) => {
                    down.buf.drain(..n);
                    traffic.received(n);
                    progressed |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if down.ended && down.buf.is_empty() {
            // The far end closed: the target's session sees its socket end.
            break;
        }
        if Instant::now() >= next_keepalive {
            match via.session.keepalive_send() {
                Ok(secs) => {
                    next_keepalive = Instant::now() + Duration::from_secs(u64::from(secs.max(1)))
                }
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                Err(_) => break,
            }
        }
        if !progressed {
            wait(&via, &local, &up, &down);
        }
    }
    let _ = local.shutdown(std::net::Shutdown::Both);
    via.session.set_blocking(true);
    via.session.set_timeout(2000);
    let _ = channel.close();
    drop(channel);
    drop(via);
}

/// Sleeps until the jump host's socket or the local end can move bytes (or POLL_MS passes).
fn wait(via: &SshTransport, local: &UnixStream, up: &Pending, down: &Pending) {
    let mut ssh_events = libc::POLLIN;
    if !up.buf.is_empty()
        || matches!(
            via.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        )
    {
        ssh_events |= libc::POLLOUT;
    }
    let mut local_events = 0;
    if !up.ended && up.buf.len() < BUF {
        local_events |= libc::POLLIN;
    }
    if !down.buf.is_empty() {
        local_events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd {
            fd: via.socket,
            events: ssh_events,
            revents: 0,
        },
        libc::pollfd {
            fd: local.as_raw_fd(),
            events: local_events,
            revents: 0,
        },
    ];
    // SAFETY: two pollfd structs we own, for fds that live as long as this call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS);
    }
}

/// An error reaching the jump host, said as the target's: the person reads it for the host
/// they asked for.
pub(super) fn via_error(target: &SshConfig, via: &SshConfig, e: TransportError) -> TransportError {
    let prefix = format!(
        "{} ({}:{}): through {} ({}:{})",
        target.name, target.address, target.port, via.name, via.address, via.port
    );
    match e {
        TransportError::Unreachable(m) => TransportError::Unreachable(format!("{prefix}: {m}")),
        TransportError::Auth(m) => TransportError::Auth(format!("{prefix}: {m}")),
        TransportError::UnknownHostKey(m) => {
            TransportError::UnknownHostKey(format!("{prefix}: {m}"))
        }
        TransportError::ChangedHostKey(m) => {
            TransportError::ChangedHostKey(format!("{prefix}: {m}"))
        }
        TransportError::Become(m) => TransportError::Become(format!("{prefix}: {m}")),
        TransportError::Io(m) => TransportError::Io(format!("{prefix}: {m}")),
        // It names the jump host and keeps its figures for whoever retries.
        TransportError::Interrupted(i) => TransportError::Interrupted(i),
    }
}
