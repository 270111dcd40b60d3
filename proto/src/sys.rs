//! The thin layer over libc that both binaries' event loops use: an edge-triggered epoll
//! instance and the socket calls of the test. Raw fds on purpose: a connection is an fd and an
//! index into a per-thread state array, nothing more, so that userspace state stays at a few
//! bytes per connection (an `OwnedFd` per connection would tie closing to Rust values).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An epoll instance owned by one thread.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const ET: u32 = libc::EPOLLET as u32;
pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes flags only.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    /// A second handle on the same epoll instance (a dup of its fd) for another thread of the
    /// same fd table, which may change the interest list while this one waits.
    pub fn try_clone(&self, max_events: usize) -> io::Result<Epoll> {
        // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
        let fd = check(unsafe { libc::fcntl(self.fd, libc::F_DUPFD_CLOEXEC, 0) })?;
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev lives across the call; the kernel copies it.
        check(unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) }).map(|_| ())
    }

    /// Waits up to `timeout_ms` and returns the ready (events, token) pairs.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<impl Iterator<Item = (u32, u64)> + '_> {
        // SAFETY: the buffer is ours and its length is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        let n = if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            0
        } else {
            n as usize
        };
        Ok(self.events[..n].iter().map(|e| (e.events, e.u64)))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.fd);
    }
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd this thread owns; errors from close are not actionable here.
    unsafe { libc::close(fd) };
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value outlives the call and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// A non-blocking IPv4 TCP socket.
pub fn tcp_socket() -> io::Result<RawFd> {
    // SAFETY: plain socket(2).
    check(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
}

/// `SO_LINGER {1, 0}`: close sends RST, so a million closes leave no TIME_WAIT behind.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l outlives the call and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// A listening socket on `addr` in a SO_REUSEPORT group, with linger-zero and delayed ACKs
/// for its children.
pub fn listener(addr: SocketAddrV4, backlog: i32) -> io::Result<RawFd> {
    let fd = tcp_socket()?;
    let setup = || -> io::Result<()> {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        set_linger_zero(fd)?;
        let sa = sockaddr(addr);
        // SAFETY: sa outlives the call and its size is passed.
        check(unsafe {
            libc::bind(
                fd,
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
        // SAFETY: plain listen(2).
        check(unsafe { libc::listen(fd, backlog) })?;
        // Accepted sockets copy the listener's delayed-ACK state, and listen() has just reset
        // it: so set after listen. A new connection's first data is otherwise ACKed at once,
        // in a packet of its own, microseconds before the echo that could carry that ACK.
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0)?;
        Ok(())
    };
    setup().map(|()| fd).inspect_err(|_| close(fd))
}

/// `accept4` a non-blocking socket; `Err(errno)` (EAGAIN when the queue is empty).
pub fn accept(listener: RawFd) -> Result<RawFd, i32> {
    // SAFETY: null address pointers are allowed by accept4.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Binds `fd` to `ip` with port 0 deferred to connect (`IP_BIND_ADDRESS_NO_PORT`), so the
/// kernel picks a source port per 4-tuple rather than per source address.
pub fn bind_source(fd: RawFd, ip: Ipv4Addr) -> Result<(), i32> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1).map_err(|_| errno())?;
    bind(fd, SocketAddrV4::new(ip, 0))
}

fn bind(fd: RawFd, addr: SocketAddrV4) -> Result<(), i32> {
    let sa = sockaddr(addr);
    // SAFETY: sa outlives the call and its size is passed.
    let r = unsafe {
        libc::bind(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Binds `fd` to `addr` with `SO_REUSEADDR`, so that the same source address and port can
/// serve one connection to each of several destinations: connect then needs no port search,
/// only the check that the 4-tuple is free.
pub fn bind_shared(fd: RawFd, addr: SocketAddrV4) -> Result<(), i32> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(|_| errno())?;
    bind(fd, addr)
}

/// Delays the last ACK of the handshake so that it rides on the first data segment instead of
/// going out alone (the kernel does so for a connecting socket with TCP_DEFER_ACCEPT set):
/// one packet fewer per connection, and the server creates its socket on the data segment.
pub fn piggyback_handshake_ack(fd: RawFd) -> Result<(), i32> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1).map_err(|_| errno())
}

/// Lets clients put their first data in the SYN (TCP Fast Open, RFC 7413): the connection
/// and the first request cost one packet fewer and the accepted socket arrives with its data.
/// `queue` bounds the connections still waiting for the handshake's last ACK. The kernel also
/// needs the server bit of `net.ipv4.tcp_fastopen` (2) in the listener's network namespace.
pub fn enable_fastopen(fd: RawFd, queue: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, queue)
}

/// What a Fast Open connect did with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastOpen {
    /// The data went out in the SYN.
    InSyn,
    /// The SYN went out without it (no cookie for this server yet): send it once connected.
    Connecting,
    /// Fast Open is off for clients here (`net.ipv4.tcp_fastopen` lacks bit 1): nothing sent.
    Unsupported,
}

/// Connects with `data` in the SYN (`sendto` with `MSG_FASTOPEN`), one call for connect and
/// write. Partial sends are reported as an error (`ENOBUFS`): the data is small.
pub fn connect_fastopen(fd: RawFd, addr: SocketAddrV4, data: &[u8]) -> Result<FastOpen, i32> {
    let sa = sockaddr(addr);
    // SAFETY: data and sa outlive the call and their sizes are passed.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr() as *const libc::c_void,
            data.len(),
            libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    match n {
        n if n as usize == data.len() => Ok(FastOpen::InSyn),
        n if n >= 0 => Err(libc::ENOBUFS),
        _ => match errno() {
            libc::EINPROGRESS => Ok(FastOpen::Connecting),
            libc::EOPNOTSUPP => Ok(FastOpen::Unsupported),
            e => Err(e),
        },
    }
}

/// Whether a connecting socket's handshake has completed (the SYN-ACK arrived): the kernel
/// names the peer of a TCP socket only past SYN_SENT (`inet_getname` answers ENOTCONN in
/// SYN_SENT and CLOSE). The cheapest question the kernel answers about it: no socket lock, no
/// TCP_INFO to fill, a 16-byte copy.
pub fn handshake_done(fd: RawFd) -> bool {
    // SAFETY: sockaddr_in is plain old data; the kernel fills at most `len` bytes of it.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa and len outlive the call.
    let r = unsafe {
        libc::getpeername(
            fd,
            &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
            &mut len,
        )
    };
    r == 0
}

/// Starts a non-blocking connect; `Ok(())` also for EINPROGRESS.
pub fn connect(fd: RawFd, addr: SocketAddrV4) -> Result<(), i32> {
    let sa = sockaddr(addr);
    // SAFETY: sa outlives the call and its size is passed.
    let r = unsafe {
        libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = errno();
        if e != libc::EINPROGRESS {
            return Err(e);
        }
    }
    Ok(())
}

/// The pending error of a socket (`SO_ERROR`), 0 if none.
pub fn socket_error(fd: RawFd) -> i32 {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len outlive the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        errno()
    } else {
        v
    }
}

/// `read(2)`: `Ok(n)` (0 = EOF) or `Err(errno)`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// `send(2)` with MSG_NOSIGNAL (a peer that reset must not kill us with SIGPIPE).
pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: buf is valid for its length.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// Waits up to `timeout_ms` until one of `fds` is readable (`poll(2)`); `fds[i].revents` says
/// which. Returns how many are ready (0 on timeout or a signal).
pub fn poll_in(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: the array is ours and its length is passed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}

/// Makes a socket blocking, with timeouts on each receive and send, for the synchronous models:
/// a peer that stops reading or sending costs a bounded wait.
pub fn set_blocking_with_timeouts(
    fd: RawFd,
    recv: std::time::Duration,
    send: std::time::Duration,
) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    for (name, t) in [(libc::SO_RCVTIMEO, recv), (libc::SO_SNDTIMEO, send)] {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: tv outlives the call and its size is passed.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// Lets `fd` survive `exec` (clears close-on-exec), for a listener worker processes inherit.
pub fn set_inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on an fd we own.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(|_| ())
}

/// Whether `fd` is a listening socket (`SO_ACCEPTCONN`).
pub fn is_listener(fd: RawFd) -> bool {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len outlive the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0 && v == 1
}

/// `net.core.somaxconn`, the largest backlog `listen` will honour.
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// Asks the kernel to SIGKILL this process when its parent dies, so that a killed
/// supervisor never leaves workers behind. Returns false if the parent is already gone.
pub fn die_with_parent(expected_parent: u32) -> bool {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions.
    (unsafe { libc::getppid() }) as u32 == expected_parent
}

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

// Classic BPF opcodes (linux/filter.h, stable ABI). BPF_LD and BPF_W are 0, so a word load
// at an absolute offset is BPF_ABS alone.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_SUB_K: u16 = 0x04 | 0x10;
const BPF_ALU_MOD_K: u16 = 0x04 | 0x90;
const BPF_RET_A: u16 = 0x06 | 0x10;
/// Loads relative to the network header (`SKF_NET_OFF`).
const SKF_NET_OFF: i32 = -0x100000;
const SO_ATTACH_REUSEPORT_CBPF: i32 = 51;

/// Steers the new connections of `fd`'s SO_REUSEPORT group by source address: to the group's
/// socket number `(saddr - base) mod n`, counted in the order the sockets joined the group.
/// A number past the group's end falls back to the kernel's hash.
pub fn steer_by_source(fd: RawFd, base: Ipv4Addr, n: u32) -> io::Result<()> {
    let prog = [
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            // Source address: 12 bytes into the IPv4 header.
            k: (SKF_NET_OFF + 12) as u32,
        },
        SockFilter {
            code: BPF_ALU_SUB_K,
            jt: 0,
            jf: 0,
            k: u32::from(base),
        },
        SockFilter {
            code: BPF_ALU_MOD_K,
            jt: 0,
            jf: 0,
            k: n.max(1),
        },
        SockFilter {
            code: BPF_RET_A,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: fprog and the program it points to outlive the call; the kernel copies both.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const SockFprog as *const libc::c_void,
            std::mem::size_of::<SockFprog>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// The kernel's `TCP_INFO` for a socket: what tests read to see how a connection went (a SYN
/// that carried data, segments received).
pub fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len outlive the call.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(info)
}
