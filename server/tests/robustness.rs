//! The server against real sockets: the greeting is echoed, and garbage, oversized writes,
//! resets and half-closes are each closed and counted without disturbing anything else.

use c1m_proto::greeting;
use c1m_proto::stats::{LayoutLine, ServerStats};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Server {
    fn start(port: u16, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_c1m-server"))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--ports",
                "1",
            ])
            .args(["--connections", "1000", "--interval-ms", "100"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("c1m-server starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let s = Server { child, lines, port };
        let first = s
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("layout line");
        let layout: LayoutLine = serde_json::from_str(&first).expect("layout JSON");
        assert_eq!(layout.event, "layout");
        s
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Waits for a stats line satisfying `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&ServerStats) -> bool) -> ServerStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                if let Ok(s) = serde_json::from_str::<ServerStats>(&l) {
                    if pred(&s) {
                        return s;
                    }
                    last = Some(s);
                }
            }
        }
        panic!("server stats never showed {what}; last: {last:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_ok(s: &mut TcpStream, n: u64) {
    let g = greeting::greeting(n);
    s.write_all(&g).unwrap();
    let mut back = [0u8; 32];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, g);
}

/// The connection was closed by the server: EOF or a reset, not a timeout.
fn closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }
}

#[test]
fn greeting_and_later_messages_are_echoed() {
    let srv = Server::start(31_100, &[]);
    let mut a = srv.connect();
    echo_ok(&mut a, 1);
    echo_ok(&mut a, 1);
    // Byte by byte still works: partial greetings are tracked per connection.
    let g = greeting::greeting(77);
    for b in g {
        a.write_all(&[b]).unwrap();
    }
    let mut back = [0u8; 32];
    a.read_exact(&mut back).unwrap();
    assert_eq!(back, g);
    let s = srv.wait_for("one open, one greeted", |s| s.open == 1 && s.greeted == 1);
    assert_eq!(s.bytes_in, 96);
    assert_eq!(s.bytes_out, 96);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

/// Segments this socket has received so far, SYN-ACK included (`TCP_INFO`).
fn segments_in(s: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len outlive the call.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_segs_in
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

#[test]
fn garbage_oversize_reset_and_half_close_are_closed_and_counted() {
    let srv = Server::start(31_200, &[]);
    let mut keep = srv.connect();
    echo_ok(&mut keep, 5);

    let mut garbage = srv.connect();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    closed_by_server(&mut garbage);

    // Writes without ever reading: the server's send buffer fills and it gives up.
    let mut flood = srv.connect();
    flood.write_all(&greeting::greeting(6)).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if flood.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(
        Instant::now() < deadline,
        "server never closed the flooding connection"
    );

    let rst = srv.connect();
    {
        let mut r = rst.try_clone().unwrap();
        echo_ok(&mut r, 7);
    }
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setting SO_LINGER on a socket we own.
    unsafe {
        libc::setsockopt(
            rst.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(rst);

    let mut half = srv.connect();
    half.write_all(&greeting::greeting(8)[..10]).unwrap();
    half.shutdown(Shutdown::Write).unwrap();
    closed_by_server(&mut half);

    let s = srv.wait_for("every bad connection closed and counted", |s| {
        s.open == 1
            && s.errors.get("garbage") == Some(&1)
            && s.errors.get("overflow") == Some(&1)
            && s.errors.get("incomplete") == Some(&1)
            && s.resets == 1
    });
    assert_eq!(s.accepted, 5);
    assert_eq!(s.closed, 4);
    // The survivor is untouched and the server still serves new connections.
    echo_ok(&mut keep, 5);
    let mut fresh = srv.connect();
    echo_ok(&mut fresh, 9);
}

#[test]
fn sigterm_prints_a_summary_and_exits_zero() {
    let mut srv = Server::start(31_300, &[]);
    let mut a = srv.connect();
    echo_ok(&mut a, 1);
    srv.wait_for("the connection", |s| s.greeted == 1);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let s = srv.wait_for("a summary", |s| s.event == "summary");
    assert_eq!(s.greeted, 1);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

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

fn child_pids(parent: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
