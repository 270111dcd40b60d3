//! `idle`: nothing sent. A connection is verified by its handshake alone (connect reported
//! success), then held; the connect cost without a greeting and its echo. No state, no Fast
//! Open (nothing to put in the SYN), no message to time. Bytes a server sends unasked (a
//! banner, an HTTP 408 before it closes) are read and let go: the connection is what is held,
//! and its close is counted as any held connection's.

use super::{Event, Protocol};

/// Connect and hold.
#[derive(Debug, Clone, Copy)]
pub struct Idle;

impl Protocol for Idle {
    type State = ();

    const SILENT: bool = true;

    fn open(&self, _n: u32, _st: &mut (), _out: &mut Vec<u8>) {}

    fn input(
        &self,
        _n: u32,
        _st: &mut (),
        _bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        Ok(Event::Pending)
    }

    fn message(&self, _n: u32, _st: &mut (), _out: &mut Vec<u8>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::drive::{every_split, feed};
    use super::*;

    #[test]
    fn idle_sends_nothing_keeps_no_state_and_never_completes_or_fails() {
        let mut out = Vec::new();
        Idle.open(7, &mut (), &mut out);
        assert!(out.is_empty(), "the opening request is empty");
        const { assert!(Idle::SILENT) };
        assert_eq!(std::mem::size_of::<<Idle as Protocol>::State>(), 0);
        // Whatever a server sends (a banner, a 408) is let go: no exchange, no failure.
        let seen = every_split(&Idle, 7, b"HTTP/1.1 408 Request Time-out\r\n\r\n");
        assert_eq!((seen.completes, seen.failure), (0, None));
        assert!(seen.written.is_empty());
        let (mut st, _) = feed(&Idle, 7, b"", 1);
        assert!(!Idle.message(7, &mut st, &mut out), "no message to time");
        assert!(out.is_empty());
    }
}
