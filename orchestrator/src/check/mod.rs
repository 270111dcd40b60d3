//! `c1m check`: the capacity plan of a run over an inventory, and every limit that would stop
//! it, each with its fix. Also the first step of every `c1m run -i`.

pub mod capacity;
pub mod facts;

use anyhow::{bail, Result};
use c1m_ansible::connect::{ConnectSettings, HostOptions};
use c1m_ansible::inventory::{self, Host, Inventory};
use c1m_proto::fmt;
use c1m_transport::Transport;
use capacity::{check_host, Finding, HostDemand};
use facts::HostFacts;
use serde::Serialize;

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

/// One host's part in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub name: String,
    /// `server`, `client` or `server+client`.
    pub role: String,
    pub sockets: u64,
    pub client_share: u64,
    pub source_ips: Vec<String>,
    pub facts: Option<HostFacts>,
    /// Set when the host could not be reached or read.
    pub error: Option<String>,
    pub findings: Vec<Finding>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub connections: u64,
    pub ports: u16,
    pub hosts: Vec<HostPlan>,
    pub fits: bool,
}

/// The hosts of a group, in inventory order.
pub fn group_hosts<'a>(inv: &'a Inventory, group: &str) -> Vec<&'a Host> {
    inv.hosts
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
        .collect()
}

/// A client's source addresses: `c1m_source_ips` (a list, or `A-B` ranges), else its address.
pub fn source_ips(h: &Host) -> Vec<String> {
    match h.vars.get("c1m_source_ips") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .collect(),
        Some(serde_json::Value::String(s)) => s.split(',').map(|s| s.trim().to_string()).collect(),
        _ => vec![h
            .vars
            .get("ansible_host")
            .and_then(|v| v.as_str())
            .unwrap_or(&h.name)
            .to_string()],
    }
}

/// Builds the plan: the connections split evenly over the clients; each host checked against
/// its own facts (`facts[i]` for `inv.hosts[i]`'s role below).
pub fn plan(
    inv: &Inventory,
    source: &str,
    connections: u64,
    ports: u16,
    gathered: &[(String, Result<HostFacts, String>)],
) -> Result<Plan> {
    let servers = group_hosts(inv, "server");
    let clients = group_hosts(inv, "clients");
    if servers.len() != 1 {
        bail!(
            "{source}: the `server` group must hold exactly one host (it holds {})",
            servers.len()
        );
    }
    if clients.is_empty() {
        bail!("{source}: the `clients` group holds no host");
    }
    let k = clients.len() as u64;
    let hint = if source.ends_with("(embedded)") {
        "run `c1m provision`".to_string()
    } else {
        format!("run `c1m provision -i {source}`")
    };
    let mut hosts = Vec::new();
    for (name, facts) in gathered {
        let is_server = servers.iter().any(|h| &h.name == name);
        let client_index = clients.iter().position(|h| &h.name == name);
        let share = client_index.map_or(0, |i| {
            connections / k + u64::from((i as u64) < connections % k)
        });
        let sockets = share + if is_server { connections } else { 0 };
        let role = match (is_server, client_index.is_some()) {
            (true, true) => "server+client",
            (true, false) => "server",
            _ => "client",
        };
        let host = inv.host(name);
        let local = host.is_some_and(|h| h.connection() == inventory::Connection::Local);
        let ips = match host.filter(|_| client_index.is_some()) {
            // A local client without c1m_source_ips gets the run's own 127.x choice.
            Some(h) if local && !h.vars.contains_key("c1m_source_ips") => {
                crate::run::local::auto_source_ips(share, ports)
            }
            Some(h) => source_ips(h),
            None => Vec::new(),
        };
        let ip_count = c1m_client::targets::expand_ips(&ips).map_or(ips.len(), |v| v.len());
        let (facts, error, findings) = match facts {
            Ok(f) => {
                let d = HostDemand {
                    sockets,
                    client_share: share,
                    server_sockets: if is_server { connections } else { 0 },
                    // One flow per connection through this host, counted once per kernel.
                    tracked_flows: if tracking(f, local) {
                        if is_server {
                            connections
                        } else {
                            share
                        }
                    } else {
                        0
                    },
                    source_ips: ip_count,
                    ports,
                    provision_hint: Some(hint.clone()),
                };
                (Some(f.clone()), None, check_host(&d, f))
            }
            Err(e) => (
                None,
                Some(e.clone()),
                vec![Finding {
                    setting: "reachable".into(),
                    found: e.clone(),
                    needed: "a working connection".into(),
                    fix: "check the address, the SSH key and the host key (see the error)".into(),
                    blocks: true,
                }],
            ),
        };
        hosts.push(HostPlan {
            name: name.clone(),
            role: role.into(),
            sockets,
            client_share: share,
            source_ips: ips,
            facts,
            error,
            findings,
        });
    }
    let fits = hosts.iter().all(|h| h.findings.iter().all(|f| !f.blocks));
    Ok(Plan {
        connections,
        ports,
        hosts,
        fits,
    })
}

/// Whether conntrack tracks the test's flows on a host: asked of the kernel directly here, read
/// from the table's fill elsewhere.
fn tracking(f: &HostFacts, local: bool) -> bool {
    if local {
        crate::run::preflight::conntrack_tracks_loopback()
    } else {
        f.conntrack_tracking()
    }
}

/// The hosts of the `server` and `clients` groups, each once, server first.
pub fn run_hosts(inv: &Inventory) -> Vec<&Host> {
    let mut hosts: Vec<&Host> = group_hosts(inv, "server");
    for c in group_hosts(inv, "clients") {
        if !hosts.iter().any(|h| h.name == c.name) {
            hosts.push(c);
        }
    }
    hosts
}

/// A host's open connection and its facts, or why it could not be had.
pub type Reached = Result<(Box<dyn Transport>, HostFacts), String>;

/// Connects to every run host in parallel and reads its facts, keeping the connections for
/// what follows (a run deploys and controls over them).
pub fn connect_and_gather(inv: &Inventory, conn: &ConnectSettings) -> Vec<(String, Reached)> {
    let hosts = run_hosts(inv);
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                s.spawn(move || {
                    let r = conn
                        .connect(h)
                        .map_err(|e| e.to_string())
                        .and_then(|mut t| match facts::gather(t.as_mut()) {
                            Ok(f) => Ok((t, f)),
                            Err(e) => Err(e.to_string()),
                        });
                    (h.name.clone(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&hosts)
            .map(|(handle, h)| {
                handle
                    .join()
                    .unwrap_or_else(|_| (h.name.clone(), Err("fact gathering panicked".into())))
            })
            .collect()
    })
}

/// Reads every host of the inventory's `server` and `clients` groups, in parallel.
pub fn gather_all(
    inv: &Inventory,
    conn: &ConnectSettings,
) -> Vec<(String, Result<HostFacts, String>)> {
    connect_and_gather(inv, conn)
        .into_iter()
        .map(|(name, r)| (name, r.map(|(_, f)| f)))
        .collect()
}

pub fn print_plan(p: &Plan) {
    let clients = p.hosts.iter().filter(|h| h.client_share > 0).count();
    println!(
        "capacity plan for {} connections over {} server port(s): {} client(s)",
        fmt::int(p.connections),
        p.ports,
        clients
    );
    for h in &p.hosts {
        let addr = h
            .facts
            .as_ref()
            .map(|f| f.addresses.join(" "))
            .unwrap_or_default();
        println!(
            "\n{} ({}{}): {} sockets{}",
            h.name,
            h.role,
            if addr.is_empty() {
                String::new()
            } else {
                format!(", {addr}")
            },
            fmt::int(h.sockets),
            if h.client_share > 0 {
                format!(
                    ", opens {} from {}",
                    fmt::int(h.client_share),
                    h.source_ips.join(" ")
                )
            } else {
                String::new()
            }
        );
        for f in &h.findings {
            println!("  {f}");
        }
    }
    let blocking = p
        .hosts
        .iter()
        .flat_map(|h| &h.findings)
        .filter(|f| f.blocks)
        .count();
    if p.fits {
        println!("\nthe plan fits");
    } else {
        println!("\n{blocking} limit(s) stop this run: fix the ✗ lines above");
    }
}

/// Runs `c1m check`: reads every host, prints the plan.
pub fn run(args: &CheckOptions) -> Result<CheckOutcome> {
    let (inv, source) = args.hosts.load_limited()?;
    let gathered = gather_all(&inv, &args.hosts.connect);
    let p = plan(&inv, &source, args.connections, args.port_count, &gathered)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print_plan(&p);
    }
    Ok(if p.hosts.iter().any(|h| h.error.is_some()) {
        CheckOutcome::Unreachable
    } else if p.fits {
        CheckOutcome::Fits
    } else {
        CheckOutcome::DoesNotFit
    })
}
