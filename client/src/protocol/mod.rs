//! The protocols `c1m-client` speaks (`--protocol`): one module each, every one a small
//! per-connection state machine behind [`Protocol`].
//!
//! The machines do no I/O. The worker owns the sockets and a table of [`Protocol::State`]s
//! indexed by fd; it hands each machine the bytes a read returned — any split, one byte at a time
//! included — and writes whatever the machine put in `out`. A machine keeps no buffer of its own:
//! what it must compare (an echo, a `Sec-WebSocket-Accept`, an MQTT topic) it regenerates from the
//! connection number `n`, and what it must skip (a body, a payload) it counts down. Every
//! response is bounded; what breaks the protocol is a [`Failure`] of a named kind, never a panic.
//!
//! [`AnyProtocol`] is the closed set, chosen once per client from [`ProtocolArgs`];
//! [`AnyProtocol::visit`] hands the concrete machine to generic code, so the worker's hot path is
//! compiled once per protocol with no dispatch per event.

pub mod echo;
mod head;
pub mod http;
pub mod idle;
pub mod memcached;
pub mod mqtt;
pub mod redis;
pub mod websocket;

use c1m_proto::protocol::{ProtocolArgs, ProtocolKind};
use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::time::Duration;

/// What a machine made of the bytes it was given (all of them are always consumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The outstanding exchange is not complete yet.
    Pending,
    /// The outstanding exchange completed: the opening one verifies the connection, a later one
    /// is a round trip of `--message-interval`.
    Complete,
}

/// One protocol's per-connection state machine. `n` is the connection's number (unique per
/// client run, from `--index-base`); the machine derives from it whatever differs per connection.
pub trait Protocol {
    /// What the worker keeps per connection: a few bytes, `Copy`, no heap.
    type State: Copy + Default + Send;

    /// The protocol sends nothing (`idle`): a connection is verified when its handshake
    /// completes, connected the ordinary way (no Fast Open: nothing rides in the SYN). A
    /// constant, so the loops of the other protocols compile without the question.
    const SILENT: bool = false;

    /// The opening request, written once the connection is established.
    fn open(&self, n: u32, st: &mut Self::State, out: &mut Vec<u8>);

    /// Consumes bytes the server sent. Bytes to answer with right away (a WebSocket pong, the
    /// first message after a handshake) go into `out`.
    fn input(
        &self,
        n: u32,
        st: &mut Self::State,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Event, Failure>;

    /// Puts a timed message into `out` on a verified, idle connection; false when the
    /// connection cannot send one now (its state stays as it was).
    fn message(&self, n: u32, st: &mut Self::State, out: &mut Vec<u8>) -> bool;

    /// How often [`Protocol::keepalive`] must run on every held connection, if ever.
    fn keepalive_every(&self) -> Option<Duration> {
        None
    }

    /// Keeps a held connection alive (an MQTT PINGREQ); fails when the last one went unanswered.
    fn keepalive(&self, _n: u32, _st: &mut Self::State, _out: &mut Vec<u8>) -> Result<(), Failure> {
        Ok(())
    }
}

/// Why a connection was given up, by protocol and kind; [`Failure::name`] is the key it is
/// counted under in the stats line's `errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    Echo(echo::Failure),
    Http(http::Failure),
    WebSocket(websocket::Failure),
    Mqtt(mqtt::Failure),
    Redis(redis::Failure),
    Memcached(memcached::Failure),
}

impl Failure {
    /// The counter name: `echo_mismatch`, `http_404`, `ws_bad_accept`,
    /// `mqtt_refused_not_authorized`…
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Failure::Echo(f) => f.name().into(),
            Failure::Http(f) => f.name(),
            Failure::WebSocket(f) => f.name(),
            Failure::Mqtt(f) => f.name(),
            Failure::Redis(f) => f.name().into(),
            Failure::Memcached(f) => f.name().into(),
        }
    }
}

/// The protocol of a client run, ready to speak.
#[derive(Debug, Clone)]
pub enum AnyProtocol {
    Echo(echo::Echo),
    Http(http::Http),
    WebSocket(websocket::WebSocket),
    Mqtt(mqtt::Mqtt),
    Redis(redis::Redis),
    Memcached(memcached::Memcached),
    Idle(idle::Idle),
}

/// Generic code run with the concrete machine (see [`AnyProtocol::visit`]).
pub trait Visit {
    type Output;
    fn visit<P: Protocol + Send + 'static>(self, p: P) -> Self::Output;
}

impl AnyProtocol {
    /// Builds the machine `args` ask for; `target` is the default Host header.
    pub fn new(args: &ProtocolArgs, target: Ipv4Addr) -> Result<AnyProtocol, String> {
        args.check()?;
        Ok(match args.protocol {
            ProtocolKind::Echo => AnyProtocol::Echo(echo::Echo),
            ProtocolKind::Http => AnyProtocol::Http(http::Http::new(args, target)),
            ProtocolKind::Websocket => {
                AnyProtocol::WebSocket(websocket::WebSocket::new(args, target))
            }
            ProtocolKind::Mqtt => AnyProtocol::Mqtt(mqtt::Mqtt::new(args)),
            ProtocolKind::Redis => AnyProtocol::Redis(redis::Redis),
            ProtocolKind::Memcached => AnyProtocol::Memcached(memcached::Memcached),
            ProtocolKind::Idle => AnyProtocol::Idle(idle::Idle),
        })
    }

    /// Runs `v` with the concrete machine: the one dispatch, made once.
    pub fn visit<V: Visit>(self, v: V) -> V::Output {
        match self {
            AnyProtocol::Echo(p) => v.visit(p),
            AnyProtocol::Http(p) => v.visit(p),
            AnyProtocol::WebSocket(p) => v.visit(p),
            AnyProtocol::Mqtt(p) => v.visit(p),
            AnyProtocol::Redis(p) => v.visit(p),
            AnyProtocol::Memcached(p) => v.visit(p),
            AnyProtocol::Idle(p) => v.visit(p),
        }
    }

    /// Bytes of protocol state per connection.
    pub fn state_bytes(&self) -> usize {
        struct Size;
        impl Visit for Size {
            type Output = usize;
            fn visit<P: Protocol + Send + 'static>(self, _: P) -> usize {
                std::mem::size_of::<P::State>()
            }
        }
        self.clone().visit(Size)
    }
}

/// The state of the request/reply protocols (echo, redis, memcached): how many bytes of the
/// awaited reply have come, or none awaited. One byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply(u8);

impl Reply {
    const IDLE: u8 = u8::MAX;

    /// Bytes of the awaited reply so far; `None` when no reply is awaited.
    fn awaited(self) -> Option<usize> {
        (self.0 != Reply::IDLE).then_some(self.0 as usize)
    }

    fn start(&mut self) {
        self.0 = 0;
    }
}

impl Default for Reply {
    fn default() -> Self {
        Reply(Reply::IDLE)
    }
}

/// Runs a reply through `step` byte by byte: `step(offset, byte)` says whether the byte ends the
/// reply, or why it cannot come there. Bytes when no reply is awaited are `unexpected`.
fn reply_bytes<F: Into<Failure>>(
    st: &mut Reply,
    bytes: &[u8],
    unexpected: F,
    mut step: impl FnMut(usize, u8) -> Result<bool, F>,
) -> Result<Event, Failure> {
    let mut done = false;
    for &b in bytes {
        let Some(at) = st.awaited().filter(|_| !done) else {
            return Err(unexpected.into());
        };
        if step(at, b).map_err(Into::into)? {
            *st = Reply::default();
            done = true;
        } else {
            st.0 += 1;
        }
    }
    Ok(if done {
        Event::Complete
    } else {
        Event::Pending
    })
}

/// A request/reply protocol's message: its opening request again, once the last reply is in.
fn request_again<P: Protocol<State = Reply>>(
    p: &P,
    n: u32,
    st: &mut Reply,
    out: &mut Vec<u8>,
) -> bool {
    if st.awaited().is_some() {
        return false;
    }
    p.open(n, st, out);
    true
}

/// splitmix64: a per-connection number turned into well-spread bits (WebSocket keys and masks).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Decimal digits of `n` into `out`.
fn push_decimal(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(c1m_proto::greeting::decimal(u64::from(n), &mut [0; 20]));
}

#[cfg(test)]
pub(crate) mod drive {
    //! Feeds a machine a server's bytes in every split the tests ask for.

    use super::*;

    /// What a conversation produced.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Seen {
        /// Completed exchanges.
        pub completes: usize,
        /// Everything the client wrote after `open` (pongs, first messages…).
        pub written: Vec<u8>,
        pub failure: Option<Failure>,
    }

    /// Opens connection `n`, then feeds `server` in chunks of `chunk` bytes.
    pub fn feed<P: Protocol>(p: &P, n: u32, server: &[u8], chunk: usize) -> (P::State, Seen) {
        let mut st = P::State::default();
        let mut out = Vec::new();
        p.open(n, &mut st, &mut out);
        let seen = more(p, n, &mut st, server, chunk);
        (st, seen)
    }

    /// Feeds more bytes to an open connection.
    pub fn more<P: Protocol>(
        p: &P,
        n: u32,
        st: &mut P::State,
        server: &[u8],
        chunk: usize,
    ) -> Seen {
        let mut seen = Seen {
            completes: 0,
            written: Vec::new(),
            failure: None,
        };
        for piece in server.chunks(chunk.max(1)) {
            let mut out = Vec::new();
            let r = p.input(n, st, piece, &mut out);
            seen.written.extend_from_slice(&out);
            match r {
                Ok(Event::Complete) => seen.completes += 1,
                Ok(Event::Pending) => {}
                Err(f) => {
                    seen.failure = Some(f);
                    break;
                }
            }
        }
        seen
    }

    /// The same conversation whole and in small reads must end the same way: the same
    /// failure, or (without one) the same completions and the same bytes written. (A failure
    /// may cut short a completion that small reads report first.)
    pub fn every_split<P: Protocol>(p: &P, n: u32, server: &[u8]) -> Seen {
        let (_, whole) = feed(p, n, server, server.len());
        for chunk in [1, 2, 3, 7] {
            let (_, split) = feed(p, n, server, chunk);
            if whole.failure.is_some() {
                assert_eq!(
                    split.failure, whole.failure,
                    "split into {chunk}-byte reads"
                );
            } else {
                assert_eq!(split, whole, "split into {chunk}-byte reads");
            }
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_mix() {
        let mut v = Vec::new();
        push_decimal(&mut v, 0);
        push_decimal(&mut v, 4_294_967_295);
        assert_eq!(v, b"04294967295");
        assert_ne!(mix(1), mix(2));
    }

    #[test]
    fn every_protocol_builds_with_defaults_and_state_stays_small() {
        for kind in <ProtocolKind as clap::ValueEnum>::value_variants() {
            let args = ProtocolArgs {
                protocol: *kind,
                ..Default::default()
            };
            let p = AnyProtocol::new(&args, Ipv4Addr::LOCALHOST).expect("defaults are valid");
            assert!(p.state_bytes() <= 16, "{kind:?}: {} bytes", p.state_bytes());
        }
        let echo = AnyProtocol::new(&ProtocolArgs::default(), Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(
            echo.state_bytes(),
            1,
            "echo keeps one byte: the echo offset"
        );
    }
}
