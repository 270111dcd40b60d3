//! Running one command on a channel: feeding stdin and draining stdout and stderr together.
//!
//! Reading one stream to its end while the other fills would deadlock: libssh2 queues the other
//! stream's data without granting the server more window, so the command blocks writing it and
//! never finishes the first. We therefore run the session non-blocking for the life of the
//! command and service all three streams each round, sleeping on the socket under a
//! [`Watch`](super::progress::Watch): the command may take as long as it takes while the host
//! keeps talking (output, or answers to keepalives), and fails once the link is silent for the
//! progress timeout.

use super::progress::{Link, Measure, NonBlocking, Stop, Watch};
use crate::interrupted::Flow;
use crate::{ExecOutput, StreamSink, TransportError, STREAM_POLL};
use ssh2::Channel;
use std::io::{self, Read, Write};
use std::time::Duration;

/// Longest we sleep on the socket without looking at the channel again.
const POLL: Duration = Duration::from_secs(1);

/// Runs `command`, feeding it `stdin`; `label` says what it is in messages.
pub(super) fn run(
    link: Link,
    label: &str,
    command: &str,
    stdin: Option<&[u8]>,
) -> Result<ExecOutput, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let input = stdin.unwrap_or(&[]);
    // A command fed data is a transfer to the host: its figures are the bytes of stdin.
    let mut watch = if input.is_empty() {
        link.watch(format!("running `{label}`"), Flow::Received, Measure::Host)
    } else {
        link.watch(format!("feeding `{label}`"), Flow::Sent, Measure::Host)
            .with_total(input.len() as u64)
    };
    let mut channel = start(&mut watch, link, command)?;
    let (stdout, stderr) =
        pump(&mut watch, &mut channel, input).map_err(|h| watch.interrupted(h))?;
    Ok(ExecOutput {
        status: exit_status(&mut watch, &mut channel)?,
        stdout,
        stderr,
    })
}

/// Runs `command` with its output handed to `sink` line by line; see
/// [`crate::Transport::stream`].
pub(super) fn stream(
    link: Link,
    label: &str,
    command: &str,
    sink: &mut dyn StreamSink,
) -> Result<i32, TransportError> {
    let _nb = NonBlocking::new(link.session);
    let mut watch = link.watch(format!("running `{label}`"), Flow::Received, Measure::Host);
    let mut channel = start(&mut watch, link, command)?;
    pump_lines(&mut watch, &mut channel, sink).map_err(|h| watch.interrupted(h))?;
    exit_status(&mut watch, &mut channel)
}

/// A new channel of the session running `command`.
fn start(watch: &mut Watch, link: Link, command: &str) -> Result<Channel, TransportError> {
    let mut channel = watch
        .call(|| link.session.channel_session())
        .map_err(|f| watch.failed("cannot open a channel", f))?;
    watch
        .call(|| channel.exec(command))
        .map_err(|f| watch.failed("cannot start the command", f))?;
    Ok(channel)
}

/// Closes a channel whose output is drained; its command's exit status, `-1` when a signal
/// killed it.
fn exit_status(watch: &mut Watch, channel: &mut Channel) -> Result<i32, TransportError> {
    // The exit status arrives before the close; waiting for the close makes sure we have it.
    let _ = watch.call(|| channel.close());
    watch
        .call(|| channel.wait_close())
        .map_err(|f| watch.failed("channel did not close", f))?;
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
        .map_err(|e| TransportError::Io(format!("no exit status: {e}")))
}

fn pump_lines(
    watch: &mut Watch,
    channel: &mut Channel,
    sink: &mut dyn StreamSink,
) -> Result<(), Stop> {
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut eof_sent = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut progressed = false;
        if !eof_sent && sink.close_stdin() {
            match channel.send_eof() {
                Ok(()) => eof_sent = true,
                Err(e) if e.code() == super::progress::EAGAIN => {}
                // The command is gone already; its end of output follows.
                Err(_) => eof_sent = true,
            }
        }
        for (id, pending) in partial.iter_mut().enumerate() {
            let before = pending.len();
            progressed |= drain(watch, channel, id as i32, &mut buf, pending, true)?;
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
            watch.wait(STREAM_POLL)?;
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

fn pump(watch: &mut Watch, channel: &mut Channel, mut input: &[u8]) -> Result<Streams, Stop> {
    let count_output = input.is_empty();
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
                    watch.moved(n);
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
                Err(e) if e.code() == super::progress::EAGAIN => {}
                Err(_) => eof_sent = true,
            }
        }
        progressed |= drain(watch, channel, 0, &mut buf, &mut stdout, count_output)?;
        progressed |= drain(watch, channel, 1, &mut buf, &mut stderr, count_output)?;
        // `eof()` is true only once the server sent EOF and no data of either stream is queued.
        if channel.eof() {
            return Ok((stdout, stderr));
        }
        if !progressed {
            watch.wait(POLL)?;
        }
    }
}

/// Reads what is available on stream `id` (0 stdout, 1 stderr); whether anything came. Output
/// is progress; `count` says whether its bytes are the operation's figures too.
fn drain(
    watch: &mut Watch,
    channel: &mut Channel,
    id: i32,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    count: bool,
) -> Result<bool, Stop> {
    let mut stream = channel.stream(id);
    let mut got = false;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if count {
                    watch.moved(n);
                } else {
                    watch.heard();
                }
                got = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) => {
                return Err(Stop::Lost(format!(
                    "connection lost during the command: {e}"
                )))
            }
        }
    }
}
