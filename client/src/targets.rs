//! Which (source IP, server port) pair each connection uses. Each pair is a separate 4-tuple
//! space of ~28k–64k source ports, so N connections need N / ports-per-pair pairs.

use std::net::{Ipv4Addr, SocketAddrV4};

// The orchestrator still imports these from here; they live in c1m-proto now.
pub use c1m_proto::addrs::{expand_ips, local_port_count};

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

    /// Worker `worker`'s source address and its `k`-th destination, when each worker keeps to
    /// one source address (staged filling).
    pub fn pinned_pair(&self, worker: usize, k: u64) -> (Option<Ipv4Addr>, SocketAddrV4) {
        (
            self.sources[worker % self.sources.len()],
            self.dests[(k % self.dests.len() as u64) as usize],
        )
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
        assert_eq!(t.pair(3).0, Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(t.pair(6), t.pair(0));
    }
}
