//! Which (source IP, server port) pair each connection uses. Each pair is a separate 4-tuple
//! space of ~28k–64k source ports, so N connections need N / ports-per-pair pairs.

use std::net::{Ipv4Addr, SocketAddrV4};

// The orchestrator still imports these from here; they live in c1m-proto now.
pub use c1m_proto::addrs::{expand_ips, local_port_count, local_port_range};

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The kernel picks address and port.
    Any,
    /// This address; the kernel picks the port at connect (`IP_BIND_ADDRESS_NO_PORT`).
    Addr(Ipv4Addr),
    /// This address and port, shared with connections to the other destination ports
    /// (`SO_REUSEADDR`): no port search at connect, and one kernel bind bucket per
    /// destination-port count of connections instead of about one each.
    Bound(SocketAddrV4),
}

/// The (source, destination) pairs connections cycle through.
#[derive(Debug, Clone)]
pub struct Targets {
    pub sources: Vec<Option<Ipv4Addr>>,
    pub dests: Vec<SocketAddrV4>,
    /// `net.ipv4.ip_local_port_range`: the source ports a worker hands out itself.
    pub local_ports: (u16, u16),
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
        Targets {
            sources,
            dests,
            local_ports: local_port_range(),
        }
    }

    pub fn pairs(&self) -> usize {
        self.sources.len() * self.dests.len()
    }

    /// Worker `worker`'s `k`-th connection when each worker keeps to a source address of its
    /// own (staged filling): the destination ports vary fastest, and each source port serves one
    /// connection to every destination port, so no two of the worker's connections share a
    /// 4-tuple until it has made (local ports × destination ports) of them.
    pub fn pinned_pair(&self, worker: usize, k: u64) -> (Source, SocketAddrV4) {
        let d = self.dests.len() as u64;
        let dst = self.dests[(k % d) as usize];
        let Some(ip) = self.sources[worker % self.sources.len()] else {
            return (Source::Any, dst);
        };
        let (lo, hi) = self.local_ports;
        let span = u64::from(hi.saturating_sub(lo)) + 1;
        let port = lo + ((k / d) % span) as u16;
        (Source::Bound(SocketAddrV4::new(ip, port)), dst)
    }

    /// Pair `i` (mod the number of pairs): ports vary fastest so consecutive connects spread
    /// over all server listeners.
    pub fn pair(&self, i: usize) -> (Source, SocketAddrV4) {
        let i = i % self.pairs();
        let src = match self.sources[i / self.dests.len()] {
            Some(ip) => Source::Addr(ip),
            None => Source::Any,
        };
        (src, self.dests[i % self.dests.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(t.pair(3).0, Source::Addr(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(t.pair(6), t.pair(0));
    }

    #[test]
    fn a_pinned_worker_never_repeats_a_four_tuple() {
        let mut t = Targets::new(
            expand_ips(&["127.0.0.2-127.0.0.3".into()]).unwrap(),
            Ipv4Addr::LOCALHOST,
            20000,
            3,
        );
        t.local_ports = (40000, 40009);
        let mut seen = std::collections::HashSet::new();
        for k in 0..30 {
            let (src, dst) = t.pinned_pair(1, k);
            let Source::Bound(sa) = src else {
                panic!("a pinned worker binds its source port: {src:?}")
            };
            assert_eq!(*sa.ip(), Ipv4Addr::new(127, 0, 0, 3));
            assert!((40000..=40009).contains(&sa.port()));
            assert!(seen.insert((sa, dst)), "4-tuple repeated at k={k}");
        }
        // Past ports × destinations the tuples come round again.
        assert_eq!(t.pinned_pair(1, 30), t.pinned_pair(1, 0));
        // Three connections (one per destination port) share each source port.
        assert_eq!(t.pinned_pair(1, 0).0, t.pinned_pair(1, 2).0);
        assert_ne!(t.pinned_pair(1, 2).0, t.pinned_pair(1, 3).0);
    }
}
