//! Command-line arguments of `c1m-client`.

use c1m_proto::duration::Span;
use clap::Parser;
use std::net::Ipv4Addr;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "c1m-client",
    version,
    about = "Load client for the million-connection test"
)]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub target: Ipv4Addr,
    /// First server port.
    #[arg(long, default_value_t = 20000)]
    pub port: u16,
    /// Number of consecutive server ports.
    #[arg(long, default_value_t = 20)]
    pub ports: u16,
    /// Source addresses (`A`, or an inclusive range `A-B`), comma-separated or repeated.
    /// Default: the kernel's choice (the host's own address).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub source_ips: Vec<String>,
    /// Connections to establish and hold.
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Connects in flight at most, over all threads.
    #[arg(long, default_value_t = 4096)]
    pub window: u64,
    /// New connections per second at most, over all threads (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to hold the connections once all are up (`30s`, `forever`).
    #[arg(long, default_value = "0s")]
    pub hold: Span,
    /// Send the protocol's message on every connection at this interval and time the round
    /// trips (echo: the greeting; http: the request; websocket: a frame; mqtt: a PUBLISH;
    /// redis: PING; memcached: version).
    #[arg(long)]
    pub message_interval: Option<Span>,
    /// Give up on a connect or an echo after this long (counted as ETIMEDOUT).
    #[arg(long, default_value = "10s")]
    pub connect_timeout: Span,
    /// Stop after this many errors (default: 1% of --connections, at least 1000).
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// Fill the fd tables one after another: worker i starts when worker i-1 has launched its
    /// share, each worker with the whole window and its own source address (i mod addresses).
    /// Keeps a couple of event loops busy instead of all of them; pairs with
    /// `c1m-server --steer-source-base`.
    #[arg(long)]
    pub staged: bool,
    /// Send the greeting in the SYN (TCP Fast Open): one packet and one system call fewer per
    /// connection. Needs Fast Open on both hosts (`net.ipv4.tcp_fastopen`: 1 here, 2 on the
    /// server; +4/+0x200 to skip cookies) and `c1m-server --fastopen`; without it the
    /// connection falls back to connect-then-write.
    #[arg(long)]
    pub fastopen: bool,
    /// JSON stats lines (for the orchestrator) instead of human progress.
    #[arg(long)]
    pub json: bool,
    /// Number of the first greeting (so clients on several hosts send distinct greetings).
    #[arg(long, default_value_t = 0)]
    pub index_base: u64,
    #[command(flatten)]
    pub workers: c1m_proto::layout::WorkerArgs,
    #[command(flatten)]
    pub protocol: c1m_proto::protocol::ProtocolArgs,
}

impl Args {
    pub fn max_errors(&self) -> u64 {
        self.max_errors
            .unwrap_or_else(|| (self.connections / 100).max(1000))
    }
}
