//! `c1m check`: the capacity plan of a run, and every limit that would stop it, each with its
//! fix. `c1m run` builds and judges the same plan before it starts anything.
//!
//! Layers, lowest first: `facts` (what a host allows), `server_tree` (a server's process tree
//! from /proc), `capacity` (one host's limits against its demand), `nginx` (nginx's keep-alive
//! reuse rule), `apache` (its MaxRequestWorkers), `haproxy` (two descriptors a connection, its
//! maxconn), `server` (the server under test and its ceiling), `loopback` (a run on this
//! machine), `plan` (the whole run), `gather` (reaching the hosts).

pub mod apache;
pub mod capacity;
pub mod facts;
pub mod gather;
pub mod haproxy;
pub mod loopback;
pub mod nginx;
pub mod plan;
pub mod server;
pub mod server_tree;

use anyhow::Result;
use c1m_ansible::connect::HostOptions;
use c1m_proto::model::ServerModel;

/// What `c1m check` is asked.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub hosts: HostOptions,
    /// Connections the run is to hold, over all clients.
    pub connections: u64,
    /// The server's first port and how many.
    pub first_port: u16,
    pub port_count: u16,
    /// Source IPs of a client on this machine (`--source-ips`).
    pub source_ips: Vec<String>,
    /// `--target`, `--server-cmd`, `--server-pid`, `--server-pidfile`.
    pub server: server::ServerChoice,
    /// Server models whose own ceilings the plan names (`--server-model`).
    pub models: Vec<ServerModel>,
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

/// What the run asks of the hosts: the same figures for `c1m check` and `c1m run`.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub connections: u64,
    pub first_port: u16,
    pub port_count: u16,
    /// `--source-ips`: the addresses of a client on this machine.
    pub source_ips: &'a [String],
    /// What the command line says about the server under test.
    pub server: &'a server::ServerChoice,
    /// The server models to name the ceilings of.
    pub models: &'a [ServerModel],
    /// `--procs`: worker processes.
    pub procs: Option<usize>,
    /// The clients send nothing (`--protocol idle`): a model must hold silent connections.
    pub idle_clients: bool,
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
    let (mut inventory, source) = hosts.load_limited()?;
    if !demand.server.is_empty() {
        for h in inventory.hosts.iter_mut() {
            if h.groups.iter().any(|g| g == "server") {
                demand.server.apply(h);
            }
        }
    }
    if say {
        println!(
            "connecting to {} host(s) of {source} and reading their limits…",
            plan::run_hosts(&inventory).len()
        );
    }
    let mut reached = gather::connect_and_gather(&inventory, &hosts.connect, hosts.forks());
    let mut plan = plan::build(
        &plan::Ask {
            inventory: &inventory,
            source: &source,
            connections: demand.connections,
            first_port: demand.first_port,
            ports: demand.port_count,
            local_source_ips: demand.source_ips,
            models: demand.models,
            procs: demand.procs,
            idle_clients: demand.idle_clients,
        },
        &gather::facts_of(&reached),
    )?;
    measure_external(&mut plan, &mut reached);
    Ok(Survey {
        inventory,
        source,
        reached,
        plan,
    })
}

/// An external server whose pid is known is read now, before anything starts: its limits
/// predict where the run will stop (a finding that blocks when that is short of the target).
fn measure_external(plan: &mut plan::Plan, reached: &mut [(String, gather::Reached)]) {
    let server::UnderTest::External { pid: Some(src) } = &plan.server.under_test else {
        return;
    };
    let Some(i) = plan.hosts.iter().position(|h| h.role.is_server()) else {
        return;
    };
    let Some((_, Ok((t, _)))) = reached.get_mut(i) else {
        return;
    };
    let finding = match gather::server_tree(t.as_mut(), src) {
        Ok((pid, tree)) => {
            let m = gather::measure_server(t.as_mut(), &tree, pid);
            let f = server::ceiling_finding(&m, plan.connections);
            plan.server.measured = Some(m);
            f
        }
        Err(e) => capacity::Finding {
            setting: "the server under test".into(),
            found: e,
            needed: "its process on the server host, to measure it".into(),
            fix: "give the pid of the server's main process (--server-pid, c1m_server_pid) or its pid file".into(),
            blocks: true,
            stops_near: None,
        },
    };
    plan.hosts[i].findings.push(finding);
    plan.fits = plan
        .hosts
        .iter()
        .all(|h| h.findings.iter().all(|f| !f.blocks));
}

/// Runs `c1m check`: reads every host, prints the plan.
pub fn run(args: &CheckOptions) -> Result<CheckOutcome> {
    let p = survey(
        &args.hosts,
        Demand {
            connections: args.connections,
            first_port: args.first_port,
            port_count: args.port_count,
            source_ips: &args.source_ips,
            server: &args.server,
            models: &args.models,
            procs: None,
            idle_clients: false,
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
