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
    /// Worker processes (default: one, with a thread per fd table; more only if asked).
    #[arg(long)]
    pub procs: Option<usize>,
    /// Worker threads per process (default: from the layout plan).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep one fd table per process (no unshare(CLONE_FILES)); the layout uses processes.
    #[arg(long)]
    pub no_unshare: bool,
    /// Stats interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Internal: run as worker process of the given supervisor pid.
    #[arg(long, hide = true)]
    pub child_of: Option<u32>,
}
