//! `--steer-source-base`: each worker thread has an fd table of its own, visible as
//! /proc/PID/task/TID/fd, so where the kernel put each connection can be read back.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};
use support::Server;

/// Sockets in each worker's table, by worker index.
fn sockets_per_worker(pid: u32) -> Vec<usize> {
    let mut out = vec![];
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(i) = comm
            .trim()
            .strip_prefix("worker-")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let n = std::fs::read_dir(task.path().join("fd"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .map(|l| l.to_string_lossy().starts_with("socket:"))
                    .unwrap_or(false)
            })
            .count();
        if out.len() <= i {
            out.resize(i + 1, 0);
        }
        out[i] = n;
    }
    out
}

fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    // std cannot bind before connect; use a raw socket and hand it to TcpStream.
    use std::os::fd::FromRawFd;
    let fd = c1m_proto::sys::tcp_socket().unwrap();
    c1m_proto::sys::bind_source(fd, src).unwrap();
    // SAFETY: fd is a fresh socket we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let _ = c1m_proto::sys::connect(fd, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    s.set_nonblocking(false).unwrap();
    // Wait for the handshake: a zero-byte peek blocks until connected or failed.
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let _ = s.peek(&mut [0u8; 1]);
    s
}

#[test]
fn connections_from_one_source_address_land_on_one_worker() {
    let srv = Server::start(
        31_500,
        &[
            "--ports",
            "2",
            "--threads",
            "3",
            "--steer-source-base",
            "127.0.0.2",
        ],
    );
    let (port, pid) = (srv.port, srv.child.id());
    let before = sockets_per_worker(pid);
    assert_eq!(before.len(), 3);

    // 127.0.0.3 is base + 1: worker 1; 127.0.0.4: worker 2; on both ports.
    let mut conns = Vec::new();
    for i in 0..12 {
        conns.push(connect_from(Ipv4Addr::new(127, 0, 0, 3), port + (i % 2)));
    }
    for i in 0..5 {
        conns.push(connect_from(Ipv4Addr::new(127, 0, 0, 4), port + (i % 2)));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = sockets_per_worker(pid);
    while now.iter().sum::<usize>() < before.iter().sum::<usize>() + 17 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        now = sockets_per_worker(pid);
    }
    let grew: Vec<usize> = now.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(grew, vec![0, 12, 5], "sockets added per worker");
}
