//! The signals that end a run early — SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, service
//! managers) and SIGHUP (the terminal closed) — as one future the engine waits on. Each starts
//! the same teardown; SIGKILL cannot be caught, and the binaries stop themselves when their
//! stdin (a pipe or an SSH channel from this process) reaches its end.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The run's stop signals, listened to from [`StopSignals::listen`] on.
pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Replaces the default action (death) of the three signals with a notice to the engine.
    pub fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next stop signal, when it comes.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Points stdout and stderr at /dev/null. After SIGHUP the terminal is gone: a write to it
/// fails, and Rust's `println!` panics on a failed write, which would cut teardown short.
pub fn detach_output() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto the standard descriptors; `null` stays open until both are done.
    unsafe {
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(null.as_raw_fd(), 2);
    }
}
