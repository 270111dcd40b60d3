//! Before a run over an inventory: every host connected and read, the capacity plan printed
//! (a run that cannot fit is refused unless `--force`), the binaries deployed.

use crate::check::{self, facts::HostFacts, Plan};
use crate::run::deploy::{deploy, REMOTE_DIR};
use crate::run::{binaries, RunOptions};
use anyhow::{bail, Context, Result};
use c1m_ansible::connect::ConnectSettings;
use c1m_ansible::inventory::{self, Connection, Host};
use c1m_proto::fmt;
use c1m_transport::Transport;
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::PathBuf;

/// One host of the run, ready to start.
pub struct RunHost {
    pub host: Host,
    /// `server`, `client` or `server+client`.
    pub role: String,
    pub address: String,
    /// Connections this host opens (clients).
    pub share: u64,
    /// Greeting numbers start here on this client, so greetings are unique over the run.
    pub index_base: u64,
    pub source_ips: Vec<String>,
    pub facts: HostFacts,
    /// Where `c1m-server` and `c1m-client` are on the host.
    pub bin_dir: String,
    /// `c1m_window`: connects in flight on this client unless `--window` says otherwise. Slow
    /// hosts (VMs under emulation) drop SYNs when thousands are in flight.
    pub window: Option<u64>,
    /// The connection facts were gathered over; the engine's control thread takes it.
    pub control: Option<Box<dyn Transport>>,
}

impl RunHost {
    pub fn is_server(&self) -> bool {
        self.role.starts_with("server")
    }
    pub fn is_client(&self) -> bool {
        self.share > 0
    }
}

pub struct Prepared {
    pub inventory: String,
    pub conn: ConnectSettings,
    /// Server first, then the clients in inventory order.
    pub hosts: Vec<RunHost>,
    /// The address clients connect to.
    pub target: Ipv4Addr,
    pub plan: Plan,
    /// When `c1m run` began, for the time from the command to all clients connected.
    pub invoked: std::time::Instant,
}

/// `Err(code)` when the run must not start (the reason is already printed).
pub fn prepare(args: &RunOptions) -> Result<std::result::Result<Prepared, u8>> {
    let invoked = std::time::Instant::now();
    let path = args.hosts.inventory.clone().context("an inventory")?;
    let source = path.display().to_string();
    let inv = inventory::load(&path)?;
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if !args.source_ips.is_empty() {
        bail!("--source-ips is for runs on this machine; over an inventory, set the host var c1m_source_ips");
    }
    let conn = ConnectSettings {
        known_hosts: args.hosts.connect.known_hosts.clone(),
        accept_new: args.hosts.connect.accept_new,
        ..Default::default()
    };
    let hosts = check::run_hosts(&inv);
    println!(
        "connecting to {} host(s) of {source} and reading their limits…",
        hosts.len()
    );
    let reached = check::connect_and_gather(&inv, &conn);
    let gathered: Vec<(String, Result<HostFacts, String>)> = reached
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                r.as_ref().map(|(_, f)| f.clone()).map_err(Clone::clone),
            )
        })
        .collect();
    let plan = check::plan(&inv, &source, args.connections, args.port_count, &gathered)?;
    for h in plan.hosts.iter().filter(|h| h.client_share > 0) {
        if let Err(e) = c1m_client::targets::expand_ips(&h.source_ips) {
            bail!("{source}: host {}: c1m_source_ips: {e}", h.name);
        }
    }
    check::print_plan(&plan);
    if !plan.fits {
        if !args.force {
            eprintln!("c1m run: refusing to start: the run cannot fit (fix the ✗ lines above, or pass --force)");
            return Ok(Err(3));
        }
        if plan.hosts.iter().any(|h| h.error.is_some()) {
            eprintln!("c1m run: refusing to start: a host cannot be reached (--force does not cover that)");
            return Ok(Err(3));
        }
        println!("--force: starting anyway");
    }

    let local_bins = binaries::locate("c1m-server")?
        .parent()
        .map(PathBuf::from)
        .context("the directory of c1m-server")?;
    let mut run_hosts = Vec::new();
    let mut index_base = 0;
    for ((name, r), hp) in reached.into_iter().zip(&plan.hosts) {
        let (t, facts) = r.map_err(anyhow::Error::msg)?;
        let host = inv
            .host(&name)
            .context("host vanished from the inventory")?
            .clone();
        let local = host.connection() == Connection::Local;
        let bin_dir = if local {
            local_bins.to_string_lossy().into_owned()
        } else {
            bin_dir(&host)?
        };
        let window = window_of(&host)?;
        run_hosts.push(RunHost {
            window,
            address: address_of(&host),
            role: hp.role.clone(),
            share: hp.client_share,
            index_base,
            source_ips: hp.source_ips.clone(),
            facts,
            bin_dir,
            control: Some(t),
            host,
        });
        index_base += hp.client_share;
    }
    let server = run_hosts
        .iter()
        .find(|h| h.is_server())
        .context("no server host")?;
    let target = target_address(&server.host)?;
    deploy_all(&mut run_hosts, &local_bins)?;
    Ok(Ok(Prepared {
        inventory: source,
        conn,
        hosts: run_hosts,
        target,
        plan,
        invoked,
    }))
}

fn var<'a>(h: &'a Host, key: &str) -> Option<&'a str> {
    h.vars.get(key).and_then(|v| v.as_str())
}

/// `c1m_window`, a positive number (or a string holding one).
fn window_of(h: &Host) -> Result<Option<u64>> {
    let Some(v) = h.vars.get("c1m_window") else {
        return Ok(None);
    };
    let n = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| *n > 0);
    match n {
        Some(n) => Ok(Some(n)),
        None => bail!(
            "host {}: c1m_window must be a positive number of connects in flight, not {v}",
            h.name
        ),
    }
}

/// `ansible_host`, else the inventory name.
fn address_of(h: &Host) -> String {
    var(h, "ansible_host").unwrap_or(&h.name).to_string()
}

/// `c1m_bin_dir`, default [`REMOTE_DIR`]: an absolute path (it is quoted wherever it is used).
fn bin_dir(h: &Host) -> Result<String> {
    let dir = var(h, "c1m_bin_dir").unwrap_or(REMOTE_DIR);
    if !dir.starts_with('/') || dir.contains('\n') {
        bail!(
            "host {}: c1m_bin_dir must be an absolute path, not {dir:?}",
            h.name
        );
    }
    Ok(dir.trim_end_matches('/').to_string())
}

/// Where clients connect: `c1m_server_address`, else the server's `ansible_host` (127.0.0.1 for
/// a local server without either), resolved to IPv4 here.
fn target_address(server: &Host) -> Result<Ipv4Addr> {
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
        .with_context(|| {
            format!(
                "server {}: {name} has no IPv4 address; set c1m_server_address",
                server.name
            )
        })
}

/// Deploys to every SSH host in parallel; any host that cannot take or run the binaries stops
/// the run before anything starts.
fn deploy_all(hosts: &mut [RunHost], local_bins: &std::path::Path) -> Result<()> {
    let results: Vec<(String, std::result::Result<Option<String>, String>)> =
        std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter_mut()
                .map(|h| {
                    s.spawn(move || {
                        let name = h.host.name.clone();
                        if h.host.connection() == Connection::Local {
                            return (name, Ok(None));
                        }
                        let Some(t) = h.control.as_mut() else {
                            return (name, Err("no connection".into()));
                        };
                        let r = deploy(t.as_mut(), &h.facts, local_bins, &h.bin_dir).map(|d| {
                            Some(if d.uploaded.is_empty() {
                                format!(
                                    "{} unchanged (sha256 matches) in {}",
                                    d.unchanged.join(", "),
                                    h.bin_dir
                                )
                            } else {
                                format!(
                                    "uploaded {}{} to {}",
                                    d.uploaded.join(", "),
                                    if d.unchanged.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" ({} unchanged)", d.unchanged.join(", "))
                                    },
                                    h.bin_dir
                                )
                            })
                        });
                        (name, r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| ("?".into(), Err("deploy panicked".into())))
                })
                .collect()
        });
    let mut failed = Vec::new();
    for (name, r) in results {
        match r {
            Ok(Some(what)) => println!("deploy {name}: {what}"),
            Ok(None) => {}
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        bail!("deploy failed:\n  {}", failed.join("\n  "));
    }
    println!(
        "{} client host(s), {} connections each on average",
        hosts.iter().filter(|h| h.is_client()).count(),
        fmt::int(
            hosts.iter().map(|h| h.share).sum::<u64>()
                / hosts.iter().filter(|h| h.is_client()).count().max(1) as u64
        )
    );
    Ok(())
}
