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

use c1m_ansible::connect::HostOptions;
use c1m_proto::duration::Span;
use std::path::PathBuf;

/// What `c1m run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub hosts: HostOptions,
    /// Connections to establish and hold, over all clients.
    pub connections: u64,
    /// The server's first port, and how many follow.
    pub first_port: u16,
    pub port_count: u16,
    /// New connections per second at most, over all clients.
    pub rate: Option<u64>,
    /// How long to hold all connections once the target is reached.
    pub hold: Span,
    /// While holding, a message on every connection at this interval.
    pub message_interval: Option<Span>,
    /// Connects in flight at most, per client host.
    pub window: Option<u64>,
    /// Source IPs of a client on this machine.
    pub source_ips: Vec<String>,
    /// Server and client worker processes.
    pub procs: Option<usize>,
    /// Where run directories go.
    pub runs_dir: PathBuf,
    /// Plain lines instead of progress bars.
    pub no_progress: bool,
    /// No source-address steering on a local run.
    pub no_steering: bool,
    /// No private network namespace on a local run.
    pub no_netns: bool,
    /// Start even when the preflight says the run cannot fit.
    pub force: bool,
}

/// How `c1m run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The target was reached, every echo verified, every host to the end.
    Passed,
    /// Not reached, an echo wrong, a host lost, or a binary failed.
    Failed,
    /// The preflight refused the run: it cannot fit.
    Refused,
    /// A host could not be reached before the run.
    Unreachable,
    /// Stopped by a signal; teardown ran.
    Interrupted,
}

/// Runs `c1m run`.
pub fn run(args: RunOptions) -> anyhow::Result<RunEnd> {
    let code = if args.hosts.inventory.is_some() {
        remote::run(args)?
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(local::run(args))?
    };
    Ok(match code {
        0 => RunEnd::Passed,
        3 => RunEnd::Refused,
        4 => RunEnd::Unreachable,
        130 => RunEnd::Interrupted,
        _ => RunEnd::Failed,
    })
}
