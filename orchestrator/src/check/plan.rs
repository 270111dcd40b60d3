//! The capacity plan of a run: which host plays which part, each client's share and source
//! addresses, the run's own host vars (`c1m_*`) checked, and every limit that would stop the
//! run as a finding with its fix. `c1m check` prints it; `c1m run` prints the same plan and
//! refuses to start when it does not fit — one judgement for both.

use super::capacity::{check_host, model_ceilings, Finding, HostDemand};
use super::facts::HostFacts;
use super::loopback;
use super::server::{self, ServerPlan, UnderTest};
use anyhow::{bail, Result};
use c1m_ansible::inventory::{Connection, Host, Inventory};
use c1m_proto::launch::share;
use c1m_proto::model::ServerModel;
use c1m_proto::{addrs, fmt};
use serde::Serialize;
use std::net::{Ipv4Addr, ToSocketAddrs};

/// Where `c1m-server` and `c1m-client` go on a host without `c1m_bin_dir`.
pub const DEFAULT_BIN_DIR: &str = "/var/lib/c1m/bin";

/// A host's part in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    #[serde(rename = "server")]
    Server,
    #[serde(rename = "client")]
    Client,
    /// Both ends on one kernel: a run on this machine alone.
    #[serde(rename = "server+client")]
    ServerAndClient,
}

impl Role {
    pub fn is_server(self) -> bool {
        matches!(self, Role::Server | Role::ServerAndClient)
    }
    pub fn is_client(self) -> bool {
        matches!(self, Role::Client | Role::ServerAndClient)
    }
    /// The word run.json and the plan use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::ServerAndClient => "server+client",
        }
    }
}

/// One host's part in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub name: String,
    pub role: Role,
    /// `ansible_host`, else the inventory name.
    pub address: String,
    pub sockets: u64,
    pub client_share: u64,
    pub source_ips: Vec<String>,
    /// `c1m_window`: connects in flight on this client unless `--window` says otherwise.
    pub window: Option<u64>,
    /// `c1m_bin_dir`: where the binaries go on the host.
    pub bin_dir: String,
    pub facts: Option<HostFacts>,
    /// Set when the host could not be reached or read.
    pub error: Option<String>,
    pub findings: Vec<Finding>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub connections: u64,
    /// How many server ports (the server's own, see `server`).
    pub ports: u16,
    /// The server under test and its ports.
    pub server: ServerPlan,
    /// The address every client connects to (`None` when the server's cannot be resolved; a
    /// finding says why).
    pub target: Option<Ipv4Addr>,
    pub hosts: Vec<HostPlan>,
    pub fits: bool,
}

/// What a plan is made for.
pub struct Ask<'a> {
    pub inventory: &'a Inventory,
    /// How messages name the inventory.
    pub source: &'a str,
    pub connections: u64,
    /// `--first-port`, `--port-count`: the ports of c1m-server, unless the server host's
    /// `c1m_server_ports` names others.
    pub first_port: u16,
    pub ports: u16,
    /// `--source-ips`: the addresses of a client on this machine.
    pub local_source_ips: &'a [String],
    /// The server models the run is for: each one's own ceilings are findings on the server.
    pub models: &'a [ServerModel],
    /// `--procs`: worker processes (`prefork-sync` holds one connection per process).
    pub procs: Option<usize>,
    /// The clients send nothing (`--protocol idle`).
    pub idle_clients: bool,
}

/// The hosts of a group, in inventory order.
pub fn group_hosts<'a>(inv: &'a Inventory, group: &str) -> Vec<&'a Host> {
    inv.hosts
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
        .collect()
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

/// The `server` group's one host and the `clients` group, or why the inventory cannot run.
fn roles<'a>(ask: &Ask<'a>) -> Result<(&'a Host, Vec<&'a Host>)> {
    let servers = group_hosts(ask.inventory, "server");
    let clients = group_hosts(ask.inventory, "clients");
    if servers.len() != 1 {
        bail!(
            "{}: the `server` group must hold exactly one host (it holds {})",
            ask.source,
            servers.len()
        );
    }
    if clients.is_empty() {
        bail!("{}: the `clients` group holds no host", ask.source);
    }
    Ok((servers[0], clients))
}

/// Builds the plan: the connections split evenly over the clients; each host checked against
/// its own facts (`gathered` holds them by host name, in [`run_hosts`] order).
pub fn build(ask: &Ask, gathered: &[(String, Result<HostFacts, String>)]) -> Result<Plan> {
    let (server, clients) = roles(ask)?;
    if !ask.local_source_ips.is_empty()
        && !clients.iter().any(|h| h.connection() == Connection::Local)
    {
        bail!(
            "--source-ips is for a client on this machine; over {}, set the host var c1m_source_ips",
            ask.source
        );
    }
    let target = target_address(server);
    let mut server_findings = Vec::new();
    let server_plan = server::from_vars(server, (ask.first_port, ask.ports), &mut server_findings);
    let ask = &Ask {
        ports: server_plan.port_count,
        ..*ask
    };
    let mut hosts = Vec::new();
    for (name, facts) in gathered {
        let Some(host) = ask.inventory.host(name) else {
            bail!("{}: host {name} vanished from the inventory", ask.source);
        };
        let client_index = clients.iter().position(|h| h.name == *name);
        let role = match (server.name == *name, client_index.is_some()) {
            (true, true) => Role::ServerAndClient,
            (true, false) => Role::Server,
            _ => Role::Client,
        };
        let share = client_index.map_or(0, |i| share(ask.connections, clients.len(), i));
        let mut hp = host_plan(
            ask,
            host,
            role,
            share,
            &server_plan.under_test,
            &target,
            facts,
        );
        if role.is_server() {
            hp.findings.append(&mut server_findings);
            if let (UnderTest::Command { cmd, .. }, Ok(f)) = (&server_plan.under_test, facts) {
                hp.findings.push(server::inherited_finding(
                    &server::program_of(cmd),
                    f.nofile_soft,
                    f.nofile_hard,
                ));
            }
        }
        hosts.push(hp);
    }
    let fits = hosts.iter().all(|h| h.findings.iter().all(|f| !f.blocks));
    Ok(Plan {
        connections: ask.connections,
        ports: ask.ports,
        server: server_plan,
        target: target.ok(),
        hosts,
        fits,
    })
}

fn host_plan(
    ask: &Ask,
    host: &Host,
    role: Role,
    share: u64,
    under_test: &UnderTest,
    target: &Result<Ipv4Addr, String>,
    facts: &Result<HostFacts, String>,
) -> HostPlan {
    let local = host.connection() == Connection::Local;
    let mut findings = Vec::new();
    let source_ips = if role.is_client() {
        client_sources(ask, host, local, share, target, &mut findings)
    } else {
        Vec::new()
    };
    let window = window_of(host, &mut findings);
    let bin_dir = bin_dir_of(host, &mut findings);
    if role.is_server() {
        if let Err(why) = target {
            findings.push(var_finding(
                "c1m_server_address",
                why,
                "an IPv4 address clients reach the server at",
                "set c1m_server_address (or ansible_host) on the server host",
            ));
        }
    }
    let sockets = share + if role.is_server() { ask.connections } else { 0 };
    let (facts, error) = match facts {
        Ok(f) => {
            let tracked = if tracking(f, local) {
                if role.is_server() {
                    ask.connections
                } else {
                    share
                }
            } else {
                0
            };
            // Only c1m-server's fd tables are c1m's to size; another server's limits are its
            // own, judged from /proc (server::ceiling_finding).
            let c1m_server = role.is_server() && *under_test == UnderTest::C1mServer;
            let demand = HostDemand {
                sockets,
                client_share: share,
                server_sockets: if c1m_server { ask.connections } else { 0 },
                tracked_flows: tracked,
                source_ips: addrs::expand_ips(&source_ips).map_or(0, |v| v.len()),
                ports: ask.ports,
                provision_hint: Some(provision_hint(ask.source)),
            };
            findings.extend(check_host(&demand, f));
            // A model's own ceilings are c1m-server's; another server has its own (above).
            if c1m_server {
                let limits = f.host_limits(ask.procs, ask.idle_clients);
                for &m in ask.models {
                    findings.extend(model_ceilings(m, ask.ports, ask.connections, &limits));
                }
            }
            (Some(f.clone()), None)
        }
        Err(e) => {
            findings.push(Finding {
                setting: "reachable".into(),
                found: e.clone(),
                needed: "a working connection".into(),
                fix: "check the address, the SSH key and the host key (see the error)".into(),
                blocks: true,
                stops_near: None,
            });
            (None, Some(e.clone()))
        }
    };
    HostPlan {
        name: host.name.clone(),
        role,
        address: address_of(host),
        sockets,
        client_share: share,
        source_ips,
        window,
        bin_dir,
        facts,
        error,
        findings,
    }
}

fn provision_hint(source: &str) -> String {
    if source.ends_with("(embedded)") {
        "run `c1m provision`".to_string()
    } else {
        format!("run `c1m provision -i {source}`")
    }
}

/// A blocking finding about one of the run's host vars.
fn var_finding(var: &str, found: &str, needed: &str, fix: &str) -> Finding {
    Finding {
        setting: var.into(),
        found: found.into(),
        needed: needed.into(),
        fix: fix.into(),
        blocks: true,
        stops_near: None,
    }
}

/// A client's source addresses, checked: `--source-ips` (this machine), `c1m_source_ips`, the
/// run's own loopback choice for a client on this machine, else its address.
fn client_sources(
    ask: &Ask,
    host: &Host,
    local: bool,
    share: u64,
    target: &Result<Ipv4Addr, String>,
    findings: &mut Vec<Finding>,
) -> Vec<String> {
    let (ips, var) = if local && !ask.local_source_ips.is_empty() {
        (ask.local_source_ips.to_vec(), "--source-ips")
    } else if let Some(v) = host.vars.get("c1m_source_ips") {
        (source_ips_var(v), "c1m_source_ips")
    } else if local && target.as_ref().is_ok_and(|t| t.is_loopback()) {
        (loopback::auto_source_ips(share, ask.ports), "--source-ips")
    } else {
        (vec![address_of(host)], "ansible_host")
    };
    match addrs::expand_ips(&ips) {
        Err(e) => findings.push(var_finding(
            var,
            &e,
            "IPv4 addresses (`A`, or a range `A-B`)",
            &format!("correct {var} of host {}", host.name),
        )),
        Ok(addrs) if target.as_ref().is_ok_and(|t| t.is_loopback()) => {
            if let Some(bad) = addrs.iter().find(|ip| !ip.is_loopback()) {
                findings.push(var_finding(
                    var,
                    &format!("{bad}, which is not a loopback address"),
                    "addresses in 127.0.0.0/8: the server is reached over loopback",
                    "give loopback source addresses, or let the run choose them",
                ));
            }
        }
        Ok(_) => {}
    }
    ips
}

/// `c1m_source_ips`: a list, or a comma-separated string of `A` and `A-B` items.
fn source_ips_var(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .collect(),
        serde_json::Value::String(s) => s.split(',').map(|s| s.trim().to_string()).collect(),
        other => vec![other.to_string()],
    }
}

/// `c1m_window`, a positive number (or a string holding one).
fn window_of(h: &Host, findings: &mut Vec<Finding>) -> Option<u64> {
    let v = h.vars.get("c1m_window")?;
    let n = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| *n > 0);
    if n.is_none() {
        findings.push(var_finding(
            "c1m_window",
            &v.to_string(),
            "a positive number of connects in flight",
            &format!("correct c1m_window of host {}", h.name),
        ));
    }
    n
}

fn var<'a>(h: &'a Host, key: &str) -> Option<&'a str> {
    h.vars.get(key).and_then(|v| v.as_str())
}

/// `ansible_host`, else the inventory name.
pub fn address_of(h: &Host) -> String {
    var(h, "ansible_host").unwrap_or(&h.name).to_string()
}

/// `c1m_bin_dir`, default [`DEFAULT_BIN_DIR`]: an absolute path (it is quoted wherever it is
/// used).
fn bin_dir_of(h: &Host, findings: &mut Vec<Finding>) -> String {
    let dir = var(h, "c1m_bin_dir").unwrap_or(DEFAULT_BIN_DIR);
    if !dir.starts_with('/') || dir.contains('\n') {
        findings.push(var_finding(
            "c1m_bin_dir",
            &format!("{dir:?}"),
            "an absolute path",
            &format!("correct c1m_bin_dir of host {}", h.name),
        ));
    }
    dir.trim_end_matches('/').to_string()
}

/// Where clients connect: `c1m_server_address`, else the server's `ansible_host` (127.0.0.1 for
/// a server on this machine without either), resolved to IPv4 here.
fn target_address(server: &Host) -> Result<Ipv4Addr, String> {
    let given = var(server, "c1m_server_address")
        .or_else(|| var(server, "ansible_host"))
        .map(str::to_string);
    let name = match given {
        Some(a) => a,
        None if server.connection() == Connection::Local => return Ok(Ipv4Addr::LOCALHOST),
        None => server.name.clone(),
    };
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| {
            a.find_map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                _ => None,
            })
        })
        .ok_or_else(|| format!("{name}, which has no IPv4 address"))
}

/// Whether conntrack tracks the test's flows on a host: asked of the kernel directly here, read
/// from the table's fill elsewhere.
fn tracking(f: &HostFacts, local: bool) -> bool {
    if local {
        loopback::conntrack_tracks_loopback()
    } else {
        f.conntrack_tracking()
    }
}

/// Prints the plan for a person.
pub fn print(p: &Plan) {
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
            h.role.as_str(),
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
