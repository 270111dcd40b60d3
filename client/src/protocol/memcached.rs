//! `memcached`: the text protocol's `version` answered by `VERSION <printable>\r\n`, on open and
//! on every message. One byte of state: where in the reply line the connection is.

use super::{Event, Protocol};

const VERSION: &[u8] = b"version\r\n";
const PREFIX: &[u8] = b"VERSION ";
/// Longest version string accepted (memcached sends `1.6.18`).
const MAX_VERSION: usize = 64;

/// memcached (and text-protocol servers such as Twemproxy or mcrouter).
#[derive(Debug, Clone, Copy)]
pub struct Memcached;

/// Bytes of the reply line received so far, or [`IDLE`] when no reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State(u8);

const IDLE: u8 = u8::MAX;

impl Default for State {
    fn default() -> Self {
        State(IDLE)
    }
}

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
    type State = State;

    fn open(&self, _n: u32, st: &mut State, out: &mut Vec<u8>) {
        st.0 = 0;
        out.extend_from_slice(VERSION);
    }

    fn input(
        &self,
        _n: u32,
        st: &mut State,
        bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        let mut done = false;
        for &b in bytes {
            let at = st.0 as usize;
            if st.0 == IDLE || done {
                return Err(Failure::Unexpected.into());
            }
            let ok = match at {
                _ if at < PREFIX.len() => b == PREFIX[at],
                _ if b == b'\n' => {
                    // At least one character of version, then CR LF.
                    if at < PREFIX.len() + 2 {
                        return Err(Failure::Unexpected.into());
                    }
                    st.0 = IDLE;
                    done = true;
                    continue;
                }
                _ if at == PREFIX.len() + MAX_VERSION + 1 => return Err(Failure::TooLong.into()),
                _ => b.is_ascii_graphic() || b == b' ' || b == b'\r',
            };
            if !ok {
                let error = at == 0 && matches!(b, b'E' | b'C' | b'S');
                let f = if error {
                    Failure::Error
                } else {
                    Failure::Unexpected
                };
                return Err(f.into());
            }
            st.0 += 1;
        }
        Ok(if done {
            Event::Complete
        } else {
            Event::Pending
        })
    }

    fn message(&self, n: u32, st: &mut State, out: &mut Vec<u8>) -> bool {
        if st.0 != IDLE {
            return false;
        }
        self.open(n, st, out);
        true
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
