//! The local run's preflight: this machine's facts against a run whose both ends are here.

use crate::check::capacity::{check_host, Finding, HostDemand};
use crate::check::facts::{self, HostFacts};
use c1m_transport::local::LocalTransport;
use c1m_transport::Become;

/// This machine's facts, read the same way as a remote host's.
pub fn local_facts() -> anyhow::Result<HostFacts> {
    let mut t = LocalTransport::new("localhost", &Become::default());
    Ok(facts::gather(&mut t)?)
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

/// Every limit of `connections` over `ports` server ports from `source_ips` addresses, with
/// server and client both on this machine.
pub fn check(connections: u64, ports: u16, source_ips: usize, facts: &HostFacts) -> Vec<Finding> {
    let tracked = if conntrack_tracks_loopback() {
        connections
    } else {
        0
    };
    check_host(
        &HostDemand {
            sockets: 2 * connections,
            server_sockets: connections,
            client_share: connections,
            tracked_flows: tracked,
            source_ips,
            ports,
            provision_hint: None,
        },
        facts,
    )
}
