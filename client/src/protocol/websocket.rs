//! `websocket`: RFC 6455. The opening handshake — a GET with `Upgrade: websocket` and a
//! `Sec-WebSocket-Key` derived from the connection number — is verified by a 101 whose
//! `Sec-WebSocket-Accept` is base64(SHA-1(key + GUID)), recomputed from that number instead of
//! stored. Then frames: the client's are masked; with `--expect echo` the greeting goes out as a
//! binary message and the echo must come back byte for byte (that verifies the connection, and
//! is the round trip of `--message-interval`); pings are answered with pongs, streamed as the
//! ping's payload arrives so nothing is buffered; a close frame ends the connection.
//!
//! SHA-1 comes from RustCrypto's `sha1` (the `sha2` family the workspace already builds, same
//! `digest` core) and base64 from the `base64` crate the client already uses for histograms:
//! both well kept, neither worth re-deriving here.

use super::head::{self, Head, HeadError};
use super::{mix, Event, Protocol};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use c1m_proto::greeting;
use c1m_proto::protocol::{Expect, ProtocolArgs};
use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;
const FIN: u8 = 0x80;

/// The WebSocket client of one run.
#[derive(Debug, Clone)]
pub struct WebSocket {
    /// The handshake request up to the key, and what follows it.
    before_key: Arc<[u8]>,
    after_key: Arc<[u8]>,
    expect: Expect,
    max_message: u32,
}

/// A connection: its handshake, then its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Handshake(Head),
    Frames(Frames),
}

impl Default for State {
    fn default() -> Self {
        State::Handshake(Head::default())
    }
}

/// Where in a frame the connection is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum At {
    #[default]
    First,
    Second,
    /// Extended payload length, `Frames::ext` bytes to go.
    Length,
    Payload,
}

/// Frame reading state: 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frames {
    at: At,
    /// First byte of the current frame (FIN, opcode).
    first: u8,
    /// Extended length bytes still to read; in a ping's payload, the ping's length.
    ext: u8,
    flags: u8,
    /// Payload bytes of the current frame still to come (or its length being read).
    left: u32,
    /// Bytes of the current data message so far (the echo offset).
    message: u32,
}

/// An echo (or, with `--expect any`, any message) is awaited.
const AWAITING: u8 = 1;
/// A fragmented data message has begun.
const IN_MESSAGE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The handshake was answered by another status than 101.
    Status(u16),
    /// The handshake response is not HTTP.
    Malformed,
    /// A handshake response over 16 KiB.
    HandshakeTooLarge,
    /// 101 without `Upgrade: websocket` and `Connection: Upgrade`.
    NotUpgrade,
    /// 101 without `Sec-WebSocket-Accept`.
    NoAccept,
    /// A `Sec-WebSocket-Accept` that does not belong to the key sent.
    BadAccept,
    /// A frame from the server with the mask bit set (RFC 6455 §5.1 forbids it).
    MaskedFrame,
    /// Reserved bits or opcodes, a fragmented or long control frame, a stray continuation.
    BadFrame,
    /// A message over --max-response.
    TooLarge,
    /// The server sent a close frame.
    Closed,
    /// The echo differs from the message sent.
    EchoMismatch,
}

impl Failure {
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Status(code) => format!("ws_http_{code}").into(),
            Failure::Malformed => "ws_malformed_handshake".into(),
            Failure::HandshakeTooLarge => "ws_handshake_too_large".into(),
            Failure::NotUpgrade => "ws_not_upgrade".into(),
            Failure::NoAccept => "ws_no_accept".into(),
            Failure::BadAccept => "ws_bad_accept".into(),
            Failure::MaskedFrame => "ws_masked_frame".into(),
            Failure::BadFrame => "ws_bad_frame".into(),
            Failure::TooLarge => "ws_message_too_large".into(),
            Failure::Closed => "ws_closed".into(),
            Failure::EchoMismatch => "ws_echo_mismatch".into(),
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::WebSocket(f)
    }
}

/// `Sec-WebSocket-Key` of connection `n`: 16 bytes from its number, base64.
pub fn key(n: u32) -> [u8; 24] {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&mix(u64::from(n)).to_le_bytes());
    raw[8..].copy_from_slice(&mix(!u64::from(n)).to_le_bytes());
    let mut k = [0u8; 24];
    let _ = STANDARD.encode_slice(raw, &mut k);
    k
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept(key: &[u8]) -> [u8; 28] {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    let mut a = [0u8; 28];
    let _ = STANDARD.encode_slice(h.finalize(), &mut a);
    a
}

/// The masking key of connection `n`'s frames.
fn mask(n: u32) -> [u8; 4] {
    ((mix(u64::from(n)) >> 32) as u32).to_be_bytes()
}

impl WebSocket {
    pub fn new(args: &ProtocolArgs, target: Ipv4Addr) -> WebSocket {
        let upgrade = [
            "Upgrade: websocket".to_string(),
            "Connection: Upgrade".into(),
            "Sec-WebSocket-Version: 13".into(),
        ];
        let mut r = super::http::request("GET", args, target, &upgrade);
        r.push_str("Sec-WebSocket-Key: ");
        WebSocket {
            before_key: r.into_bytes().into(),
            after_key: b"\r\n\r\n"[..].into(),
            expect: args.expect,
            max_message: args.max_response,
        }
    }

    /// The greeting as one masked binary frame.
    fn data_frame(n: u32, out: &mut Vec<u8>) {
        let m = mask(n);
        out.extend_from_slice(&[FIN | OP_BINARY, 0x80 | greeting::LEN as u8]);
        out.extend_from_slice(&m);
        let g = greeting::greeting(u64::from(n));
        out.extend(g.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
    }

    /// Checks a complete handshake response.
    fn handshake_done(&self, h: &Head) -> Result<(), Failure> {
        if h.status != 101 {
            return Err(Failure::Status(h.status));
        }
        let upgrade = head::UPGRADE_WEBSOCKET | head::CONNECTION_UPGRADE;
        if h.flags & upgrade != upgrade {
            return Err(Failure::NotUpgrade);
        }
        if h.flags & head::ACCEPT_SEEN == 0 {
            return Err(Failure::NoAccept);
        }
        if h.flags & head::ACCEPT_WRONG != 0 {
            return Err(Failure::BadAccept);
        }
        Ok(())
    }

    /// Frame bytes: returns how many were used and whether an awaited message completed.
    fn frames(
        &self,
        n: u32,
        f: &mut Frames,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), Failure> {
        let b = bytes[0];
        let opcode = f.first & 0x0f;
        match f.at {
            At::First => {
                let op = b & 0x0f;
                let ok = b & 0x70 == 0
                    && match op {
                        OP_CONTINUATION => f.flags & IN_MESSAGE != 0,
                        OP_TEXT | OP_BINARY => f.flags & IN_MESSAGE == 0,
                        OP_CLOSE | OP_PING | OP_PONG => b & FIN != 0,
                        _ => false,
                    };
                if !ok {
                    return Err(Failure::BadFrame);
                }
                f.first = b;
                f.at = At::Second;
                Ok((1, false))
            }
            At::Second => {
                if b & 0x80 != 0 {
                    return Err(Failure::MaskedFrame);
                }
                let len = b & 0x7f;
                if opcode >= OP_CLOSE && len > 125 {
                    return Err(Failure::BadFrame);
                }
                f.left = 0;
                match len {
                    126 => f.ext = 2,
                    127 => f.ext = 8,
                    _ => {
                        f.left = u32::from(len);
                        return self.payload_start(n, f, out).map(|c| (1, c));
                    }
                }
                f.at = At::Length;
                Ok((1, false))
            }
            At::Length => {
                let v = u64::from(f.left) << 8 | u64::from(b);
                if u64::from(f.message) + v > u64::from(self.max_message) {
                    return Err(Failure::TooLarge);
                }
                f.left = v as u32;
                f.ext -= 1;
                if f.ext > 0 {
                    return Ok((1, false));
                }
                self.payload_start(n, f, out).map(|c| (1, c))
            }
            At::Payload => {
                let k = bytes.len().min(f.left as usize);
                let piece = &bytes[..k];
                match opcode {
                    OP_PING => {
                        // The pong's payload is the ping's, masked at the same offsets.
                        let m = mask(n);
                        let at = (u32::from(f.ext) - f.left) as usize;
                        out.extend(piece.iter().enumerate().map(|(i, b)| b ^ m[(at + i) % 4]));
                    }
                    OP_PONG => {}
                    _ => {
                        let at = f.message as usize;
                        if f.flags & AWAITING != 0 && self.expect == Expect::Echo {
                            let want = greeting::greeting(u64::from(n));
                            if at + k > greeting::LEN || piece != &want[at..at + k] {
                                return Err(Failure::EchoMismatch);
                            }
                        }
                        f.message += k as u32;
                    }
                }
                f.left -= k as u32;
                let done = f.left == 0 && self.frame_end(f)?;
                Ok((k, done))
            }
        }
    }

    /// The header of a frame is complete; true when an awaited message completed with it.
    fn payload_start(&self, n: u32, f: &mut Frames, out: &mut Vec<u8>) -> Result<bool, Failure> {
        match f.first & 0x0f {
            OP_CLOSE => return Err(Failure::Closed),
            OP_PING => {
                out.extend_from_slice(&[FIN | OP_PONG, 0x80 | f.left as u8]);
                out.extend_from_slice(&mask(n));
                f.ext = f.left as u8;
            }
            OP_PONG => {}
            _ => {
                if u64::from(f.message) + u64::from(f.left) > u64::from(self.max_message) {
                    return Err(Failure::TooLarge);
                }
            }
        }
        if f.left > 0 {
            f.at = At::Payload;
            return Ok(false);
        }
        self.frame_end(f)
    }

    /// A frame ended; true when it completed an awaited message.
    fn frame_end(&self, f: &mut Frames) -> Result<bool, Failure> {
        f.at = At::First;
        let op = f.first & 0x0f;
        if op >= OP_CLOSE {
            return Ok(false);
        }
        if f.first & FIN == 0 {
            f.flags |= IN_MESSAGE;
            return Ok(false);
        }
        let message = f.message;
        f.flags &= !IN_MESSAGE;
        f.message = 0;
        if f.flags & AWAITING == 0 {
            return Ok(false);
        }
        if self.expect == Expect::Echo && message as usize != greeting::LEN {
            return Err(Failure::EchoMismatch);
        }
        f.flags &= !AWAITING;
        Ok(true)
    }
}

impl Protocol for WebSocket {
    type State = State;

    fn open(&self, n: u32, st: &mut State, out: &mut Vec<u8>) {
        *st = State::Handshake(Head::default());
        out.extend_from_slice(&self.before_key);
        out.extend_from_slice(&key(n));
        out.extend_from_slice(&self.after_key);
    }

    fn input(
        &self,
        n: u32,
        st: &mut State,
        mut bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        let mut done = false;
        while !bytes.is_empty() {
            match st {
                State::Handshake(h) => {
                    let want = accept(&key(n));
                    let end = h.feed(bytes, Some(&want), super::http::MAX_HEAD);
                    let end = end.map_err(|e| match e {
                        HeadError::Malformed => Failure::Malformed,
                        HeadError::TooLarge => Failure::HandshakeTooLarge,
                    })?;
                    let Some(k) = end else { break };
                    self.handshake_done(h)?;
                    bytes = &bytes[k..];
                    let mut f = Frames::default();
                    match self.expect {
                        Expect::Echo => {
                            Self::data_frame(n, out);
                            f.flags = AWAITING;
                        }
                        Expect::Any => done = true,
                    }
                    *st = State::Frames(f);
                }
                State::Frames(f) => {
                    let (used, complete) = self.frames(n, f, bytes, out)?;
                    done |= complete;
                    bytes = &bytes[used..];
                }
            }
        }
        Ok(if done {
            Event::Complete
        } else {
            Event::Pending
        })
    }

    fn message(&self, n: u32, st: &mut State, out: &mut Vec<u8>) -> bool {
        let State::Frames(f) = st else { return false };
        // Mid-ping, a pong is half written: a frame now would land inside it.
        let mid_ping = f.at != At::First && f.first & 0x0f == OP_PING;
        if f.flags & AWAITING != 0 || mid_ping {
            return false;
        }
        Self::data_frame(n, out);
        f.flags |= AWAITING;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::drive::{every_split, feed, more};
    use super::super::Failure as F;
    use super::*;

    fn ws(expect: Expect) -> WebSocket {
        let a = ProtocolArgs {
            expect,
            max_response: 1000,
            ..Default::default()
        };
        WebSocket::new(&a, Ipv4Addr::LOCALHOST)
    }

    fn switching(n: u32) -> Vec<u8> {
        let a = accept(&key(n));
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&a).unwrap()
        )
        .into_bytes()
    }

    /// An unmasked server frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            l if l < 126 => f.push(l as u8),
            l if l < 65536 => {
                f.push(126);
                f.extend_from_slice(&(l as u16).to_be_bytes());
            }
            l => {
                f.push(127);
                f.extend_from_slice(&(l as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn echo(n: u32) -> Vec<u8> {
        frame(FIN | OP_BINARY, &greeting::greeting(u64::from(n)))
    }

    /// Unmasks a client frame: (first byte, payload).
    fn unmask(f: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(f[1] & 0x80, 0x80, "client frames are masked");
        let len = (f[1] & 0x7f) as usize;
        let m = &f[2..6];
        (
            f[0],
            f[6..6 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ m[i % 4])
                .collect(),
        )
    }

    #[test]
    fn accept_matches_the_rfc_example() {
        assert_eq!(
            &accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_ne!(key(1), key(2));
    }

    #[test]
    fn handshake_request_carries_the_key() {
        let mut out = Vec::new();
        ws(Expect::Echo).open(5, &mut State::default(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"));
        let k = format!(
            "Sec-WebSocket-Key: {}\r\n\r\n",
            std::str::from_utf8(&key(5)).unwrap()
        );
        assert!(text.ends_with(&k), "{text}");
    }

    #[test]
    fn handshake_then_echo_in_any_split_then_round_trip() {
        let p = ws(Expect::Echo);
        let server = [switching(9), echo(9)].concat();
        let s = every_split(&p, 9, &server);
        assert_eq!((s.completes, s.failure), (1, None));
        let (first, payload) = unmask(&s.written);
        assert_eq!(
            (first, &payload[..]),
            (FIN | OP_BINARY, &greeting::greeting(9)[..])
        );
        let (mut st, _) = feed(&p, 9, &server, 3);
        let mut out = Vec::new();
        assert!(p.message(9, &mut st, &mut out));
        assert!(!p.message(9, &mut st, &mut out), "one message at a time");
        // The echo may come back fragmented.
        let g = greeting::greeting(9);
        let fragmented = [
            frame(OP_BINARY, &g[..10]),
            frame(FIN | OP_CONTINUATION, &g[10..]),
        ]
        .concat();
        assert_eq!(more(&p, 9, &mut st, &fragmented, 1).completes, 1);
    }

    #[test]
    fn expect_any_is_verified_by_the_handshake_alone() {
        let p = ws(Expect::Any);
        let s = every_split(&p, 3, &switching(3));
        assert_eq!((s.completes, s.written.len()), (1, 0));
        let (mut st, _) = feed(&p, 3, &switching(3), 1);
        let mut out = Vec::new();
        assert!(p.message(3, &mut st, &mut out));
        let reply = frame(FIN | OP_TEXT, b"whatever the server says");
        assert_eq!(more(&p, 3, &mut st, &reply, 2).completes, 1);
        // A push nobody asked for is read and let be.
        let s = more(&p, 3, &mut st, &reply, 2);
        assert_eq!((s.completes, s.failure), (0, None));
    }

    #[test]
    fn pings_are_answered_with_pongs_even_inside_a_fragmented_message() {
        let p = ws(Expect::Echo);
        let g = greeting::greeting(4);
        let server = [
            switching(4),
            frame(FIN | OP_PING, b"are you there?"),
            frame(OP_BINARY, &g[..5]),
            frame(FIN | OP_PING, b""),
            frame(FIN | OP_CONTINUATION, &g[5..]),
        ]
        .concat();
        let s = every_split(&p, 4, &server);
        assert_eq!((s.completes, s.failure), (1, None));
        let data_len = 6 + greeting::LEN;
        let (f1, p1) = unmask(&s.written[data_len..]);
        assert_eq!((f1, &p1[..]), (FIN | OP_PONG, &b"are you there?"[..]));
        let (f2, p2) = unmask(&s.written[data_len + 6 + 14..]);
        assert_eq!((f2, p2.len()), (FIN | OP_PONG, 0));
    }

    #[test]
    fn no_message_goes_out_inside_a_half_written_pong() {
        let p = ws(Expect::Any);
        let (mut st, _) = feed(&p, 1, &switching(1), 64);
        let ping = frame(FIN | OP_PING, b"0123456789");
        more(&p, 1, &mut st, &ping[..5], 64);
        assert!(!p.message(1, &mut st, &mut Vec::new()));
        more(&p, 1, &mut st, &ping[5..], 64);
        assert!(p.message(1, &mut st, &mut Vec::new()));
    }

    #[test]
    fn bad_handshakes_fail_by_kind() {
        let p = ws(Expect::Echo);
        let kind = |server: &[u8]| every_split(&p, 2, server).failure;
        let wrong = String::from_utf8(switching(3)).unwrap();
        assert_eq!(
            kind(wrong.as_bytes()),
            Some(F::WebSocket(Failure::BadAccept))
        );
        let none = b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(kind(none), Some(F::WebSocket(Failure::NoAccept)));
        let plain = wrong.replace("Upgrade: websocket\r\n", "");
        assert_eq!(
            kind(plain.as_bytes()),
            Some(F::WebSocket(Failure::NotUpgrade))
        );
        let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(kind(nf), Some(F::WebSocket(Failure::Status(404))));
        assert_eq!(F::WebSocket(Failure::Status(404)).name(), "ws_http_404");
        assert_eq!(
            kind(b"\x00\x01garbage"),
            Some(F::WebSocket(Failure::Malformed))
        );
    }

    #[test]
    fn bad_frames_fail_by_kind() {
        let p = ws(Expect::Echo);
        let kind =
            |frames: &[u8]| every_split(&p, 2, &[switching(2), frames.to_vec()].concat()).failure;
        let mut masked = echo(2);
        masked[1] |= 0x80;
        assert_eq!(kind(&masked), Some(F::WebSocket(Failure::MaskedFrame)));
        assert_eq!(
            kind(&frame(FIN | 3, b"")),
            Some(F::WebSocket(Failure::BadFrame))
        );
        assert_eq!(
            kind(&frame(FIN | 0x40 | 2, b"")),
            Some(F::WebSocket(Failure::BadFrame))
        );
        assert_eq!(
            kind(&frame(OP_PING, b"")),
            Some(F::WebSocket(Failure::BadFrame))
        );
        assert_eq!(
            kind(&frame(FIN | OP_CONTINUATION, b"")),
            Some(F::WebSocket(Failure::BadFrame))
        );
        assert_eq!(
            kind(&frame(FIN | OP_CLOSE, b"\x03\xe8")),
            Some(F::WebSocket(Failure::Closed))
        );
        assert_eq!(kind(&echo(3)), Some(F::WebSocket(Failure::EchoMismatch)));
        let short = frame(FIN | OP_BINARY, &greeting::greeting(2)[..31]);
        assert_eq!(kind(&short), Some(F::WebSocket(Failure::EchoMismatch)));
        let p = ws(Expect::Any);
        let kind =
            |frames: &[u8]| every_split(&p, 2, &[switching(2), frames.to_vec()].concat()).failure;
        // A 2^40-byte frame header, and a message of many small fragments, both over the limit.
        let mut huge = vec![FIN | OP_BINARY, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(kind(&huge), Some(F::WebSocket(Failure::TooLarge)));
        let pieces: Vec<u8> = (0..20)
            .flat_map(|_| frame(OP_CONTINUATION, &[b'x'; 100]))
            .collect();
        let many = [frame(OP_TEXT, &[b'x'; 100]), pieces].concat();
        assert_eq!(kind(&many), Some(F::WebSocket(Failure::TooLarge)));
    }
}
