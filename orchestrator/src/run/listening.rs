//! Whether a server listens on its ports, read from `/proc/PID/net/tcp{,6}`: the tables of the
//! network namespace that process is in (a server started inside the run's namespace is seen
//! there, not in the host's) — no connection to the server itself.
//!
//! The tables are filtered on the host ([`script`]) to their listening sockets: a host still
//! closing a previous run's connections has a table of tens of megabytes, which read whole over
//! SFTP every 100 ms took more than the wait allows (and procfs does not serve SFTP's reads at
//! offsets reliably: "Read Packet At Unexpected Offset" on the lab after 97,000 connections).
//! The kernel lists a table's listeners before its connections (`tcp_get_idx` walks the
//! listening hash first), so the filter stops at the first other socket and costs the same with
//! a million connections as with none.
//!
//! Connections the server has not taken ([`unaccepted_script`]) come from `ss`, whose state and
//! port filter runs in the kernel (inet_diag): only the matching sockets come out as text, not a
//! line per connection. A listener's Recv-Q is its accept queue, and a `SYN-RECV` socket is a
//! handshake a listener with `TCP_DEFER_ACCEPT` (Apache's `AcceptFilter`) holds back until data
//! comes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// TCP state `LISTEN` in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The shell command that prints the header of `/proc/PID/net/tcp` and the listening sockets of
/// both tables of `pid`'s namespace (`tcp6` may be absent), for [`listening`]. Each table is
/// read up to its first socket that is not listening.
pub fn script(pid: u32) -> String {
    format!(
        "for t in tcp tcp6; do awk 'FNR == 1 {{ print; next }} $4 != \"{LISTEN}\" {{ exit }} {{ print }}' /proc/{pid}/net/$t 2>/dev/null; done; true"
    )
}

/// The ports among `first..first+count` that a socket listens on at `addr` (or at a wildcard
/// address), from the text of `/proc/…/net/tcp` and `/proc/…/net/tcp6`.
pub fn listening(tables: &[&str], addr: Ipv4Addr, first: u16, count: u16) -> BTreeSet<u16> {
    let wanted = u32::from(first)..u32::from(first) + u32::from(count);
    let mut found = BTreeSet::new();
    for table in tables {
        for line in table.lines().skip(1) {
            let mut w = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(state)) =
                (w.next(), w.next(), w.next(), w.next())
            else {
                continue;
            };
            if state != LISTEN {
                continue;
            }
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            if wanted.contains(&u32::from(port)) && serves(ip, addr) {
                found.insert(port);
            }
        }
    }
    found
}

/// Connections to the server's ports the kernel has and the server has not taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unaccepted {
    /// Completed handshakes in the listeners' accept queues.
    pub queued: u64,
    /// Handshakes held half-open (`SYN-RECV`): a listener with `TCP_DEFER_ACCEPT` completes one
    /// only when data comes, while the client already counts it established.
    pub deferred: u64,
}

impl Unaccepted {
    pub fn total(&self) -> u64 {
        self.queued + self.deferred
    }
}

/// The shell command that prints, in `pid`'s network namespace, the listeners and half-open
/// sockets on ports `first..first+count` (`ss -Htan`), for [`unaccepted`]. `nsenter` only when
/// the namespace is another than the shell's.
pub fn unaccepted_script(pid: u32, first: u16, count: u16) -> String {
    let last = (u32::from(first) + u32::from(count).max(1) - 1).min(u32::from(u16::MAX));
    let ss = format!(
        "ss -Htan state listening state syn-recv '( sport >= :{first} and sport <= :{last} )'"
    );
    format!(
        "if [ \"$(readlink /proc/{pid}/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ]; then {ss}; \
         else nsenter -t {pid} -n {ss}; fi"
    )
}

/// Parses the output of [`unaccepted_script`]; `None` when it holds no listener (the server
/// is gone, or `ss` could not read its namespace).
pub fn unaccepted(text: &str) -> Option<Unaccepted> {
    let mut u = Unaccepted::default();
    let mut listeners = 0;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("LISTEN"), Some(recv_q)) => {
                listeners += 1;
                u.queued += recv_q.parse::<u64>().unwrap_or(0);
            }
            (Some("SYN-RECV"), _) => u.deferred += 1,
            _ => {}
        }
    }
    (listeners > 0).then_some(u)
}

/// Whether a socket bound to `hex` (the kernel's hex, in memory order) accepts connections to
/// `addr`: the address itself, 0.0.0.0, `::`, or `::ffff:addr`.
fn serves(hex: &str, addr: Ipv4Addr) -> bool {
    // The kernel prints each 32-bit word as it lies in memory, read as a little-endian number.
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(|w| w.swap_bytes());
    match hex.len() {
        8 => word(hex).is_some_and(|w| w == 0 || Ipv4Addr::from(w) == addr),
        32 => {
            let words: Option<Vec<u32>> = (0..4).map(|i| word(&hex[i * 8..i * 8 + 8])).collect();
            match words.as_deref() {
                Some([0, 0, 0, 0]) => true,
                Some([0, 0, 0xffff, v4]) => Ipv4Addr::from(*v4) == addr,
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// A loopback port this test holds bound (`SO_REUSEPORT`, not listening) for its whole life,
    /// so that "nothing listens there" stays true after its listener closes: a port merely let
    /// go can be handed to another test's listener at once (CI saw it).
    struct HeldPort {
        _holder: OwnedFd,
        port: u16,
    }

    impl HeldPort {
        fn new() -> HeldPort {
            let holder = reuseport_socket(0);
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: a bound socket and an address buffer of the length given.
            let r =
                unsafe { libc::getsockname(holder.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
            assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
            HeldPort {
                _holder: holder,
                port: u16::from_be(addr.sin_port),
            }
        }

        /// A listener on the held port, beside the holder.
        fn listen(&self) -> TcpListener {
            let s = reuseport_socket(self.port);
            // SAFETY: a bound socket.
            let r = unsafe { libc::listen(s.as_raw_fd(), 128) };
            assert_eq!(r, 0, "listen: {}", std::io::Error::last_os_error());
            TcpListener::from(s)
        }
    }

    /// Whether `still_listening` turns false within 5 s of a listener's close. A closed listener
    /// lingers while a child another test thread is spawning holds a copy of the fd table
    /// between its fork and its exec (where `CLOEXEC` drops it): closing is not instant here.
    fn stops_listening(mut still_listening: impl FnMut() -> bool) -> bool {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while still_listening() {
            if std::time::Instant::now() > give_up {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }

    /// A TCP socket with `SO_REUSEPORT` (and not `SO_REUSEADDR`, which would let a std listener
    /// share the port) bound to 127.0.0.1:`port`.
    fn reuseport_socket(port: u16) -> OwnedFd {
        // SAFETY: plain socket calls on a descriptor this function owns from creation.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let s = OwnedFd::from_raw_fd(fd);
            let one: libc::c_int = 1;
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "SO_REUSEPORT: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_port = port.to_be();
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let r = libc::bind(
                fd,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "bind :{port}: {}", std::io::Error::last_os_error());
            s
        }
    }

    #[test]
    fn a_real_listener_is_found_and_a_closed_port_is_not() {
        let held = HeldPort::new();
        let port = held.port;
        let l = held.listen();
        let read = || {
            let tcp = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
            let tcp6 = std::fs::read_to_string("/proc/self/net/tcp6").unwrap_or_default();
            listening(&[&tcp, &tcp6], Ipv4Addr::LOCALHOST, port, 1)
        };
        assert_eq!(read().into_iter().collect::<Vec<_>>(), [port]);
        // Another loopback address is not where this socket listens.
        let tcp = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        assert!(listening(&[&tcp], Ipv4Addr::new(127, 0, 0, 9), port, 1).is_empty());
        drop(l);
        assert!(stops_listening(|| !read().is_empty()));
    }

    /// Connections the kernel completed and nobody accepted are the listener's accept queue;
    /// accepting one takes it out. A listener with TCP_DEFER_ACCEPT holds idle handshakes
    /// half-open, which the clients nonetheless count as established.
    #[test]
    fn unaccepted_connections_are_counted_queued_or_deferred() {
        let read = |port: u16| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(unaccepted_script(std::process::id(), port, 1))
                .output()
                .unwrap();
            unaccepted(&String::from_utf8_lossy(&out.stdout))
        };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(read(port), Some(Unaccepted::default()));
        let conns: Vec<_> = (0..7)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        assert_eq!(read(port).map(|u| u.queued), Some(7));
        let taken = l.accept().unwrap();
        assert_eq!(read(port).map(|u| u.total()), Some(6));
        // Nothing listens on a port held bound but not listening.
        assert_eq!(read(HeldPort::new().port), None);

        let deferring = TcpListener::bind("127.0.0.1:0").unwrap();
        let secs: libc::c_int = 30;
        // SAFETY: a valid socket and an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                deferring.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let dport = deferring.local_addr().unwrap().port();
        let idle: Vec<_> = (0..5)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", dport)).unwrap())
            .collect();
        assert_eq!(
            read(dport),
            Some(Unaccepted {
                queued: 0,
                deferred: 5
            })
        );
        drop((conns, taken, idle));
    }

    #[test]
    fn ss_output_is_parsed_and_garbage_is_ignored() {
        let text = "LISTEN   3      4096   127.0.0.1:38778   0.0.0.0:*\n\
                    LISTEN   2      4096   [::]:38778   [::]:*\n\
                    SYN-RECV 0      0      127.0.0.1:38778 127.0.0.1:56090\n\
                    nsenter: cannot open /proc/1/ns/net\n\n";
        assert_eq!(
            unaccepted(text),
            Some(Unaccepted {
                queued: 5,
                deferred: 1
            })
        );
        assert_eq!(
            unaccepted("nsenter: reassociate to namespace failed\n"),
            None
        );
    }

    /// The filter runs under Debian's `sh` and `awk`, finds a real listener, and leaves out the
    /// connected sockets, however many there are.
    #[test]
    fn the_host_side_filter_keeps_only_listeners() {
        let held = HeldPort::new();
        let port = held.port;
        let l = held.listen();
        // Both ends of each, accepted as they come (the accept queue holds only 128).
        let conns: Vec<_> = (0..200)
            .map(|_| {
                let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                (c, l.accept().unwrap().0)
            })
            .collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(std::process::id()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let rows = text.lines().count();
        assert!(text.starts_with("  sl"), "{text}");
        // The header and this machine's listeners, not this test's 400 connected ends.
        let whole = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        assert!(
            rows + 400 <= whole.lines().count(),
            "{rows} rows of {}",
            whole.lines().count()
        );
        assert_eq!(
            listening(&[&text], Ipv4Addr::LOCALHOST, port, 1)
                .into_iter()
                .collect::<Vec<_>>(),
            [port]
        );
        drop(conns);
        drop(l);
        assert!(stops_listening(|| {
            let gone = std::process::Command::new("sh")
                .arg("-c")
                .arg(script(std::process::id()))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&gone.stdout);
            !listening(&[&text], Ipv4Addr::LOCALHOST, port, 1).is_empty()
        }));
    }

    #[test]
    fn wildcards_and_mapped_addresses() {
        let tcp6 = "sl local rem st\n 0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n 1: 0000000000000000FFFF00000100007F:1F91 x 0A\n 2: 0000000000000000FFFF00000100007F:1F92 x 01\n";
        let got = listening(&[tcp6], Ipv4Addr::LOCALHOST, 8080, 3);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), [8080, 8081]);
        assert!(listening(
            &["garbage\nnot a table at all\n"],
            Ipv4Addr::LOCALHOST,
            1,
            10
        )
        .is_empty());
    }
}
