//! `c1m run`: the test itself. Without an inventory, everything runs on this machine over
//! loopback ([`local`]); the run directory layout is in [`crate::rundir`].

pub mod binaries;
pub mod local;
pub mod preflight;
pub mod sampler;
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
    /// Connects in flight at most, per client host.
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
    /// Start even when the preflight says the run cannot fit.
    #[arg(long)]
    pub force: bool,
}

/// Runs `c1m run`; returns the process exit code.
pub fn cmd(args: RunArgs) -> anyhow::Result<u8> {
    if let Some(inv) = &args.inventory {
        anyhow::bail!(
            "runs over SSH (-i {}) are not built yet; without -i, c1m run uses this machine over loopback",
            inv.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(local::run(args))
}

/// `1234567` → `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `6.4 MiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_count(1_000_000), "1,000,000");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(6 * 1024 * 1024 + 400 * 1024), "6.4 MiB");
    }
}
