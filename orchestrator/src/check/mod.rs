//! `c1m check`: the capacity plan of a run, and every limit that would stop it, each with its
//! fix. `c1m run` builds and judges the same plan before it starts anything.
//!
//! Layers, lowest first: `facts` (what a host allows), `capacity` (one host's limits against
//! its demand), `loopback` (a run on this machine), `plan` (the whole run), `gather` (reaching
//! the hosts).

pub mod capacity;
pub mod facts;
pub mod gather;
pub mod loopback;
pub mod plan;

use anyhow::Result;
use c1m_ansible::connect::HostOptions;

/// What `c1m check` is asked.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub hosts: HostOptions,
    /// Connections the run is to hold, over all clients.
    pub connections: u64,
    /// Server ports.
    pub port_count: u16,
    /// Source IPs of a client on this machine (`--source-ips`).
    pub source_ips: Vec<String>,
    /// Print the plan as JSON.
    pub json: bool,
}

/// What `c1m check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Fits,
    DoesNotFit,
    /// A host could not be reached or read.
    Unreachable,
}

/// Runs `c1m check`: reads every host, prints the plan.
pub fn run(args: &CheckOptions) -> Result<CheckOutcome> {
    let (inv, source) = args.hosts.load_limited()?;
    let reached = gather::connect_and_gather(&inv, &args.hosts.connect, args.hosts.forks());
    let p = plan::build(
        &plan::Ask {
            inventory: &inv,
            source: &source,
            connections: args.connections,
            ports: args.port_count,
            local_source_ips: &args.source_ips,
        },
        &gather::facts_of(&reached),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        plan::print(&p);
    }
    Ok(if p.hosts.iter().any(|h| h.error.is_some()) {
        CheckOutcome::Unreachable
    } else if p.fits {
        CheckOutcome::Fits
    } else {
        CheckOutcome::DoesNotFit
    })
}
