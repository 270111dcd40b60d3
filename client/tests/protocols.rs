//! `c1m-client --protocol …` against real servers from Debian's packages, each started by the
//! test on 127.0.0.1 with a configuration it writes: every connection verified, round trips under
//! `--message-interval`, and each way a server says no counted under its own name.
//! A few thousand connections each: the per-table fd cap and the servers' default limits here.

mod servers;

use servers::{client, ClientRun, Server};
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(120);

/// Prints what a run reached (the figures of the report come from these lines).
fn show(what: &str, r: &ClientRun) {
    let s = &r.summary;
    let rate = s
        .time_to_target_s
        .map_or(String::from("target not reached"), |t| {
            format!(
                "{:.0} verified/s ({:.2} s)",
                s.verified as f64 / t.max(1e-6),
                t
            )
        });
    let rtt = s.rtt_us.as_ref().map_or(String::new(), |p| {
        format!(", rtt p50 {} µs ×{}", p.p50, p.count)
    });
    eprintln!(
        "{what}: verified {} dropped {} errors {:?}, {rate}{rtt}",
        s.verified, s.dropped, s.errors
    );
}

/// The run verified every connection, kept them all and counted nothing wrong.
fn assert_all_verified(server: &Server, r: &ClientRun, n: u64) {
    let s = &r.summary;
    assert!(
        r.code == Some(0) && s.verified == n && s.dropped == 0 && s.errors.is_empty(),
        "{} connections to {}: exit {:?}, {s:?}\n{}\n{}",
        n,
        server.name,
        r.code,
        r.stderr,
        server.log_text()
    );
}

/// The run failed, verified nothing, and counted only errors of `kind`, at least `n` of them.
fn assert_only_errors(r: &ClientRun, kind: &str, n: u64) {
    let s = &r.summary;
    assert_eq!(r.code, Some(1), "{s:?}");
    assert_eq!(s.verified, 0, "{s:?}");
    assert!(r.error(kind) >= n, "{kind} ≥ {n}: {:?}", s.errors);
    assert_eq!(s.errors.len(), 1, "only {kind}: {:?}", s.errors);
}

#[test]
fn nginx_http_keepalive_verified_held_and_404_counted() {
    let conf = servers::Nginx {
        workers: 2,
        worker_connections: 4096,
        ..Default::default()
    };
    let Some(nginx) = servers::nginx("nginx_http_keepalive_verified_held_and_404_counted", &conf)
    else {
        return;
    };
    let r = client(
        &nginx,
        "--protocol http --connections 3000 --hold 2s --message-interval 500ms",
        BUDGET,
    );
    show("nginx http 3000", &r);
    assert_all_verified(&nginx, &r, 3000);
    let rtt = r.summary.rtt_us.as_ref().expect("round trips timed");
    assert!(
        rtt.count >= 3000,
        "every connection repeated its request: {rtt:?}"
    );

    // Chunked bodies: nginx gzips on the fly and cannot know the length.
    let r = client(
        &nginx,
        "--protocol http --connections 500 --path /gz/index.html --header Accept-Encoding:gzip",
        BUDGET,
    );
    show("nginx http chunked 500", &r);
    assert_all_verified(&nginx, &r, 500);

    let r = client(
        &nginx,
        "--protocol http --connections 200 --path /missing --max-errors 200",
        BUDGET,
    );
    show("nginx http 404", &r);
    assert_only_errors(&r, "http_404", 200);
    nginx.stop();
}

#[test]
fn nginx_keepalive_requests_close_held_connections() {
    let conf = servers::Nginx {
        workers: 1,
        keepalive_requests: 3,
        ..Default::default()
    };
    let Some(nginx) = servers::nginx("nginx_keepalive_requests_close_held_connections", &conf)
    else {
        return;
    };
    // The opening request and two messages use up keepalive_requests; nginx then closes.
    let r = client(
        &nginx,
        "--protocol http --connections 300 --hold 2s --message-interval 300ms",
        BUDGET,
    );
    show("nginx keepalive_requests 3", &r);
    let s = &r.summary;
    assert_eq!(s.verified, 300, "{s:?}");
    assert_eq!(s.dropped, 300, "every connection closed by nginx: {s:?}");
    assert!(
        s.errors.is_empty(),
        "a close after a response is no error: {s:?}"
    );
    nginx.stop();
}

#[test]
fn redis_ping_verified_and_maxclients_counted() {
    let test = "redis_ping_verified_and_maxclients_counted";
    let Some(redis) = servers::redis(test, 4000) else {
        return;
    };
    let r = client(
        &redis,
        "--protocol redis --connections 3000 --hold 1s --message-interval 300ms",
        BUDGET,
    );
    show("redis 3000", &r);
    assert_all_verified(&redis, &r, 3000);
    assert!(r.summary.rtt_us.is_some(), "PINGs timed while held");
    // Worker processes speak the protocol too (their flags are rendered by the supervisor).
    let r = client(
        &redis,
        "--protocol redis --connections 1000 --procs 2",
        BUDGET,
    );
    show("redis 1000, 2 processes", &r);
    assert_all_verified(&redis, &r, 1000);
    assert_eq!(r.summary.procs, 2);
    redis.stop();

    // maxclients connections exactly, each verified; past them redis answers
    // `-ERR max number of clients reached` and closes.
    let Some(small) = servers::redis(test, 100) else {
        return;
    };
    let r = client(&small, "--protocol redis --connections 100", BUDGET);
    assert_all_verified(&small, &r, 100);
    let r = client(
        &small,
        "--protocol redis --connections 300 --max-errors 150",
        BUDGET,
    );
    show("redis maxclients 100", &r);
    let s = &r.summary;
    assert_eq!(r.code, Some(1), "{s:?}");
    // The run stops at the 151st error, maybe before every admitted PING was answered.
    assert!(s.verified <= 100, "{s:?}");
    assert!(r.error("redis_error") > 150, "{s:?}");
    small.stop();
}

#[test]
fn memcached_version_verified_and_max_conns_counted() {
    let test = "memcached_version_verified_and_max_conns_counted";
    let Some(mc) = servers::memcached(test, 4000) else {
        return;
    };
    let r = client(
        &mc,
        "--protocol memcached --connections 3000 --hold 1s --message-interval 300ms",
        BUDGET,
    );
    show("memcached 3000", &r);
    assert_all_verified(&mc, &r, 3000);
    assert!(r.summary.rtt_us.is_some(), "versions timed while held");
    mc.stop();

    // Past -c memcached answers `ERROR Too many open connections` and closes.
    let Some(small) = servers::memcached(test, 100) else {
        return;
    };
    let r = client(
        &small,
        "--protocol memcached --connections 300 --max-errors 150",
        BUDGET,
    );
    show("memcached -c 100", &r);
    let s = &r.summary;
    assert_eq!(r.code, Some(1), "{s:?}");
    assert!(s.verified <= 100, "{s:?}");
    assert!(r.error("memcached_error") > 150, "{s:?}");
    small.stop();
}

#[test]
fn mosquitto_connack_verified_pings_held_and_refusals_counted() {
    let test = "mosquitto_connack_verified_pings_held_and_refusals_counted";
    let Some(open) = servers::mosquitto(test, &[]) else {
        return;
    };
    // keepalive 2 s: a PINGREQ every second; mosquitto drops a client silent for 3 s.
    // --window 100: mosquitto's accept backlog is 100 (see servers::mosquitto).
    let r = client(
        &open,
        "--protocol mqtt --connections 3000 --window 100 --mqtt-keepalive 2 --hold 4s",
        BUDGET,
    );
    show("mosquitto 3000", &r);
    assert_all_verified(&open, &r, 3000);

    let r = client(
        &open,
        "--protocol mqtt --connections 1000 --mqtt-subscribe --window 100 \
         --hold 1s --message-interval 300ms",
        BUDGET,
    );
    show("mosquitto subscribe 1000", &r);
    assert_all_verified(&open, &r, 1000);
    assert!(r.summary.rtt_us.is_some(), "PUBLISH round trips timed");
    open.stop();

    let Some(locked) = servers::mosquitto(test, &[("load", "secret")]) else {
        return;
    };
    let login = |password: &str, n: u64| {
        let args = format!(
            "--protocol mqtt --connections {n} --window 100 --max-errors 200 \
             --mqtt-username load --mqtt-password {password}"
        );
        client(&locked, &args, BUDGET)
    };
    let r = login("secret", 500);
    show("mosquitto with password 500", &r);
    assert_all_verified(&locked, &r, 500);
    let r = login("wrong", 200);
    show("mosquitto wrong password", &r);
    assert_only_errors(&r, "mqtt_refused_not_authorized", 200);
    locked.stop();
}

#[test]
fn websocket_echo_handshakes_verified_pings_answered_and_wrong_accept_detected() {
    let test = "websocket_echo_handshakes_verified_pings_answered_and_wrong_accept_detected";
    let Some(ws) = servers::websocket(test, servers::WebSocket::Echo { ping_s: None }) else {
        return;
    };
    // Python answers a few hundred handshakes a second while the other tests run: give it time.
    let r = client(
        &ws,
        "--protocol websocket --connections 5000 --connect-timeout 60s \
         --hold 2s --message-interval 1s",
        BUDGET,
    );
    show("websockets echo 5000", &r);
    assert_all_verified(&ws, &r, 5000);
    assert!(r.summary.rtt_us.is_some(), "echoes timed while held");
    ws.stop();

    // This one pings every second and closes a connection whose pong is a second late.
    let pinging = servers::WebSocket::Echo { ping_s: Some(1.0) };
    let Some(ws) = servers::websocket(test, pinging) else {
        return;
    };
    let r = client(
        &ws,
        "--protocol websocket --connections 200 --hold 4s",
        BUDGET,
    );
    show("websockets pinging 200", &r);
    assert_all_verified(&ws, &r, 200);
    ws.stop();

    let Some(wrong) = servers::websocket(test, servers::WebSocket::WrongAccept) else {
        return;
    };
    let r = client(
        &wrong,
        "--protocol websocket --connections 200 --max-errors 200",
        BUDGET,
    );
    show("websocket wrong accept", &r);
    assert_only_errors(&r, "ws_bad_accept", 200);
    wrong.stop();
}
