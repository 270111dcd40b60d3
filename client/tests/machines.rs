//! The protocol state machines against the real servers, one byte per read: each response of
//! nginx, redis-server, memcached, mosquitto and python3-websockets arrives in as many pieces as
//! it has bytes, and must verify exactly as whole.

mod servers;

use c1m_client::protocol::{AnyProtocol, Event, Failure, Protocol, Visit};
use c1m_proto::protocol::{Expect, ProtocolArgs, ProtocolKind};
use servers::Server;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// Opens connection `n`, then runs `rounds` exchanges (the opening one and messages), reading
/// one byte at a time. Returns how many completed, or the failure.
struct Converse {
    port: u16,
    n: u32,
    rounds: usize,
}

impl Visit for Converse {
    type Output = Result<usize, Failure>;

    fn visit<P: Protocol + Send + 'static>(self, p: P) -> Result<usize, Failure> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut st = P::State::default();
        let mut out = Vec::new();
        p.open(self.n, &mut st, &mut out);
        let mut done = 0;
        while done < self.rounds {
            s.write_all(&out).expect("write");
            out.clear();
            let mut b = [0u8];
            loop {
                let k = s.read(&mut b).expect("read");
                assert_eq!(k, 1, "the server closed the connection");
                let ev = p.input(self.n, &mut st, &b, &mut out)?;
                if !out.is_empty() {
                    s.write_all(&out).expect("write");
                    out.clear();
                }
                if ev == Event::Complete {
                    break;
                }
            }
            done += 1;
            if done < self.rounds {
                assert!(p.message(self.n, &mut st, &mut out), "idle after a round");
            }
        }
        Ok(done)
    }
}

fn converse(server: &Server, args: ProtocolArgs, n: u32, rounds: usize) -> Result<usize, Failure> {
    let p = AnyProtocol::new(&args, Ipv4Addr::LOCALHOST).expect("valid options");
    p.visit(Converse {
        port: server.port,
        n,
        rounds,
    })
}

/// The head of the response to `request`, read plainly.
fn raw_head(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let k = s.read(&mut b).expect("read");
        assert!(k > 0, "closed before the head ended");
        got.extend_from_slice(&b[..k]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn args(protocol: ProtocolKind) -> ProtocolArgs {
    ProtocolArgs {
        protocol,
        ..Default::default()
    }
}

#[test]
fn nginx_responses_byte_by_byte() {
    let Some(nginx) = servers::nginx("nginx_responses_byte_by_byte", &Default::default()) else {
        return;
    };
    assert_eq!(converse(&nginx, args(ProtocolKind::Http), 1, 3), Ok(3));
    let gzip = ProtocolArgs {
        path: "/gz/index.html".into(),
        headers: vec!["Accept-Encoding: gzip".into()],
        ..args(ProtocolKind::Http)
    };
    assert_eq!(converse(&nginx, gzip, 2, 3), Ok(3), "chunked gzip bodies");
    let head = raw_head(
        nginx.port,
        "GET /gz/index.html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    let missing = ProtocolArgs {
        path: "/missing".into(),
        ..args(ProtocolKind::Http)
    };
    let e = converse(&nginx, missing, 3, 1).unwrap_err();
    assert_eq!(e.name(), "http_404");
    nginx.stop();
}

#[test]
fn redis_and_memcached_byte_by_byte() {
    if let Some(redis) = servers::redis("redis_and_memcached_byte_by_byte", 100) {
        assert_eq!(converse(&redis, args(ProtocolKind::Redis), 1, 3), Ok(3));
        redis.stop();
    }
    if let Some(mc) = servers::memcached("redis_and_memcached_byte_by_byte", 100) {
        assert_eq!(converse(&mc, args(ProtocolKind::Memcached), 1, 3), Ok(3));
        mc.stop();
    }
}

#[test]
fn mosquitto_byte_by_byte() {
    let test = "mosquitto_byte_by_byte";
    let Some(open) = servers::mosquitto(test, &[]) else {
        return;
    };
    assert_eq!(
        converse(&open, args(ProtocolKind::Mqtt), 1, 3),
        Ok(3),
        "QoS 1"
    );
    let sub = ProtocolArgs {
        mqtt_subscribe: true,
        ..args(ProtocolKind::Mqtt)
    };
    assert_eq!(converse(&open, sub, 2, 3), Ok(3), "subscribed, QoS 0 echo");
    open.stop();
    let Some(locked) = servers::mosquitto(test, &[("load", "secret")]) else {
        return;
    };
    let with = |pw: &str| ProtocolArgs {
        mqtt_username: Some("load".into()),
        mqtt_password: Some(pw.into()),
        ..args(ProtocolKind::Mqtt)
    };
    assert_eq!(converse(&locked, with("secret"), 1, 1), Ok(1));
    let refused = converse(&locked, with("wrong"), 2, 1).unwrap_err();
    // mosquitto answers a wrong password with return code 5, not 4.
    assert_eq!(refused.name(), "mqtt_refused_not_authorized");
    locked.stop();
}

#[test]
fn websocket_byte_by_byte() {
    let test = "websocket_byte_by_byte";
    let Some(ws) = servers::websocket(test, servers::WebSocket::Echo { ping_s: None }) else {
        return;
    };
    assert_eq!(converse(&ws, args(ProtocolKind::Websocket), 1, 3), Ok(3));
    ws.stop();
    let Some(wrong) = servers::websocket(test, servers::WebSocket::WrongAccept) else {
        return;
    };
    let any = ProtocolArgs {
        expect: Expect::Any,
        ..args(ProtocolKind::Websocket)
    };
    assert_eq!(
        converse(&wrong, any, 1, 1).unwrap_err().name(),
        "ws_bad_accept"
    );
    wrong.stop();
}
