//! `memcached`: the text protocol's `version` answered by `VERSION <printable>\r\n`, on open and
//! on every message. One byte of state ([`Reply`]): where in the reply line the connection is.

use super::{reply_bytes, request_again, Event, Protocol, Reply};

const VERSION: &[u8] = b"version\r\n";
const PREFIX: &[u8] = b"VERSION ";
/// Longest version string accepted (memcached sends `1.6.18`).
const MAX_VERSION: usize = 64;

/// memcached (and text-protocol servers such as Twemproxy or mcrouter).
#[derive(Debug, Clone, Copy)]
pub struct Memcached;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// `ERROR`, `CLIENT_ERROR …` or `SERVER_ERROR …` instead of the version.
    Error,
    /// A version line longer than 64 bytes.
    TooLong,
    /// Anything else: not a version line, or bytes nobody asked for.
    Unexpected,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Error => "memcached_error",
            Failure::TooLong => "memcached_too_long",
            Failure::Unexpected => "memcached_unexpected",
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::Memcached(f)
    }
}

impl Protocol for Memcached {
    type State = Reply;

    fn open(&self, _n: u32, st: &mut Reply, out: &mut Vec<u8>) {
        st.start();
        out.extend_from_slice(VERSION);
    }

    fn input(
        &self,
        _n: u32,
        st: &mut Reply,
        bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        reply_bytes(st, bytes, Failure::Unexpected, |at, b| match b {
            _ if at < PREFIX.len() && b == PREFIX[at] => Ok(false),
            // `ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`.
            b'E' | b'C' | b'S' if at == 0 => Err(Failure::Error),
            _ if at < PREFIX.len() => Err(Failure::Unexpected),
            // At least one character of version, then CR LF.
            b'\n' if at < PREFIX.len() + 2 => Err(Failure::Unexpected),
            b'\n' => Ok(true),
            _ if at == PREFIX.len() + MAX_VERSION + 1 => Err(Failure::TooLong),
            _ if b.is_ascii_graphic() || b == b' ' || b == b'\r' => Ok(false),
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
    fn version_line_in_any_split_then_again() {
        let reply = b"VERSION 1.6.18\r\n";
        let s = every_split(&Memcached, 1, reply);
        assert_eq!((s.completes, s.failure), (1, None));
        let (mut st, _) = feed(&Memcached, 1, reply, 3);
        let mut out = Vec::new();
        assert!(Memcached.message(1, &mut st, &mut out));
        assert_eq!(out, VERSION);
        assert_eq!(more(&Memcached, 1, &mut st, reply, 1).completes, 1);
    }

    #[test]
    fn errors_garbage_and_oversized_lines_by_kind() {
        let kind = |reply: &[u8]| every_split(&Memcached, 1, reply).failure;
        assert_eq!(kind(b"ERROR\r\n"), Some(F::Memcached(Failure::Error)));
        assert_eq!(
            kind(b"SERVER_ERROR out of memory\r\n"),
            Some(F::Memcached(Failure::Error))
        );
        assert_eq!(
            kind(b"VERSION \r\n"),
            Some(F::Memcached(Failure::Unexpected))
        );
        assert_eq!(
            kind(b"VERSION 1\x00\r\n"),
            Some(F::Memcached(Failure::Unexpected))
        );
        assert_eq!(
            kind(b"\x16\x03\x01"),
            Some(F::Memcached(Failure::Unexpected))
        );
        let mut long = b"VERSION ".to_vec();
        long.extend(std::iter::repeat_n(b'9', 10_000));
        assert_eq!(kind(&long), Some(F::Memcached(Failure::TooLong)));
        assert_eq!(
            kind(b"VERSION 1.6\r\nVERSION 1.6\r\n"),
            Some(F::Memcached(Failure::Unexpected))
        );
    }
}
