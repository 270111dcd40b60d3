//! `c1m-client --fastopen` against a real listener in a network namespace of the test's own:
//! with Fast Open on, every greeting rides in a SYN and every echo is verified; where the host
//! does not allow it (no cookie, or client Fast Open off) the client connects the ordinary way
//! and still verifies every echo. Either way the connect latency is the handshake's, not the
//! wait for a server that is slow to accept.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `TCPI_OPT_SYN_DATA`: the SYN of this connection carried data that the SYN-ACK acknowledged.
const TCPI_OPT_SYN_DATA: u8 = 32;

/// Moves this test's thread into a new network namespace with loopback up and
/// `net.ipv4.tcp_fastopen` set; programs it starts inherit the namespace. None: not possible
/// here (not root, or no `ip`).
fn private_netns(fastopen: u32) -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: unshare with a namespace flag affects only this thread, which the test owns.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return None;
    }
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    if !ok(Command::new("ip").args(["link", "set", "lo", "up"])) {
        return None;
    }
    ok(Command::new("sysctl").args(["-qw", &format!("net.ipv4.tcp_fastopen={fastopen}")]))
        .then_some(())
}

/// Echoes each connection's 32-byte greeting and keeps it open; counts the connections whose
/// SYN carried data. Accepts nothing for `accept_delay`: the kernel completes the handshakes
/// and queues the connections meanwhile, as for a server that lags behind its accept queue.
fn echo_server(
    listener: TcpListener,
    conns: usize,
    in_syn: Arc<AtomicUsize>,
    accept_delay: Duration,
) {
    std::thread::spawn(move || {
        std::thread::sleep(accept_delay);
        let mut held = Vec::new();
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            if syn_carried_data(&s) {
                in_syn.fetch_add(1, Ordering::Relaxed);
            }
            let mut g = [0u8; 32];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if s.read_exact(&mut g).is_ok() && s.write_all(&g).is_ok() {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_secs(30));
    });
}

fn syn_carried_data(s: &TcpStream) -> bool {
    c1m_proto::sys::tcp_info(s.as_raw_fd())
        .is_ok_and(|info| info.tcpi_options & TCPI_OPT_SYN_DATA != 0)
}

/// What a client run showed.
struct Outcome {
    /// Greetings that rode in a SYN.
    in_syn: usize,
    /// Time to the last verified echo.
    to_target: Duration,
    /// Median connect latency.
    connect_p50_us: u64,
}

/// Runs 200 Fast Open connections in a namespace with `net.ipv4.tcp_fastopen = sysctl`
/// against a server that starts accepting after `accept_delay`, holding them for `hold`; None
/// when the test cannot run here.
fn run(sysctl: u32, accept_delay: Duration, hold: &'static str) -> Option<Outcome> {
    let conns = 200;
    // The namespace belongs to a thread of its own, so no other test runs in it.
    std::thread::spawn(move || {
        private_netns(sysctl)?;
        // A backlog for the whole burst: a full accept queue drops SYNs, data and all.
        let any_port = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let fd = c1m_proto::sys::listener(any_port, 1024).unwrap();
        // SAFETY: a listening socket just made, owned by nothing else.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        listener.set_nonblocking(false).unwrap();
        let port = listener.local_addr().unwrap().port();
        c1m_proto::sys::enable_fastopen(fd, 1024).unwrap();
        let in_syn = Arc::new(AtomicUsize::new(0));
        echo_server(listener, conns, in_syn.clone(), accept_delay);
        let out = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
            .args([
                "--target",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--ports",
                "1",
            ])
            .args([
                "--connections",
                &conns.to_string(),
                "--source-ips",
                "127.0.0.2",
            ])
            .args(["--staged", "--threads", "1", "--hold", hold, "--fastopen"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tcp_fastopen={sysctl}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("reached {conns} verified connections")),
            "{text}"
        );
        Some(Outcome {
            in_syn: in_syn.load(Ordering::Relaxed),
            to_target: figure(&text, "verified connections in ", " s")
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| panic!("no time to target: {text}")),
            connect_p50_us: figure(&text, "connect latency µs: p50 ", " ")
                .unwrap_or_else(|| panic!("no connect latency: {text}"))
                as u64,
        })
    })
    .join()
    .unwrap()
}

/// The number printed between `before` and `after` in the client's summary.
fn figure(text: &str, before: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(before)? + before.len()..];
    rest[..rest.find(after)?].parse().ok()
}

fn skipped() {
    assert!(
        std::env::var_os("C1M_REQUIRE_LAB").is_none(),
        "needs root and iproute2 for a network namespace"
    );
    eprintln!("SKIPPED: needs root and iproute2 for a network namespace");
}

#[test]
fn with_fast_open_on_every_greeting_rides_in_the_syn() {
    // Client and server Fast Open, neither asking for cookies.
    let Some(o) = run(0x207, Duration::ZERO, "0s") else {
        return skipped();
    };
    assert_eq!(o.in_syn, 200, "greetings that rode in a SYN");
}

#[test]
fn without_a_cookie_the_greeting_follows_the_handshake() {
    // Client and server Fast Open, cookies required: the client has none for this server yet,
    // so its first SYN asks for one and the greeting goes once connected.
    let Some(o) = run(0x3, Duration::ZERO, "0s") else {
        return skipped();
    };
    assert!(o.in_syn < 200, "a greeting rode in a SYN without a cookie");
}

#[test]
fn with_client_fast_open_off_the_client_connects_the_ordinary_way() {
    let Some(o) = run(0, Duration::ZERO, "0s") else {
        return skipped();
    };
    assert_eq!(o.in_syn, 0);
}

/// A server that has not accepted yet has still completed the handshake: the connect latency
/// is that handshake (sub-millisecond on loopback) with the greeting in the SYN as without,
/// while the echoes wait for the accept.
#[test]
fn connect_latency_is_the_handshake_not_the_wait_for_accept() {
    let delay = Duration::from_millis(1500);
    for (sysctl, path, in_syn) in [(0x207, "Fast Open", 200), (0, "ordinary connect", 0)] {
        // Held a moment, so that every latency recorded reaches the summary.
        let Some(o) = run(sysctl, delay, "500ms") else {
            return skipped();
        };
        assert_eq!(o.in_syn, in_syn, "{path}: greetings in a SYN");
        // The client starts a moment after the server's clock.
        assert!(
            o.to_target >= delay - Duration::from_millis(200),
            "{path}: echoes came before the server accepted: {:?}",
            o.to_target
        );
        assert!(
            (1..1000).contains(&o.connect_p50_us),
            "{path}: connect latency p50 {} µs holds the wait for accept ({:?} to the echoes)",
            o.connect_p50_us,
            o.to_target
        );
    }
}
