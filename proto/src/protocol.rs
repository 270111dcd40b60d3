//! Which application protocol `c1m-client` speaks on every connection (`--protocol`) and the
//! options of each, declared as data with their defaults. The client parses them (flattened into
//! its command line as part of [`crate::launch::ClientSpec`], which also renders them to argv);
//! the orchestrator names them. The state machines that speak the protocols live in the client
//! (`c1m_client::protocol`), not here.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The protocol of every connection of a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolKind {
    /// The seed's 32-byte greeting, echoed and compared byte for byte (`c1m-server`).
    #[default]
    Echo,
    /// HTTP/1.1 keep-alive: one request, a 2xx response, the connection held.
    Http,
    /// RFC 6455 WebSocket: opening handshake, then masked frames.
    Websocket,
    /// MQTT 3.1.1: CONNECT/CONNACK, PINGREQ while held.
    Mqtt,
    /// Redis RESP: `PING` → `+PONG`.
    Redis,
    /// memcached text protocol: `version` → `VERSION …`.
    Memcached,
    /// Nothing sent: a connection counts as established once its handshake completes, and is
    /// held (the connect cost alone, without a greeting or its echo).
    Idle,
}

impl ProtocolKind {
    /// The name on the command line and in reports (`websocket`).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Echo => "echo",
            ProtocolKind::Http => "http",
            ProtocolKind::Websocket => "websocket",
            ProtocolKind::Mqtt => "mqtt",
            ProtocolKind::Redis => "redis",
            ProtocolKind::Memcached => "memcached",
            ProtocolKind::Idle => "idle",
        }
    }

    /// Whether a connection sends nothing at all (`idle`): verified by its handshake alone,
    /// nothing to put in a SYN, no message to time.
    pub fn sends_nothing(self) -> bool {
        self == ProtocolKind::Idle
    }

    /// What a counted connection is, in a sentence: `verified` (its opening exchange checked),
    /// or `established` for a protocol that sends nothing (its handshake alone).
    pub fn counted_as(self) -> &'static str {
        if self.sends_nothing() {
            "established"
        } else {
            "verified"
        }
    }
}

/// What a WebSocket server answers a message with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The same payload back: each connection is verified by one echoed message.
    #[default]
    Echo,
    /// Any data message (or none): the handshake alone verifies a connection.
    Any,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::Echo => "echo",
            Expect::Any => "any",
        }
    }
}

/// Largest response body, WebSocket message or MQTT packet accepted by default.
pub const DEFAULT_MAX_RESPONSE: u32 = 1 << 20;

/// The protocol options of `c1m-client`. Each names the protocols it applies to; the others
/// ignore it.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolArgs {
    /// Protocol spoken on every connection; each is verified per connection.
    #[arg(long, value_enum, default_value_t = ProtocolKind::Echo)]
    pub protocol: ProtocolKind,
    /// Request method (http).
    #[arg(long, default_value = "GET")]
    pub http_method: String,
    /// Request target (http, websocket).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Host header (http, websocket; default: the --target address).
    #[arg(long)]
    pub host_header: Option<String>,
    /// An extra request header `NAME: VALUE` (http, websocket); repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// What the server answers a message with (websocket): `echo` verifies every connection
    /// by one echoed message, `any` by the handshake alone.
    #[arg(long, value_enum, default_value_t = Expect::Echo)]
    pub expect: Expect,
    /// Keepalive in seconds sent in CONNECT (mqtt); a PINGREQ goes out every half of it while
    /// held. 0 turns keepalive off.
    #[arg(long, default_value_t = 60)]
    pub mqtt_keepalive: u16,
    /// Client identifier prefix (mqtt): connection n is `PREFIX<n>`, n counted from
    /// --index-base, so ids are unique across clients.
    #[arg(long, default_value = "c1m-")]
    pub mqtt_client_id_prefix: String,
    /// User name in CONNECT (mqtt).
    #[arg(long)]
    pub mqtt_username: Option<String>,
    /// Password in CONNECT (mqtt).
    #[arg(long)]
    pub mqtt_password: Option<String>,
    /// Subscribe each connection to its own topic (mqtt): verified by the SUBACK too, and a
    /// --message-interval round trip is a PUBLISH that comes back (QoS 0) instead of a
    /// PUBACK (QoS 1).
    #[arg(long)]
    pub mqtt_subscribe: bool,
    /// Topic prefix (mqtt): connection n publishes to `PREFIX<n>`.
    #[arg(long, default_value = "c1m/")]
    pub mqtt_topic_prefix: String,
    /// Largest response body, WebSocket message or MQTT packet accepted, in bytes; a server
    /// that sends more is counted as an error and its connection closed.
    #[arg(long, default_value_t = DEFAULT_MAX_RESPONSE)]
    pub max_response: u32,
}

impl Default for ProtocolArgs {
    fn default() -> Self {
        ProtocolArgs {
            protocol: ProtocolKind::Echo,
            http_method: "GET".into(),
            path: "/".into(),
            host_header: None,
            headers: Vec::new(),
            expect: Expect::Echo,
            mqtt_keepalive: 60,
            mqtt_client_id_prefix: "c1m-".into(),
            mqtt_username: None,
            mqtt_password: None,
            mqtt_subscribe: false,
            mqtt_topic_prefix: "c1m/".into(),
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }
}

/// Text that goes into a request line or header: printable, no CR/LF that would split it.
fn field_text(what: &str, v: &str) -> Result<(), String> {
    if v.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!("{what} `{v}` holds a control character"));
    }
    Ok(())
}

impl ProtocolArgs {
    /// Refuses values that cannot go on the wire, naming the flag.
    pub fn check(&self) -> Result<(), String> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.http_method.is_empty() || !self.http_method.bytes().all(token) {
            return Err(format!(
                "--http-method `{}` is not an HTTP method token",
                self.http_method
            ));
        }
        if self.path.is_empty() || self.path.contains(' ') {
            return Err(format!(
                "--path `{}` must be a request target without spaces (e.g. /index.html)",
                self.path
            ));
        }
        field_text("--path", &self.path)?;
        if let Some(h) = &self.host_header {
            field_text("--host-header", h)?;
        }
        for h in &self.headers {
            field_text("--header", h)?;
            match h.split_once(':') {
                Some((name, _)) if !name.is_empty() && name.bytes().all(token) => {}
                _ => {
                    return Err(format!(
                        "--header `{h}` is not `NAME: VALUE` with a token for a name"
                    ))
                }
            }
        }
        // The id grows by up to 10 digits; MQTT strings are at most 65,535 bytes.
        for (flag, v) in [
            ("--mqtt-client-id-prefix", Some(&self.mqtt_client_id_prefix)),
            ("--mqtt-topic-prefix", Some(&self.mqtt_topic_prefix)),
            ("--mqtt-username", self.mqtt_username.as_ref()),
            ("--mqtt-password", self.mqtt_password.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > 1024) {
                return Err(format!("{flag} is longer than 1024 bytes"));
            }
        }
        if self.mqtt_topic_prefix.contains(['+', '#']) {
            return Err(format!(
                "--mqtt-topic-prefix `{}` holds a wildcard (+ or #)",
                self.mqtt_topic_prefix
            ));
        }
        if self.mqtt_password.is_some() && self.mqtt_username.is_none() {
            return Err("--mqtt-password needs --mqtt-username (MQTT 3.1.1)".into());
        }
        if !(64..=1 << 30).contains(&self.max_response) {
            return Err(format!(
                "--max-response {} is outside 64 B..1 GiB",
                self.max_response
            ));
        }
        Ok(())
    }

    /// Refuses `--message-interval` (`asked`) for a protocol that sends nothing.
    pub fn check_message_interval(&self, asked: bool) -> Result<(), String> {
        if asked && self.protocol.sends_nothing() {
            return Err(format!(
                "--message-interval needs a protocol that sends messages: --protocol {} sends \
                 nothing on its connections (drop --message-interval, or choose --protocol echo)",
                self.protocol.name()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{ClientSpec, Spec};

    /// The options through the client's launch spec: rendered to argv and parsed back.
    fn round_trip(p: &ProtocolArgs) -> ProtocolArgs {
        let spec = ClientSpec {
            protocol: p.clone(),
            ..ClientSpec::default()
        };
        let argv = spec.to_argv();
        ClientSpec::from_argv(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
            .protocol
    }

    #[test]
    fn defaults_are_the_ones_clap_declares() {
        assert_eq!(ClientSpec::default().protocol, ProtocolArgs::default());
        assert_eq!(
            round_trip(&ProtocolArgs::default()),
            ProtocolArgs::default()
        );
    }

    #[test]
    fn every_option_round_trips() {
        let p = ProtocolArgs {
            protocol: ProtocolKind::Mqtt,
            http_method: "HEAD".into(),
            path: "/a?b=c d".replace(' ', "%20"),
            host_header: Some("example.test:8080".into()),
            headers: vec!["X-One: 1".into(), "Accept: */*".into()],
            expect: Expect::Any,
            mqtt_keepalive: 7,
            mqtt_client_id_prefix: "load-".into(),
            mqtt_username: Some("u".into()),
            mqtt_password: Some("p=w,d".into()),
            mqtt_subscribe: true,
            mqtt_topic_prefix: "t/".into(),
            max_response: 4096,
        };
        assert_eq!(round_trip(&p), p);
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn values_that_cannot_go_on_the_wire_are_refused_by_flag() {
        let bad = |f: fn(&mut ProtocolArgs), flag: &str| {
            let mut p = ProtocolArgs::default();
            f(&mut p);
            let e = p.check().expect_err(flag);
            assert!(e.contains(flag), "{e}");
        };
        bad(|p| p.http_method = "GE T".into(), "--http-method");
        bad(|p| p.path = "/a b".into(), "--path");
        bad(|p| p.path = "/a\r\nX: y".into(), "--path");
        bad(|p| p.headers = vec!["no colon".into()], "--header");
        bad(|p| p.headers = vec!["A: b\r\nC: d".into()], "--header");
        bad(|p| p.host_header = Some("h\n".into()), "--host-header");
        bad(
            |p| p.mqtt_topic_prefix = "a/#".into(),
            "--mqtt-topic-prefix",
        );
        bad(|p| p.mqtt_password = Some("x".into()), "--mqtt-password");
        bad(|p| p.max_response = 10, "--max-response");
    }

    #[test]
    fn idle_round_trips_and_refuses_a_message_interval_by_both_flags() {
        let idle = ProtocolArgs {
            protocol: ProtocolKind::Idle,
            ..ProtocolArgs::default()
        };
        assert_eq!(round_trip(&idle), idle);
        assert_eq!(idle.check_message_interval(false), Ok(()));
        let e = idle.check_message_interval(true).unwrap_err();
        assert!(
            e.contains("--message-interval") && e.contains("--protocol idle"),
            "{e}"
        );
        assert_eq!(ProtocolArgs::default().check_message_interval(true), Ok(()));
    }
}
