//! Running one command on a channel: feeding stdin and draining stdout and stderr together.
//!
//! Reading one stream to its end while the other fills would deadlock: libssh2 queues the other
//! stream's data without granting the server more window, so the command blocks writing it and
//! never finishes the first. We therefore run the session non-blocking for the life of the
//! command and service all three streams each round, sleeping in `poll(2)` on the socket.

use super::super::{ExecOutput, StreamSink, TransportError, STREAM_POLL};
use ssh2::{Channel, ErrorCode, Session};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::Duration;

/// libssh2's "would block" code (`LIBSSH2_ERROR_EAGAIN`).
const EAGAIN: ErrorCode = ErrorCode::Session(-37);

pub(super) fn run(
    session: &Session,
    socket: RawFd,
    keepalive: Duration,
    command: &str,
    stdin: Option<&[u8]>,
) -> Result<ExecOutput, TransportError> {
    let mut channel = start(session, command)?;
    session.set_blocking(false);
    let pumped = pump(
        session,
        &mut channel,
        socket,
        keepalive,
        stdin.unwrap_or(&[]),
    );
    session.set_blocking(true);
    let (stdout, stderr) = pumped?;
    Ok(ExecOutput {
        status: exit_status(&mut channel)?,
        stdout,
        stderr,
    })
}

fn lost(what: &str, e: &dyn std::fmt::Display) -> TransportError {
    TransportError::Io(format!("{what}: {e}"))
}

/// A new channel of the session running `command`.
fn start(session: &Session, command: &str) -> Result<Channel, TransportError> {
    let mut channel = session
        .channel_session()
        .map_err(|e| lost("cannot open a channel", &e))?;
    channel
        .exec(command)
        .map_err(|e| lost("cannot start the command", &e))?;
    Ok(channel)
}

/// Closes a channel whose output is drained; its command's exit status, `-1` when a signal
/// killed it.
fn exit_status(channel: &mut Channel) -> Result<i32, TransportError> {
    // The exit status arrives before the close; waiting for the close makes sure we have it.
    let _ = channel.close();
    channel
        .wait_close()
        .map_err(|e| lost("channel did not close", &e))?;
    if channel
        .exit_signal()
        .ok()
        .and_then(|s| s.exit_signal)
        .is_some()
    {
        return Ok(-1);
    }
    channel
        .exit_status()
        .map_err(|e| lost("no exit status", &e))
}

/// Runs `command` with its output handed to `sink` line by line; see [`super::super::Transport::stream`].
pub(super) fn stream(
    session: &Session,
    socket: RawFd,
    keepalive: Duration,
    command: &str,
    sink: &mut dyn StreamSink,
) -> Result<i32, TransportError> {
    let mut channel = start(session, command)?;
    session.set_blocking(false);
    let pumped = pump_lines(session, &mut channel, socket, keepalive, sink);
    session.set_blocking(true);
    pumped?;
    exit_status(&mut channel)
}

fn pump_lines(
    session: &Session,
    channel: &mut Channel,
    socket: RawFd,
    keepalive: Duration,
    sink: &mut dyn StreamSink,
) -> Result<(), TransportError> {
    let lost =
        |e: io::Error| TransportError::Io(format!("connection lost during the command: {e}"));
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut eof_sent = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut progressed = false;
        if !eof_sent && sink.close_stdin() {
            match channel.send_eof() {
                Ok(()) => eof_sent = true,
                Err(e) if e.code() == EAGAIN => {}
                // The command is gone already; its end of output follows.
                Err(_) => eof_sent = true,
            }
        }
        for (id, pending) in partial.iter_mut().enumerate() {
            let before = pending.len();
            progressed |= drain(channel, id as i32, &mut buf, pending).map_err(lost)?;
            if pending.len() > before {
                hand_over_lines(pending, id == 1, sink);
            }
        }
        if channel.eof() {
            for (id, rest) in partial.iter().enumerate() {
                if !rest.is_empty() {
                    sink.line(id == 1, &String::from_utf8_lossy(rest));
                }
            }
            return Ok(());
        }
        if !progressed {
            wait_socket(session, socket, STREAM_POLL.min(keepalive)).map_err(lost)?;
        }
    }
}

/// Hands every complete line in `pending` to the sink and keeps the unfinished rest.
fn hand_over_lines(pending: &mut Vec<u8>, stderr: bool, sink: &mut dyn StreamSink) {
    let Some(last_newline) = pending.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    for line in pending[..last_newline].split(|&b| b == b'\n') {
        sink.line(stderr, &String::from_utf8_lossy(line));
    }
    pending.drain(..=last_newline);
}

type Streams = (Vec<u8>, Vec<u8>);

fn pump(
    session: &Session,
    channel: &mut Channel,
    socket: RawFd,
    keepalive: Duration,
    mut input: &[u8],
) -> Result<Streams, TransportError> {
    let lost =
        |e: io::Error| TransportError::Io(format!("connection lost during the command: {e}"));
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut eof_sent = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut progressed = false;
        while !input.is_empty() {
            match channel.write(input) {
                Ok(0) => break,
                Ok(n) => {
                    input = &input[n..];
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The command closed its stdin (it exited, or never reads): the rest is moot.
                Err(_) => input = &[],
            }
        }
        if input.is_empty() && !eof_sent {
            match channel.send_eof() {
                Ok(()) => {
                    eof_sent = true;
                    progressed = true;
                }
                Err(e) if e.code() == EAGAIN => {}
                Err(_) => eof_sent = true,
            }
        }
        progressed |= drain(channel, 0, &mut buf, &mut stdout).map_err(lost)?;
        progressed |= drain(channel, 1, &mut buf, &mut stderr).map_err(lost)?;
        // `eof()` is true only once the server sent EOF and no data of either stream is queued.
        if channel.eof() {
            return Ok((stdout, stderr));
        }
        if !progressed {
            wait_socket(session, socket, keepalive).map_err(lost)?;
        }
    }
}

/// Reads what is available on stream `id` (0 stdout, 1 stderr); whether anything came.
fn drain(channel: &mut Channel, id: i32, buf: &mut [u8], out: &mut Vec<u8>) -> io::Result<bool> {
    let mut stream = channel.stream(id);
    let mut got = false;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                got = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps until the socket is ready the way libssh2 needs, sending a keepalive when the command
/// is quiet for a whole interval; the kernel's TCP timeouts turn a dead peer into an error.
/// (libssh2 sends one only when it is due, so shorter sleeps for streaming are fine).
fn wait_socket(session: &Session, socket: RawFd, timeout: Duration) -> io::Result<()> {
    let mut events = libc::POLLIN;
    if matches!(
        session.block_directions(),
        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
    ) {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd: socket,
        events,
        revents: 0,
    };
    let timeout = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(())
        } else {
            Err(e)
        };
    }
    if n == 0 {
        match session.keepalive_send() {
            Ok(_) => {}
            Err(e) if e.code() == EAGAIN => {}
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
    if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(socket_error(socket));
    }
    Ok(())
}

/// The pending error of a socket, e.g. "Connection timed out" when the host stopped answering.
fn socket_error(socket: RawFd) -> io::Error {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one int into `err`, whose size `len` states.
    let rc = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 && err != 0 {
        io::Error::from_raw_os_error(err)
    } else {
        io::Error::other("socket error")
    }
}
