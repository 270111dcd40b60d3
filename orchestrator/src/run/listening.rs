//! Whether a server listens on its ports, read from `/proc/PID/net/tcp{,6}`: the tables of the
//! network namespace that process is in (a server started inside the run's namespace is seen
//! there, not in the host's) — no connection to the server itself.
//!
//! The tables are filtered on the host ([`script`]) to their listening sockets: a host still
//! closing a previous run's connections has a table of tens of megabytes, which read whole over
//! SFTP every 100 ms took more than the wait allows (and procfs does not serve SFTP's reads at
//! offsets reliably: "Read Packet At Unexpected Offset" on the lab after 97,000 connections).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// TCP state `LISTEN` in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The shell command that prints the header of `/proc/PID/net/tcp` and the listening sockets of
/// both tables of `pid`'s namespace (`tcp6` may be absent), for [`listening`].
pub fn script(pid: u32) -> String {
    format!(
        "cat /proc/{pid}/net/tcp /proc/{pid}/net/tcp6 2>/dev/null | awk 'NR == 1 || $4 == \"{LISTEN}\"'"
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

    #[test]
    fn a_real_listener_is_found_and_a_closed_port_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
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
        assert!(read().is_empty());
    }

    /// The filter runs under Debian's `sh` and `awk`, finds a real listener, and leaves out the
    /// connected sockets, however many there are.
    #[test]
    fn the_host_side_filter_keeps_only_listeners() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
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
        let gone = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(std::process::id()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&gone.stdout);
        assert!(listening(&[&text], Ipv4Addr::LOCALHOST, port, 1).is_empty());
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
