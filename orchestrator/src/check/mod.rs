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

/// What the run asks of the hosts: the same three figures for `c1m check` and `c1m run`.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub connections: u64,
    pub port_count: u16,
    /// `--source-ips`: the addresses of a client on this machine.
    pub source_ips: &'a [String],
}

/// Every host reached and read, and the plan judged from what was found: the one preflight of
/// `c1m check` and `c1m run`.
pub struct Survey {
    pub inventory: c1m_ansible::inventory::Inventory,
    /// How messages name the inventory.
    pub source: String,
    /// Each host's open connection and facts (or why not), in the plan's order.
    pub reached: Vec<(String, gather::Reached)>,
    pub plan: plan::Plan,
}

/// Loads the inventory, reaches every run host and builds the plan; `say`: tell a person what
/// is happening (not when the output is JSON).
pub fn survey(hosts: &HostOptions, demand: Demand, say: bool) -> Result<Survey> {
    if demand.connections == 0 {
        anyhow::bail!("--connections must be at least 1");
    }
    let (inventory, source) = hosts.load_limited()?;
    if say {
        println!(
            "connecting to {} host(s) of {source} and reading their limits…",
            plan::run_hosts(&inventory).len()
        );
    }
    let reached = gather::connect_and_gather(&inventory, &hosts.connect, hosts.forks());
    let plan = plan::build(
        &plan::Ask {
            inventory: &inventory,
            source: &source,
            connections: demand.connections,
            ports: demand.port_count,
            local_source_ips: demand.source_ips,
        },
        &gather::facts_of(&reached),
    )?;
    Ok(Survey {
        inventory,
        source,
        reached,
        plan,
    })
}

/// Runs `c1m check`: reads every host, prints the plan.
pub fn run(args: &CheckOptions) -> Result<CheckOutcome> {
    let p = survey(
        &args.hosts,
        Demand {
            connections: args.connections,
            port_count: args.port_count,
            source_ips: &args.source_ips,
        },
        !args.json,
    )?
    .plan;
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
