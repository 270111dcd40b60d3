//! `c1m run`: the test itself. Without an inventory, everything runs on this machine over
//! loopback ([`local`]); the run directory layout is in [`c1m_rundir`].

pub mod binaries;
pub mod deploy;
pub mod local;
pub mod netns;
pub mod preflight;
pub mod remote;
pub mod sampler;
pub mod summary;
pub mod track;
pub mod view;

use c1m_proto::duration::Span;
use std::path::PathBuf;

/// Arguments of `c1m run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Inventory (Ansible YAML). Without one, the run uses this machine over loopback.
    #[arg(short, long)]
    pub inventory: Option<PathBuf>,
    /// Connections to establish and hold, over all clients.
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Server ports (consecutive from --port).
    #[arg(long, default_value_t = 20)]
    pub ports: u16,
    /// First server port.
    #[arg(long, default_value_t = 20000)]
    pub port: u16,
    /// New connections per second at most (default: as fast as the machines go).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to hold all connections once the target is reached.
    #[arg(long, default_value = "5s")]
    pub hold: Span,
    /// While holding, send a message on every connection at this interval and time round trips.
    #[arg(long)]
    pub message_interval: Option<Span>,
    /// Connects in flight at most, per client host (default: the host var `c1m_window`, else 4096).
    #[arg(long)]
    pub window: Option<u64>,
    /// Source IPs for the clients (`A` or `A-B`, comma-separated). Local default: enough
    /// addresses from 127.0.0.2 up for the 4-tuples the run needs.
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<String>,
    /// Server and client worker processes (default: one each, a thread per fd table).
    #[arg(long)]
    pub procs: Option<usize>,
    /// Where run directories go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Plain lines instead of progress bars (also when stdout is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Let the kernel hash connections over all server workers instead of pairing client fd
    /// table i with server worker i by source address (steering is used when the run picks the
    /// source IPs and there is one server process).
    #[arg(long)]
    pub no_steering: bool,
    /// Run in this network namespace instead of a private one sized for the test.
    #[arg(long)]
    pub no_netns: bool,
    /// Start even when the preflight says the run cannot fit.
    #[arg(long)]
    pub force: bool,
    /// known_hosts file for SSH hosts (default: the host's c1m_known_hosts, else ~/.ssh/known_hosts).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Add unknown SSH host keys to known_hosts (a changed key is still refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

/// Runs `c1m run`; returns the process exit code.
pub fn cmd(args: RunArgs) -> anyhow::Result<u8> {
    if args.inventory.is_some() {
        return remote::run(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(local::run(args))
}
