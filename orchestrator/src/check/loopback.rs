//! Facts of a run whose client is this machine talking to itself over 127.0.0.0/8: how many
//! loopback source addresses it needs, and whether conntrack sees loopback flows here.

use std::net::Ipv4Addr;

/// The first loopback source address a run picks (127.0.0.1 is the server's).
pub const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Enough loopback source addresses that each (source IP, server port) pair stays under a
/// quarter full: the kernel's port search slows down as a 4-tuple space fills.
pub fn auto_source_ips(connections: u64, ports: u16) -> Vec<String> {
    let per_pair = c1m_proto::addrs::local_port_count().max(1);
    let room = (per_pair / 4).max(1) * u64::from(ports.max(1));
    let k = connections.div_ceil(room).clamp(1, 65_000) as u32;
    vec![address_range(FIRST_SOURCE, k)]
}

/// `A` for one address, `A-B` for `count` consecutive ones from `first`.
pub fn address_range(first: Ipv4Addr, count: u32) -> String {
    let last = Ipv4Addr::from(u32::from(first) + count.max(1) - 1);
    if count <= 1 {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// Whether conntrack tracks loopback traffic here: open one loopback connection and see whether
/// the table grew. (Built-in conntrack registers its hooks only when a rule needs them.)
pub fn conntrack_tracks_loopback() -> bool {
    let count = || -> Option<u64> {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let Some(before) = count() else {
        return false;
    };
    let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(addr) = l.local_addr() else {
        return false;
    };
    let c = std::net::TcpStream::connect(addr);
    let a = l.accept();
    let after = count().unwrap_or(before);
    drop((c, a));
    after > before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_written_as_the_binaries_read_them() {
        assert_eq!(address_range(FIRST_SOURCE, 1), "127.0.0.2");
        assert_eq!(address_range(FIRST_SOURCE, 53), "127.0.0.2-127.0.0.54");
    }
}
