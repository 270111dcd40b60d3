//! Which (source IP, server port) pair each connection uses. Each pair is a separate 4-tuple
//! space of ~28k–64k source ports, so N connections need N / ports-per-pair pairs.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Expands `A` and `A-B` items into addresses.
pub fn expand_ips(items: &[String]) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let parse = |s: &str| -> Result<Ipv4Addr, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("`{s}` in --source-ips is not an IPv4 address"))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if b < a || b - a > 65_535 {
                    return Err(format!(
                        "`{item}`: the range must go up and span at most 65,536 addresses"
                    ));
                }
                out.extend((a..=b).map(Ipv4Addr::from));
            }
            None => out.push(parse(item)?),
        }
    }
    Ok(out)
}

/// The (source, destination) pairs connections cycle through.
#[derive(Debug, Clone)]
pub struct Targets {
    pub sources: Vec<Option<Ipv4Addr>>,
    pub dests: Vec<SocketAddrV4>,
}

impl Targets {
    pub fn new(sources: Vec<Ipv4Addr>, target: Ipv4Addr, port: u16, ports: u16) -> Targets {
        let sources = if sources.is_empty() {
            vec![None]
        } else {
            sources.into_iter().map(Some).collect()
        };
        let dests = (0..ports)
            .map(|i| SocketAddrV4::new(target, port + i))
            .collect();
        Targets { sources, dests }
    }

    pub fn pairs(&self) -> usize {
        self.sources.len() * self.dests.len()
    }

    /// Pair `i` (mod the number of pairs): ports vary fastest so consecutive connects spread
    /// over all server listeners.
    pub fn pair(&self, i: usize) -> (Option<Ipv4Addr>, SocketAddrV4) {
        let i = i % self.pairs();
        (
            self.sources[i / self.dests.len()],
            self.dests[i % self.dests.len()],
        )
    }
}

/// Local ports the kernel hands out for connect (`net.ipv4.ip_local_port_range`).
pub fn local_port_count() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
            let lo = it.next()??;
            let hi = it.next()??;
            Some(hi.saturating_sub(lo) + 1)
        })
        .unwrap_or(28_232)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand() {
        let v = expand_ips(&["127.0.0.2-127.0.0.4".into(), "10.0.0.1".into()]).unwrap();
        assert_eq!(v.len(), 4);
        assert!(expand_ips(&["127.0.0.9-127.0.0.1".into()]).is_err());
        assert!(expand_ips(&["nope".into()]).is_err());
    }

    #[test]
    fn pairs_cycle_ports_fastest() {
        let t = Targets::new(
            expand_ips(&["127.0.0.2-127.0.0.3".into()]).unwrap(),
            Ipv4Addr::LOCALHOST,
            20000,
            3,
        );
        assert_eq!(t.pairs(), 6);
        assert_eq!(t.pair(1).1.port(), 20001);
        assert_eq!(t.pair(3).0, Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(t.pair(6), t.pair(0));
    }
}
