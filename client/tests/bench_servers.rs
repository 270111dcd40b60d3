//! Benchmark, not run by default: how fast `c1m-client` verifies connections against each of
//! Debian's servers, one server at a time, and the round trips of one message a second while
//! held. Prints a line per server; asserts only that every connection was verified.
//!
//! ```sh
//! flock /tmp/c1m-heavy.lock cargo test --release -p c1m-client --test bench_servers -- \
//!     --ignored --nocapture --test-threads 1
//! ```

mod servers;

use servers::{client, ClientRun, Server};
use std::time::Duration;

const BUDGET: Duration = Duration::from_secs(300);

fn measure(server: Server, what: &str, n: u64, args: &str) {
    // Several source addresses: from one, connects stall near 13,300 on one port (ETIMEDOUT).
    let args = format!(
        "--connections {n} --hold 3s --message-interval 1s --source-ips 127.0.0.2-127.0.0.5 {args}"
    );
    let r: ClientRun = client(&server, &args, BUDGET);
    let s = &r.summary;
    assert!(
        r.code == Some(0) && s.verified == n && s.errors.is_empty(),
        "{what}: {s:?}"
    );
    let t = s.time_to_target_s.unwrap_or(f64::NAN);
    let rtt = s.rtt_us.clone().unwrap_or_default();
    println!(
        "{what:<34} {n:>6} verified in {t:>6.2} s = {:>7.0}/s; round trip p50 {} µs p99 {} µs ({} messages)",
        n as f64 / t,
        rtt.p50,
        rtt.p99,
        rtt.count
    );
    server.stop();
}

#[test]
#[ignore = "benchmark: run with --ignored under the heavy lock"]
fn verified_connections_per_second_per_server() {
    let test = "verified_connections_per_second_per_server";
    let nginx = servers::Nginx {
        workers: 2,
        worker_connections: 12_000,
        reuseport: true,
        ..Default::default()
    };
    if let Some(s) = servers::nginx(test, &nginx) {
        measure(s, "nginx 1.22 http (2 workers)", 20_000, "--protocol http");
    }
    if let Some(s) = servers::redis(test, 20_000) {
        measure(s, "redis-server 7.0 redis", 15_000, "--protocol redis");
    }
    if let Some(s) = servers::memcached(test, 20_000) {
        measure(s, "memcached 1.6 memcached", 15_000, "--protocol memcached");
    }
    if let Some(s) = servers::mosquitto(test, &[]) {
        let args = "--protocol mqtt --window 100";
        measure(s, "mosquitto 2.0 mqtt (--window 100)", 15_000, args);
    }
    if let Some(s) = servers::mosquitto(test, &[]) {
        let args = "--protocol mqtt --window 100 --mqtt-subscribe";
        measure(s, "mosquitto 2.0 mqtt subscribed", 15_000, args);
    }
    let echo = servers::WebSocket::Echo { ping_s: None };
    if let Some(s) = servers::websocket(test, echo) {
        let args = "--protocol websocket --connect-timeout 60s";
        measure(s, "python3-websockets 10.4 websocket", 5_000, args);
    }
}
