//! `c1m-client --fastopen` against a real listener in a network namespace of the test's own:
//! with Fast Open on, every greeting rides in a SYN and every echo is verified; where the host
//! does not allow it (no cookie, or client Fast Open off) the client connects the ordinary way
//! and still verifies every echo.

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
/// SYN carried data.
fn echo_server(listener: TcpListener, conns: usize, in_syn: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
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

/// Runs 200 Fast Open connections in a namespace with `net.ipv4.tcp_fastopen = sysctl`;
/// returns how many greetings rode in a SYN, or None when the test cannot run here.
fn run(sysctl: u32) -> Option<usize> {
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
        echo_server(listener, conns, in_syn.clone());
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
            .args(["--staged", "--threads", "1", "--hold", "0s", "--fastopen"])
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
        Some(in_syn.load(Ordering::Relaxed))
    })
    .join()
    .unwrap()
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
    let Some(in_syn) = run(0x207) else {
        return skipped();
    };
    assert_eq!(in_syn, 200, "greetings that rode in a SYN");
}

#[test]
fn without_a_cookie_the_greeting_follows_the_handshake() {
    // Client and server Fast Open, cookies required: the client has none for this server yet,
    // so its first SYN asks for one and the greeting goes once connected.
    let Some(in_syn) = run(0x3) else {
        return skipped();
    };
    assert!(in_syn < 200, "a greeting rode in a SYN without a cookie");
}

#[test]
fn with_client_fast_open_off_the_client_connects_the_ordinary_way() {
    let Some(in_syn) = run(0) else {
        return skipped();
    };
    assert_eq!(in_syn, 0);
}
