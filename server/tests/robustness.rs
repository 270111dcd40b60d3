//! The server's process shape against real sockets: worker processes share the ports, start
//! from the parent's spec and go away together; bad input exits 2. What every model must do
//! with a connection is `models.rs`.

mod support;

use c1m_proto::procfs;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{child_pids, echo_ok, wait_gone, Server};

#[test]
fn worker_processes_share_the_ports_and_go_away_together() {
    let mut srv = Server::start(31_400, &["--procs", "3", "--no-unshare"]);
    let mut conns: Vec<TcpStream> = (0..30).map(|_| srv.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        echo_ok(c, i as u64);
    }
    let s = srv.wait_for("30 connections over 3 processes", |s| {
        s.open == 30 && s.procs == 3
    });
    assert_eq!(s.greeted, 30);
    let children = child_pids(srv.child.id());
    assert_eq!(children.len(), 3, "{children:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let s = srv.wait_for("a summary", |s| s.event == "summary");
    assert_eq!(s.greeted, 30);
    assert!(srv.child.wait().unwrap().success());
    for pid in children {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} left behind"
        );
    }
}

#[test]
fn worker_processes_are_started_from_the_parents_spec() {
    use c1m_proto::launch::{ServerSpec, Spec};
    let srv = Server::start(31_600, &["--procs", "3", "--no-unshare"]);
    let parent = srv.child.id();
    let kids: Vec<ServerSpec> = child_pids(parent)
        .into_iter()
        .map(|pid| {
            let argv = procfs::argv_once_execed(pid, parent, Duration::from_secs(5));
            ServerSpec::from_argv(argv).expect("a worker's argv parses")
        })
        .collect();
    assert_eq!(kids.len(), 3);
    let mut shares: Vec<u64> = kids.iter().map(|k| k.connections).collect();
    shares.sort();
    assert_eq!(shares, [333, 333, 334]);
    for k in &kids {
        assert_eq!(k.workers.child_of, Some(parent));
        assert_eq!(
            (k.ports.first, k.ports.count, k.bind.to_string()),
            (srv.port, 1, "127.0.0.1".into())
        );
        assert_eq!(k.workers.interval_ms, 100);
        assert!(k.workers.no_unshare && k.workers.procs.is_none());
    }
}

#[test]
fn a_worker_process_that_dies_stops_the_others_with_a_summary() {
    let mut srv = Server::start(31_700, &["--procs", "2", "--no-unshare"]);
    let mut a = srv.connect();
    echo_ok(&mut a, 1);
    srv.wait_for("both processes", |s| s.procs == 2 && s.greeted == 1);
    let children = child_pids(srv.child.id());
    assert_eq!(children.len(), 2, "{children:?}");
    // SAFETY: signalling a process our child started.
    unsafe { libc::kill(children[0] as i32, libc::SIGKILL) };
    let s = srv.wait_for("a summary", |s| s.event == "summary");
    assert_eq!(s.greeted, 1);
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    wait_gone(children[1]);
}

#[test]
fn bad_input_exits_2_and_help_lists_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_c1m-server"))
        .args(["--port", "65535", "--ports", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--port 65535 --ports 2 does not fit"),
        "{stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_c1m-server"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Exit status:") && text.contains("  2  bad usage"),
        "{text}"
    );
}

/// Segments this socket has received so far, SYN-ACK included (`TCP_INFO`).
fn segments_in(s: &TcpStream) -> u32 {
    c1m_proto::sys::tcp_info(s.as_raw_fd())
        .unwrap_or_else(|e| panic!("TCP_INFO: {e}"))
        .tcpi_segs_in
}

#[test]
fn the_greetings_ack_rides_on_the_echo() {
    let srv = Server::start(31_150, &[]);
    // SYN-ACK and echo: two segments. A server that ACKed the greeting at once would send a
    // third, alone, just before the echo. Delayed ACKs wait 40 ms at least, far longer than an
    // echo takes, but a loaded machine can stall a thread that long: judge by the majority.
    let counts: Vec<u32> = (0..20)
        .map(|i| {
            let mut s = srv.connect();
            echo_ok(&mut s, i);
            segments_in(&s)
        })
        .collect();
    let carried = counts.iter().filter(|&&n| n == 2).count();
    assert!(
        carried >= 15,
        "segments received per connection: {counts:?}"
    );
}
