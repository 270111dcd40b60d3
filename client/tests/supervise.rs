//! The client as a supervisor of worker processes (`--procs`): its children are started from
//! its own launch spec, and however the run ends (a signal, a child that dies) it ends with one
//! summary and takes every child with it.

use c1m_proto::duration::Span;
use c1m_proto::launch::{ClientSpec, Spec};
use c1m_proto::procfs::{self, alive};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A client of `n` connections in 3 worker processes against a listener that never answers, so
/// the children stay busy until told otherwise. The port is the kernel's pick: a fixed one may
/// be some other run's ephemeral port.
fn start(n: u64) -> (Child, TcpListener) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();
    let child = Command::new(env!("CARGO_BIN_EXE_c1m-client"))
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
            &n.to_string(),
            "--procs",
            "3",
            "--window",
            "100",
        ])
        .args([
            "--connect-timeout",
            "60s",
            "--hold",
            "forever",
            "--interval-ms",
            "100",
        ])
        .args(["--source-ips", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("c1m-client starts");
    (child, listener)
}

/// The worker processes of `parent`, once all three are there.
fn children(parent: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = procfs::children(parent);
        if pids.len() == 3 || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = pids.iter().filter(|&&p| alive(p)).collect();
    assert!(left.is_empty(), "worker processes left behind: {left:?}");
}

/// Sends `sig` to `pid` once the client has run a moment; its stdout, after it exited 1 (the
/// target was not reached).
fn failed_after(client: Child, pid: u32, sig: i32) -> String {
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling a process this test started, or one its child started.
    unsafe { libc::kill(pid as i32, sig) };
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    stdout
}

#[test]
fn children_get_their_share_of_the_parents_spec_and_sigterm_ends_all() {
    let (child, _listener) = start(600);
    let parent = child.id();
    let pids = children(parent);
    assert_eq!(pids.len(), 3, "{pids:?}");
    let mut kids: Vec<ClientSpec> = pids
        .iter()
        .map(|&p| {
            let argv = procfs::argv_once_execed(p, parent, Duration::from_secs(5));
            ClientSpec::from_argv(argv).expect("a worker's argv parses")
        })
        .collect();
    kids.sort_by_key(|k| k.index_base);
    assert_eq!(
        kids.iter()
            .map(|k| (k.index_base, k.connections))
            .collect::<Vec<_>>(),
        [(0, 200), (200, 200), (400, 200)]
    );
    assert_eq!(kids.iter().map(|k| k.window).sum::<u64>(), 100);
    for k in &kids {
        assert_eq!(k.workers.child_of, Some(parent));
        assert!(k.json && k.hold == Span(None));
        assert_eq!(k.connect_timeout, Span(Some(Duration::from_secs(60))));
        assert_eq!(k.source_ips, ["127.0.0.1"]);
        assert_eq!(k.workers.interval_ms, 100);
    }
    let stdout = failed_after(child, parent, libc::SIGTERM);
    assert!(
        stdout.contains("target not reached: 0 of 600 verified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("connections: 0, time_used:"),
        "ticks: {stdout}"
    );
    assert!(
        !stdout.contains("stopped:"),
        "a signal is not a failure: {stdout}"
    );
    assert_gone(&pids);
}

#[test]
fn a_child_that_dies_stops_the_others_and_the_summary_says_so() {
    let (child, _listener) = start(300);
    let pids = children(child.id());
    assert_eq!(pids.len(), 3, "{pids:?}");
    let stdout = failed_after(child, pids[1], libc::SIGKILL);
    assert!(
        stdout.contains("target not reached: 0 of 300 verified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stopped: worker process") && stdout.contains("exited unexpectedly"),
        "{stdout}"
    );
    assert_gone(&pids);
}
