//! `c1m run`: the test itself, through one engine whether the hosts are this machine (no
//! inventory: the built-in `inventory/local.yml`, loopback) or others over SSH.
//!
//! [`prepare`] connects, plans and deploys; [`engine`] runs the live phases; [`summary`] writes
//! `run.json`; [`ceiling`] is `--connections max` (a calibration run, then the largest run this
//! machine holds). Modules, lowest layer first: `binaries`, `netns`, `sampler`, `track`, `view`,
//! `signals`, `msg`, `listening`, `deploy`, `proc`, `control`, `prepare`, `local_env`, `launch`, `state`,
//! `intake`, `summary`, `teardown`, `engine`, `models` (a run per server model, compared).

pub mod binaries;
pub mod ceiling;
pub mod control;
pub mod deploy;
mod engine;
mod intake;
pub mod launch;
mod listening;
mod local_env;
mod models;
pub mod msg;
pub mod netns;
pub mod prepare;
pub mod proc;
pub mod sampler;
mod signals;
mod state;
pub mod summary;
mod teardown;
pub mod track;
pub mod view;

use c1m_ansible::connect::HostOptions;
use c1m_proto::duration::Span;
use c1m_proto::launch::ServerSpec;
use c1m_proto::model::ServerModel;
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
    /// No TCP Fast Open in a local run's namespace.
    pub no_fastopen: bool,
    /// Start even when the preflight says the run cannot fit.
    pub force: bool,
    /// `--target`, `--server-cmd`, `--server-pid`: a server other than c1m-server.
    pub server: crate::check::server::ServerChoice,
    /// What the clients speak on every connection.
    pub protocol: c1m_proto::protocol::ProtocolArgs,
    /// Errors after which a client gives up.
    pub max_errors: Option<u64>,
    /// The server models to run, one run each in this order (`--server-model`); empty: the
    /// default model.
    pub models: Vec<ServerModel>,
}

impl RunOptions {
    /// The model of a single run: the first asked, else the server's default.
    pub fn model(&self) -> ServerModel {
        self.models
            .first()
            .copied()
            .unwrap_or(ServerSpec::default().model)
    }
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

/// Runs `c1m run`: one run, or one per server model and their comparison.
pub fn run(args: RunOptions) -> anyhow::Result<RunEnd> {
    if args.models.len() > 1 {
        return models::run_each(args);
    }
    run_one(args)
}

/// One run: prepares (refusing what cannot fit), then runs the live phases.
fn run_one(mut args: RunOptions) -> anyhow::Result<RunEnd> {
    let prepared = match prepare::prepare(&args)? {
        prepare::Readiness::Ready(p) => *p,
        prepare::Readiness::Refused(end) => return Ok(end),
    };
    // The server's own ports (`--target`, `c1m_server_ports`) are the ones the run drives.
    args.first_port = prepared.plan.server.first_port;
    args.port_count = prepared.plan.server.port_count;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(engine::run(args, prepared))
}
