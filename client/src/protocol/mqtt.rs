//! `mqtt`: MQTT 3.1.1 (protocol level 4). CONNECT with a clean session, a client id unique per
//! connection (`--mqtt-client-id-prefix` + n) and the keepalive; verified by a CONNACK with
//! return code 0 (the others counted by kind: `mqtt_refused_bad_credentials`…) and, with
//! `--mqtt-subscribe`, by the SUBACK of the connection's own topic (sent right behind CONNECT, as
//! 3.1.1 allows). While held, a PINGREQ goes out every half keepalive; an unanswered one fails
//! the connection. A `--message-interval` round trip is a PUBLISH to the connection's topic: QoS 1
//! answered by its PUBACK, or, subscribed, QoS 0 coming back byte for byte. Packets are read
//! header first and bodies counted down; only the few bytes acted on are looked at.

use super::{push_decimal, Event, Protocol};
use c1m_proto::greeting;
use c1m_proto::protocol::ProtocolArgs;
use std::sync::Arc;
use std::time::Duration;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 9;
const PINGREQ: [u8; 2] = [0xc0, 0];
const PINGRESP: u8 = 13;
/// The packet id of the one SUBSCRIBE; PUBLISH ids count from 2.
const SUBSCRIBE_ID: u16 = 1;

/// The MQTT client of one run.
#[derive(Debug, Clone)]
pub struct Mqtt {
    keepalive: u16,
    client_id_prefix: Arc<[u8]>,
    username: Option<Arc<[u8]>>,
    password: Option<Arc<[u8]>>,
    subscribe: bool,
    topic_prefix: Arc<[u8]>,
    max_packet: u32,
}

/// Where in a packet the connection is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum At {
    #[default]
    Type,
    Length,
    Body,
}

/// A connection: 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    at: At,
    /// The current packet's first byte.
    first: u8,
    /// Remaining-length bytes read.
    shift: u8,
    flags: u8,
    /// The remaining length being read, then the body bytes still to come.
    left: u32,
    /// Offset in the body.
    pos: u16,
    /// Id of the outstanding QoS 1 PUBLISH.
    pid: u16,
}

const CONNACKED: u8 = 1;
const SUBACKED: u8 = 2;
const VERIFIED: u8 = 4;
/// A PUBLISH round trip is outstanding.
const AWAITING: u8 = 8;
/// A PINGREQ went out and its PINGRESP has not come back.
const PING_OUT: u8 = 16;
/// The current PUBLISH is the awaited echo, compared byte for byte.
const COMPARING: u8 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// CONNACK with a non-zero return code.
    Refused(u8),
    /// A packet that breaks the fixed-header rules (reserved flags, a 5-byte length…).
    Malformed,
    /// A packet over --max-response.
    TooLarge,
    /// A packet of a type or at a time the client did not ask for.
    Unexpected,
    /// The SUBACK refused the subscription (0x80).
    SubscribeRefused,
    /// A PINGREQ went unanswered for half a keepalive.
    NoPingResponse,
    /// The PUBLISH that came back differs from the one sent.
    EchoMismatch,
}

impl Failure {
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Refused(1) => "mqtt_refused_protocol_version".into(),
            Failure::Refused(2) => "mqtt_refused_identifier".into(),
            Failure::Refused(3) => "mqtt_refused_server_unavailable".into(),
            Failure::Refused(4) => "mqtt_refused_bad_credentials".into(),
            Failure::Refused(5) => "mqtt_refused_not_authorized".into(),
            Failure::Refused(rc) => format!("mqtt_refused_{rc}").into(),
            Failure::Malformed => "mqtt_malformed".into(),
            Failure::TooLarge => "mqtt_packet_too_large".into(),
            Failure::Unexpected => "mqtt_unexpected_packet".into(),
            Failure::SubscribeRefused => "mqtt_subscribe_refused".into(),
            Failure::NoPingResponse => "mqtt_no_pingresp".into(),
            Failure::EchoMismatch => "mqtt_echo_mismatch".into(),
        }
    }
}

impl From<Failure> for super::Failure {
    fn from(f: Failure) -> Self {
        super::Failure::Mqtt(f)
    }
}

/// The remaining-length encoding: 7 bits a byte, low first.
fn push_length(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let b = (v % 128) as u8;
        v /= 128;
        out.push(if v > 0 { b | 0x80 } else { b });
        if v == 0 {
            break;
        }
    }
}

/// An MQTT string: a 16-bit big-endian length, then the bytes.
fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// `prefix` followed by the decimal `n` (a client id or topic).
fn numbered(prefix: &[u8], n: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + 10);
    v.extend_from_slice(prefix);
    push_decimal(&mut v, n);
    v
}

impl Mqtt {
    pub fn new(args: &ProtocolArgs) -> Mqtt {
        let bytes = |s: &String| -> Arc<[u8]> { s.as_bytes().into() };
        Mqtt {
            keepalive: args.mqtt_keepalive,
            client_id_prefix: bytes(&args.mqtt_client_id_prefix),
            username: args.mqtt_username.as_ref().map(bytes),
            password: args.mqtt_password.as_ref().map(bytes),
            subscribe: args.mqtt_subscribe,
            topic_prefix: bytes(&args.mqtt_topic_prefix),
            max_packet: args.max_response,
        }
    }

    fn connect(&self, n: u32, out: &mut Vec<u8>) {
        let id = numbered(&self.client_id_prefix, n);
        let mut flags = 0x02; // clean session
        let mut len = 10 + 2 + id.len();
        if let Some(u) = &self.username {
            flags |= 0x80;
            len += 2 + u.len();
        }
        if let Some(p) = &self.password {
            flags |= 0x40;
            len += 2 + p.len();
        }
        out.push(CONNECT);
        push_length(out, len);
        out.extend_from_slice(b"\x00\x04MQTT\x04");
        out.push(flags);
        out.extend_from_slice(&self.keepalive.to_be_bytes());
        push_str(out, &id);
        for s in [&self.username, &self.password].into_iter().flatten() {
            push_str(out, s);
        }
    }

    /// The body of the PUBLISH connection `n` sends (topic, packet id if any, greeting).
    fn publish_body(&self, n: u32, pid: Option<u16>) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.topic_prefix.len() + 48);
        push_str(&mut b, &numbered(&self.topic_prefix, n));
        if let Some(id) = pid {
            b.extend_from_slice(&id.to_be_bytes());
        }
        b.extend_from_slice(&greeting::greeting(u64::from(n)));
        b
    }

    /// A complete fixed header: checks the packet may come now, with this length.
    fn header_done(&self, n: u32, st: &mut State) -> Result<(), Failure> {
        let kind = st.first >> 4;
        let connected = st.flags & CONNACKED != 0;
        let ok = match kind {
            CONNACK => !connected && st.left == 2,
            SUBACK => connected && self.subscribe && st.flags & SUBACKED == 0 && st.left == 3,
            PUBACK => connected && st.flags & AWAITING != 0 && !self.subscribe && st.left == 2,
            PINGRESP => connected && st.left == 0,
            PUBLISH => {
                // Subscriptions are QoS 0: a delivery never needs an acknowledgement.
                if st.first & 0x06 != 0 {
                    return Err(Failure::Unexpected);
                }
                if connected && st.flags & AWAITING != 0 && self.subscribe {
                    if st.left as usize != self.publish_body(n, None).len() {
                        return Err(Failure::EchoMismatch);
                    }
                    st.flags |= COMPARING;
                }
                connected
            }
            _ => false,
        };
        if !ok {
            return Err(Failure::Unexpected);
        }
        st.pos = 0;
        st.at = At::Body;
        Ok(())
    }

    /// One body byte of a packet the client acts on.
    fn body_byte(&self, st: &mut State, b: u8) -> Result<(), Failure> {
        let pos = st.pos as usize;
        match st.first >> 4 {
            CONNACK if pos == 1 && b != 0 => return Err(Failure::Refused(b)),
            SUBACK if pos < 2 && b != SUBSCRIBE_ID.to_be_bytes()[pos] => {
                return Err(Failure::Unexpected)
            }
            SUBACK if pos == 2 && b == 0x80 => return Err(Failure::SubscribeRefused),
            SUBACK if pos == 2 && b > 2 => return Err(Failure::Malformed),
            PUBACK if b != st.pid.to_be_bytes()[pos] => return Err(Failure::Unexpected),
            _ => {}
        }
        st.pos = st.pos.saturating_add(1);
        Ok(())
    }

    /// A packet ended; true when it completed the awaited exchange.
    fn packet_done(&self, st: &mut State) -> bool {
        st.at = At::Type;
        match st.first >> 4 {
            CONNACK => st.flags |= CONNACKED,
            SUBACK => st.flags |= SUBACKED,
            PINGRESP => st.flags &= !PING_OUT,
            PUBACK => {
                st.flags &= !AWAITING;
                return true;
            }
            PUBLISH if st.flags & COMPARING != 0 => {
                st.flags &= !(AWAITING | COMPARING);
                return true;
            }
            _ => {}
        }
        let ready = st.flags & CONNACKED != 0 && (!self.subscribe || st.flags & SUBACKED != 0);
        if ready && st.flags & VERIFIED == 0 {
            st.flags |= VERIFIED;
            return true;
        }
        false
    }
}

impl Protocol for Mqtt {
    type State = State;

    fn open(&self, n: u32, st: &mut State, out: &mut Vec<u8>) {
        *st = State::default();
        self.connect(n, out);
        if self.subscribe {
            let topic = numbered(&self.topic_prefix, n);
            out.push(SUBSCRIBE);
            push_length(out, 2 + 2 + topic.len() + 1);
            out.extend_from_slice(&SUBSCRIBE_ID.to_be_bytes());
            push_str(out, &topic);
            out.push(0); // QoS 0
        }
    }

    fn input(
        &self,
        n: u32,
        st: &mut State,
        mut bytes: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<Event, super::Failure> {
        let mut done = false;
        while let Some((&b, rest)) = bytes.split_first() {
            match st.at {
                At::Type => {
                    // The low nibble is fixed for every packet but PUBLISH (§2.2.2).
                    let fixed = match b >> 4 {
                        PUBLISH => true,
                        CONNACK | PUBACK | SUBACK | PINGRESP => b & 0x0f == 0,
                        _ => return Err(Failure::Unexpected.into()),
                    };
                    if !fixed {
                        return Err(Failure::Malformed.into());
                    }
                    st.first = b;
                    st.shift = 0;
                    st.left = 0;
                    st.at = At::Length;
                    bytes = rest;
                }
                At::Length => {
                    st.left |= u32::from(b & 0x7f) << (7 * st.shift);
                    st.shift += 1;
                    bytes = rest;
                    if st.left > self.max_packet {
                        return Err(Failure::TooLarge.into());
                    }
                    if b & 0x80 != 0 {
                        if st.shift == 4 {
                            return Err(Failure::Malformed.into());
                        }
                        continue;
                    }
                    self.header_done(n, st)?;
                    if st.left == 0 {
                        done |= self.packet_done(st);
                    }
                }
                At::Body => {
                    let k = bytes.len().min(st.left as usize);
                    if st.flags & COMPARING != 0 {
                        let want = self.publish_body(n, None);
                        let at = st.pos as usize;
                        if want.get(at..at + k) != Some(&bytes[..k]) {
                            return Err(Failure::EchoMismatch.into());
                        }
                        st.pos += k as u16;
                    } else if st.first >> 4 != PUBLISH {
                        for &b in &bytes[..k] {
                            self.body_byte(st, b)?;
                        }
                    }
                    st.left -= k as u32;
                    bytes = &bytes[k..];
                    if st.left == 0 {
                        done |= self.packet_done(st);
                    }
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
        if st.flags & VERIFIED == 0 || st.flags & AWAITING != 0 {
            return false;
        }
        let pid = if self.subscribe {
            None
        } else {
            st.pid = st.pid.wrapping_add(1).max(SUBSCRIBE_ID + 1);
            Some(st.pid)
        };
        let body = self.publish_body(n, pid);
        out.push(if pid.is_some() { 0x32 } else { 0x30 });
        push_length(out, body.len());
        out.extend_from_slice(&body);
        st.flags |= AWAITING;
        true
    }

    fn keepalive_every(&self) -> Option<Duration> {
        (self.keepalive > 0).then(|| Duration::from_millis(u64::from(self.keepalive) * 500))
    }

    fn keepalive(&self, _n: u32, st: &mut State, out: &mut Vec<u8>) -> Result<(), super::Failure> {
        if st.flags & VERIFIED == 0 {
            return Ok(());
        }
        if st.flags & PING_OUT != 0 {
            return Err(Failure::NoPingResponse.into());
        }
        out.extend_from_slice(&PINGREQ);
        st.flags |= PING_OUT;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::drive::{every_split, feed, more};
    use super::super::Failure as F;
    use super::*;

    fn mqtt(f: impl FnOnce(&mut ProtocolArgs)) -> Mqtt {
        let mut a = ProtocolArgs {
            max_response: 200,
            ..Default::default()
        };
        f(&mut a);
        Mqtt::new(&a)
    }

    const CONNACK_OK: &[u8] = b"\x20\x02\x00\x00";
    const SUBACK_OK: &[u8] = b"\x90\x03\x00\x01\x00";
    const PINGRESP_B: &[u8] = b"\xd0\x00";

    #[test]
    fn connect_packet_carries_id_keepalive_and_credentials() {
        let p = mqtt(|a| {
            a.mqtt_username = Some("user".into());
            a.mqtt_password = Some("pw".into());
            a.mqtt_keepalive = 30;
        });
        let mut out = Vec::new();
        p.open(42, &mut State::default(), &mut out);
        let mut want = b"\x10\x1c\x00\x04MQTT\x04\xc2\x00\x1e\x00\x06c1m-42".to_vec();
        want.extend_from_slice(b"\x00\x04user\x00\x02pw");
        assert_eq!(out, want);
        let mut big = Vec::new();
        push_length(&mut big, 321);
        assert_eq!(big, [0xc1, 0x02]);
    }

    #[test]
    fn connack_verifies_in_any_split_and_qos1_publish_round_trips() {
        let p = mqtt(|_| {});
        let s = every_split(&p, 7, CONNACK_OK);
        assert_eq!((s.completes, s.failure), (1, None));
        let (mut st, _) = feed(&p, 7, CONNACK_OK, 1);
        let mut out = Vec::new();
        assert!(p.message(7, &mut st, &mut out));
        assert!(
            !p.message(7, &mut st, &mut Vec::new()),
            "one PUBLISH at a time"
        );
        assert_eq!(out[0], 0x32, "QoS 1 when not subscribed");
        let puback = [0x40, 0x02, 0x00, 0x02];
        assert_eq!(more(&p, 7, &mut st, &puback, 1).completes, 1);
        assert!(p.message(7, &mut st, &mut Vec::new()));
        let stale = more(&p, 7, &mut st, &puback, 4);
        assert_eq!(
            stale.failure,
            Some(F::Mqtt(Failure::Unexpected)),
            "pid 3 expected"
        );
    }

    #[test]
    fn subscribed_connections_verify_by_suback_and_publish_comes_back() {
        let p = mqtt(|a| a.mqtt_subscribe = true);
        let mut out = Vec::new();
        p.open(5, &mut State::default(), &mut out);
        assert!(
            out.ends_with(b"\x82\x0a\x00\x01\x00\x05c1m/5\x00"),
            "{out:?}"
        );
        let s = every_split(&p, 5, &[CONNACK_OK, SUBACK_OK].concat());
        assert_eq!((s.completes, s.failure), (1, None));
        let (mut st, _) = feed(&p, 5, &[CONNACK_OK, SUBACK_OK].concat(), 2);
        let mut publish = Vec::new();
        assert!(p.message(5, &mut st, &mut publish));
        assert_eq!(publish[0], 0x30);
        // The broker delivers the same packet back; pings interleave.
        let back = [PINGRESP_B, &publish].concat();
        let mut st2 = st;
        assert_eq!(more(&p, 5, &mut st, &back, 1).completes, 1);
        let mut other = publish.clone();
        *other.last_mut().unwrap() ^= 1;
        assert_eq!(
            more(&p, 5, &mut st2, &other, 3).failure,
            Some(F::Mqtt(Failure::EchoMismatch))
        );
    }

    #[test]
    fn refused_connacks_are_counted_by_return_code() {
        let p = mqtt(|_| {});
        for (rc, name) in [
            (4, "mqtt_refused_bad_credentials"),
            (5, "mqtt_refused_not_authorized"),
            (2, "mqtt_refused_identifier"),
            (9, "mqtt_refused_9"),
        ] {
            let f = every_split(&p, 1, &[0x20, 0x02, 0x00, rc]).failure.unwrap();
            assert_eq!(f, F::Mqtt(Failure::Refused(rc)));
            assert_eq!(f.name(), name);
        }
        let p = mqtt(|a| a.mqtt_subscribe = true);
        let refused = [CONNACK_OK, b"\x90\x03\x00\x01\x80"].concat();
        assert_eq!(
            every_split(&p, 1, &refused).failure,
            Some(F::Mqtt(Failure::SubscribeRefused))
        );
    }

    #[test]
    fn keepalive_pings_and_fails_when_unanswered() {
        let p = mqtt(|a| a.mqtt_keepalive = 10);
        assert_eq!(p.keepalive_every(), Some(Duration::from_secs(5)));
        let (mut st, _) = feed(&p, 1, CONNACK_OK, 4);
        let mut out = Vec::new();
        p.keepalive(1, &mut st, &mut out).unwrap();
        assert_eq!(out, PINGREQ);
        assert_eq!(more(&p, 1, &mut st, PINGRESP_B, 1).failure, None);
        p.keepalive(1, &mut st, &mut out).unwrap();
        assert_eq!(
            p.keepalive(1, &mut st, &mut out),
            Err(F::Mqtt(Failure::NoPingResponse))
        );
        assert_eq!(mqtt(|a| a.mqtt_keepalive = 0).keepalive_every(), None);
    }

    #[test]
    fn garbage_and_oversized_packets_fail_by_kind() {
        let p = mqtt(|_| {});
        let kind = |server: &[u8]| every_split(&p, 1, server).failure;
        assert_eq!(kind(b"HTTP/1.1 400 Bad"), Some(F::Mqtt(Failure::Malformed)));
        assert_eq!(kind(b"\x10\x00"), Some(F::Mqtt(Failure::Unexpected)));
        assert_eq!(
            kind(b"\x20\x03\x00\x00\x00"),
            Some(F::Mqtt(Failure::Unexpected))
        );
        assert_eq!(
            kind(b"\xd0\x00"),
            Some(F::Mqtt(Failure::Unexpected)),
            "before CONNACK"
        );
        let twice = [CONNACK_OK, CONNACK_OK].concat();
        assert_eq!(kind(&twice), Some(F::Mqtt(Failure::Unexpected)));
        let big = [CONNACK_OK, b"\x30\xc9\x01"].concat();
        assert_eq!(kind(&big), Some(F::Mqtt(Failure::TooLarge)));
        let long = [CONNACK_OK, b"\x30\x80\x80\x80\x80\x01"].concat();
        assert_eq!(kind(&long), Some(F::Mqtt(Failure::Malformed)));
        // A PUBLISH nobody asked for (a retained message, a wildcard) is skipped, not stored.
        let stray = [CONNACK_OK, b"\x30\x05\x00\x01tab"].concat();
        let s = every_split(&p, 1, &stray);
        assert_eq!((s.completes, s.failure), (1, None));
    }
}
