//! `c1m run -i INVENTORY`: one server host and N client hosts over SSH (or `local` hosts).
//!
//! 1. `prepare`: connect to every host, gather facts, print the capacity plan (refusing a run
//!    that cannot fit), deploy the binaries.
//! 2. `engine`: start the server, wait until every port listens, start all clients at once,
//!    follow their JSON lines and each host's kernel memory live, hold, then stop clients and
//!    server — on success, Ctrl-C, error or a lost host — and make sure no process group c1m
//!    started is left on any host.
//! 3. `finish`: the run directory's `run.json` with per-host figures, and the printed summary.

mod control;
mod engine;
mod finish;
mod prepare;
mod proc;

use super::RunOptions;
use control::HostSample;
use proc::{Ended, Role};

/// What the threads that talk to hosts tell the engine.
pub enum Msg {
    /// One stdout line of a binary.
    Line {
        host: usize,
        role: Role,
        line: String,
    },
    /// A binary's stream ended.
    Ended {
        host: usize,
        role: Role,
        ended: Ended,
    },
    /// A host's kernel memory and CPU, once a second.
    Sample { host: usize, sample: HostSample },
    /// The control connection of a host broke.
    ControlLost { host: usize, error: String },
}

/// Runs `c1m run -i`; returns the process exit code.
pub fn run(args: RunOptions) -> anyhow::Result<u8> {
    let prepared = match prepare::prepare(&args)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(engine::run(args, prepared))
}
