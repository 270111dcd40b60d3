//! `echo`, the default and the benchmark path: the seed's 32-byte greeting (`c1m_proto::greeting`)
//! sent, its echo compared byte for byte. One byte of state ([`Reply`]): how much of the echo has
//! come back.

use super::{request_again, Event, Protocol, Reply};
use c1m_proto::greeting;

/// The echo protocol of `c1m-server`.
#[derive(Debug, Clone, Copy)]
pub struct Echo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The echo differs from the greeting (or is longer).
    Mismatch,
    /// Bytes on a connection that awaited none.
    Unexpected,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Mismatch => "echo_mismatch",
            Failure::Unexpected => "unexpected_data",
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::Echo(f)
    }
}

impl Protocol for Echo {
    type State = Reply;

    fn open(&self, n: u32, st: &mut Reply, out: &mut Vec<u8>) {
        st.start();
        out.extend_from_slice(&greeting::greeting(u64::from(n)));
    }

    #[inline]
    fn input(
        &self,
        n: u32,
        st: &mut Reply,
        bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        // The hot path of the benchmark: compare the whole read at once, not byte by byte.
        let Some(got) = st.awaited() else {
            return Err(Failure::Unexpected.into());
        };
        let end = got + bytes.len();
        let want = greeting::greeting(u64::from(n));
        if end > greeting::LEN || bytes != &want[got..end] {
            return Err(Failure::Mismatch.into());
        }
        if end < greeting::LEN {
            st.0 = end as u8;
            return Ok(Event::Pending);
        }
        *st = Reply::default();
        Ok(Event::Complete)
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
    fn echo_verifies_in_any_split_then_round_trips() {
        let g = greeting::greeting(7);
        let seen = every_split(&Echo, 7, &g);
        assert_eq!((seen.completes, seen.failure), (1, None));
        let (mut st, _) = feed(&Echo, 7, &g, 5);
        let mut out = Vec::new();
        assert!(Echo.message(7, &mut st, &mut out));
        assert_eq!(out, g);
        assert!(!Echo.message(7, &mut st, &mut out), "one message at a time");
        assert_eq!(more(&Echo, 7, &mut st, &g, 1).completes, 1);
    }

    #[test]
    fn wrong_long_or_unasked_bytes_fail_by_kind() {
        let mut g = greeting::greeting(7).to_vec();
        let other = greeting::greeting(8);
        assert_eq!(
            every_split(&Echo, 7, &other).failure,
            Some(F::Echo(Failure::Mismatch))
        );
        g.push(0);
        assert_eq!(
            feed(&Echo, 7, &g, 64).1.failure,
            Some(F::Echo(Failure::Mismatch))
        );
        g.pop();
        g.push(b'x');
        // Whole, the extra byte is too long for the echo; later, it is data nobody asked for.
        let (mut st, seen) = feed(&Echo, 7, &g[..32], 32);
        assert_eq!(seen.completes, 1);
        assert_eq!(
            more(&Echo, 7, &mut st, b"x", 1).failure,
            Some(F::Echo(Failure::Unexpected))
        );
    }
}
