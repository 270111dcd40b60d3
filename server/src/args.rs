//! Command-line arguments of `c1m-server`.

use clap::Parser;
use std::net::Ipv4Addr;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "c1m-server",
    version,
    about = "Epoll echo server for the million-connection test"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: Ipv4Addr,
    /// First port to listen on.
    #[arg(long, default_value_t = 20000)]
    pub port: u16,
    /// Number of consecutive ports, so one client IP is not capped at ~64k by the 4-tuple.
    #[arg(long, default_value_t = 20)]
    pub ports: u16,
    /// Connections expected; sizes the number of fd tables (worker threads/processes).
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Steer each new connection to worker `(source address - BASE) mod workers` (one process
    /// only). For a client that gives each of its fd tables its own source address and fills them
    /// one after another (`c1m-client --staged`): then only a couple of workers are busy at a
    /// time and each wake-up serves a batch. Without it the kernel hashes the 4-tuple.
    #[arg(long, value_name = "BASE")]
    pub steer_source_base: Option<Ipv4Addr>,

    /// Accept a client's first data in its SYN (TCP Fast Open, `c1m-client --fastopen`).
    /// The kernel needs the server bit of `net.ipv4.tcp_fastopen` (2) as well.
    #[arg(long)]
    pub fastopen: bool,

    #[command(flatten)]
    pub workers: c1m_proto::layout::WorkerArgs,
}
