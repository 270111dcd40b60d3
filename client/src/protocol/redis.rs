//! `redis`: RESP `PING` answered by `+PONG`, on open and on every message. One byte of state: how
//! much of the `+PONG\r\n` has come back.

use super::{reply_bytes, request_again, Event, Protocol, Reply};

/// PING as a RESP array, the form every Redis (and every RESP server) accepts.
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

/// Redis and RESP servers (Valkey, KeyDB, Dragonfly…).
#[derive(Debug, Clone, Copy)]
pub struct Redis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// A RESP error (`-NOAUTH …`, `-DENIED …`, `-LOADING …`) instead of the PONG.
    Error,
    /// Anything else: not `+PONG\r\n`, or bytes nobody asked for.
    Unexpected,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Error => "redis_error",
            Failure::Unexpected => "redis_unexpected",
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::Redis(f)
    }
}

impl Protocol for Redis {
    type State = Reply;

    fn open(&self, _n: u32, st: &mut Reply, out: &mut Vec<u8>) {
        st.start();
        out.extend_from_slice(PING);
    }

    fn input(
        &self,
        _n: u32,
        st: &mut Reply,
        bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        reply_bytes(st, bytes, Failure::Unexpected, |at, b| match b {
            _ if b == PONG[at] => Ok(at + 1 == PONG.len()),
            b'-' if at == 0 => Err(Failure::Error),
            _ => Err(Failure::Unexpected),
        })
    }

    fn message(&self, n: u32, st: &mut Reply, out: &mut Vec<u8>) -> bool {
        request_again(self, n, st, out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::drive::{every_split, feed, more};
    use super::super::Failure as F;
    use super::*;

    #[test]
    fn pong_in_any_split_then_again() {
        let s = every_split(&Redis, 1, PONG);
        assert_eq!((s.completes, s.failure), (1, None));
        let (mut st, _) = feed(&Redis, 1, PONG, 1);
        let mut out = Vec::new();
        assert!(Redis.message(1, &mut st, &mut out));
        assert_eq!(out, PING);
        assert_eq!(more(&Redis, 1, &mut st, PONG, 2).completes, 1);
    }

    #[test]
    fn errors_garbage_and_extra_bytes_by_kind() {
        let err = b"-NOAUTH Authentication required.\r\n";
        assert_eq!(
            every_split(&Redis, 1, err).failure,
            Some(F::Redis(Failure::Error))
        );
        assert_eq!(
            every_split(&Redis, 1, b"+PANG\r\n").failure,
            Some(F::Redis(Failure::Unexpected))
        );
        assert_eq!(
            every_split(&Redis, 1, b"HTTP/1.1 400").failure,
            Some(F::Redis(Failure::Unexpected))
        );
        assert_eq!(
            every_split(&Redis, 1, b"+PONG\r\n+PONG\r\n").failure,
            Some(F::Redis(Failure::Unexpected))
        );
    }
}
