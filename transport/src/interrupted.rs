//! What an operation that was given up had done: the figures a person needs to tell a slow link
//! from a stopped one (bytes moved of how many, time without progress, attempts).

use std::fmt;
use std::time::Duration;

/// Which way an operation's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// To the host (an upload, a command's stdin): counted when the host confirms them.
    Sent,
    /// From the host (a download, a command's output).
    Received,
}

/// Why an operation was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Nothing moved for the progress timeout (an upload: for twice that, over reconnects).
    NoProgress,
    /// The connection failed under it (the socket's error, the host's SSH server gone).
    Lost,
}

/// An operation given up partway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub host: String,
    /// What was being done, e.g. `uploading /var/lib/c1m/bin/c1m-server`.
    pub what: String,
    pub flow: Flow,
    /// Bytes that went (confirmed by the host) or came.
    pub done: u64,
    /// Bytes the operation had to move, when known.
    pub total: Option<u64>,
    /// How long it went without progress before it was given up.
    pub quiet: Duration,
    /// From the start of the operation (over all attempts) to giving up.
    pub took: Duration,
    /// Attempts made: a failed upload is resumed over a new connection.
    pub attempts: u32,
    pub halt: Halt,
    /// What the connection said last, when it said anything: the socket's error, a reconnect
    /// that did not get through.
    pub error: Option<String>,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.host, self.what)?;
        let quiet = self.quiet.as_secs_f64();
        match self.halt {
            Halt::NoProgress => write!(f, "no progress for {quiet:.1} s")?,
            Halt::Lost => write!(f, "connection lost after {quiet:.1} s without progress")?,
        }
        let verb = match self.flow {
            Flow::Sent => "sent",
            Flow::Received => "received",
        };
        match self.total {
            Some(total) => write!(f, "; {} of {total} bytes {verb}", self.done)?,
            None => write!(f, "; {} bytes {verb}", self.done)?,
        }
        write!(f, " in {:.1} s", self.took.as_secs_f64())?;
        if self.attempts > 1 {
            write!(f, " over {} attempts", self.attempts)?;
        }
        if let Some(error) = &self.error {
            write!(f, " (last error: {error})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_how_far_and_how_long() {
        let mut i = Interrupted {
            host: "cli2".into(),
            what: "uploading /var/lib/c1m/bin/c1m-server".into(),
            flow: Flow::Sent,
            done: 2_621_440,
            total: Some(6_728_376),
            quiet: Duration::from_millis(30_040),
            took: Duration::from_millis(52_310),
            attempts: 3,
            halt: Halt::NoProgress,
            error: None,
        };
        assert_eq!(
            i.to_string(),
            "cli2: uploading /var/lib/c1m/bin/c1m-server: no progress for 30.0 s; \
             2621440 of 6728376 bytes sent in 52.3 s over 3 attempts"
        );
        i.flow = Flow::Received;
        i.total = None;
        i.attempts = 1;
        i.halt = Halt::Lost;
        i.error = Some("Connection timed out".into());
        assert_eq!(
            i.to_string(),
            "cli2: uploading /var/lib/c1m/bin/c1m-server: connection lost after 30.0 s without \
             progress; 2621440 bytes received in 52.3 s (last error: Connection timed out)"
        );
    }
}
