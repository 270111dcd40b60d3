//! What the server's tests share: a `c1m-server` child with its stats lines, a client
//! connection that checks its echo, and the checks that a connection was closed and that no
//! process is left.

#![allow(dead_code)]

use c1m_proto::stats::{LayoutLine, ServerStats};
use c1m_proto::{greeting, procfs};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub layout: LayoutLine,
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub port: u16,
}

/// The `attempt`th other block of ports for a server whose ports were taken: below the
/// kernel's ephemeral range when there is room there, as no connection's source port can be
/// there; spread over the rest otherwise.
fn another_block(port: u16, attempt: u32) -> u16 {
    let low = u32::from(c1m_proto::addrs::local_port_range().0);
    let spread = u32::from(port) + attempt * 1_013;
    if low > 3_000 {
        (2_000 + spread % (low - 2_100)) as u16
    } else {
        (12_000 + spread % 50_000) as u16
    }
}

impl Server {
    /// A server on 127.0.0.1 from `port`, with `--ports 1 --connections 1000` unless `extra`
    /// gives them.
    ///
    /// The kernel may have handed one of the ports out as the source port of a connection
    /// elsewhere on the machine (other tests widen `ip_local_port_range` to 10000–65535), and
    /// then `listen` fails with EADDRINUSE; the server moves to another block of ports.
    pub fn start(port: u16, extra: &[&str]) -> Server {
        Server::start_with_nofile(port, extra, None)
    }

    /// As [`Server::start`], with the server's RLIMIT_NOFILE (soft and hard) lowered to
    /// `nofile`: small fd tables, so a test fills them with a few hundred connections.
    pub fn start_with_nofile(port: u16, extra: &[&str], nofile: Option<u64>) -> Server {
        let mut last = String::new();
        for attempt in 0..40u32 {
            let p = if attempt == 0 {
                port
            } else {
                another_block(port, attempt)
            };
            match Server::try_start(p, extra, nofile) {
                Ok(s) => return s,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("c1m-server on port {p} did not start: {e}"),
            }
        }
        panic!("c1m-server found no free block of ports after 40 tries; last: {last}");
    }

    fn try_start(port: u16, extra: &[&str], nofile: Option<u64>) -> Result<Server, String> {
        let mut defaults = vec!["--bind", "127.0.0.1", "--interval-ms", "100"];
        for (flag, value) in [("--ports", "1"), ("--connections", "1000")] {
            if !extra.contains(&flag) {
                defaults.extend([flag, value]);
            }
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_c1m-server"));
        if let Some(n) = nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and `lim` is a copy owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .args(["--port", &port.to_string()])
            .args(&defaults)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("c1m-server starts");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // The server's stderr still reaches the test's output, and is kept for the retry.
        let (etx, errors) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("{l}");
                let _ = etx.send(l);
            }
        });
        // A server that could not start prints its summary (or nothing) instead of a layout.
        let first = lines.recv_timeout(Duration::from_secs(10));
        let layout = first
            .as_deref()
            .ok()
            .and_then(|l| serde_json::from_str::<LayoutLine>(l).ok())
            .filter(|l| l.event == "layout");
        match layout {
            Some(layout) => Ok(Server {
                layout,
                child,
                lines,
                port,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader ends when the pipe closes, which the wait above guarantees.
                let mut said = Vec::new();
                while let Ok(l) = errors.recv_timeout(Duration::from_secs(2)) {
                    said.push(l);
                }
                Err(format!(
                    "no layout line (first: {first:?}); stderr: {}",
                    said.join(" | ")
                ))
            }
        }
    }

    /// Connects to the `i`th port of the server.
    pub fn connect_to(&self, i: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port + i)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// This server and every process under it, for checking that none is left.
    pub fn tree(&self) -> Vec<u32> {
        let mut all = vec![self.child.id()];
        let mut i = 0;
        while i < all.len() {
            all.extend(procfs::children(all[i]));
            i += 1;
        }
        all
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Waits for a stats line satisfying `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&ServerStats) -> bool) -> ServerStats {
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

pub fn echo_ok(s: &mut TcpStream, n: u64) {
    let g = greeting::greeting(n);
    s.write_all(&g).unwrap();
    let mut back = [0u8; 32];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, g);
}

/// The connection was closed by the server: EOF or a reset, not a timeout.
pub fn closed_by_server(s: &mut TcpStream) {
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

pub fn child_pids(parent: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while procfs::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!procfs::alive(pid), "worker {pid} left behind");
}
