//! Before anything starts: every host connected and read, the capacity plan built, printed and
//! judged (a run that cannot fit is refused unless `--force`; an unreachable host always), the
//! binaries deployed where they are not already.

use super::deploy::{deploy, Deployed};
use super::{binaries, RunEnd, RunOptions};
use crate::check::facts::HostFacts;
use crate::check::plan::{self, HostPlan, Plan, Role};
use crate::check::{survey, Demand, Survey};
use anyhow::{Context, Result};
use c1m_ansible::connect::ConnectSettings;
use c1m_ansible::inventory::{Connection, Host};
use c1m_proto::fmt;
use c1m_transport::pace::{self, Pace};
use c1m_transport::Transport;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// One host of the run, ready to start.
pub struct RunHost {
    pub host: Host,
    pub role: Role,
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
    /// How fast the host answered over SSH when the binaries were deployed; `None` for this
    /// machine. The engine's waits on the host are derived from it.
    pub pace: Option<Pace>,
}

impl RunHost {
    pub fn is_server(&self) -> bool {
        self.role.is_server()
    }
    pub fn is_client(&self) -> bool {
        self.share > 0
    }
    /// This machine, without SSH.
    pub fn is_local(&self) -> bool {
        self.host.connection() == Connection::Local
    }
    /// How long to wait for a step on this host that costs about `execs` program starts there,
    /// never less than `floor`: a host three times slower gets three times longer, whatever
    /// the machine the floor was chosen on.
    pub fn budget(&self, floor: Duration, execs: u32) -> Duration {
        self.pace.map_or(floor, |p| p.budget(floor, execs))
    }
}

/// A run ready to start.
pub struct Prepared {
    /// How messages and run.json name the inventory.
    pub inventory: String,
    pub conn: ConnectSettings,
    /// Server first, then the clients in inventory order.
    pub hosts: Vec<RunHost>,
    /// The address clients connect to.
    pub target: Ipv4Addr,
    pub plan: Plan,
    /// When `c1m run` began, for the time from the command to all clients connected.
    pub invoked: Instant,
}

/// Whether the run may start.
pub enum Readiness {
    Ready(Box<Prepared>),
    /// Refused before anything started; the reason is printed.
    Refused(RunEnd),
}

/// Connects, plans, judges and deploys.
pub fn prepare(args: &RunOptions) -> Result<Readiness> {
    let invoked = Instant::now();
    let Survey {
        inventory: inv,
        source,
        reached,
        plan,
    } = survey(
        &args.hosts,
        Demand {
            connections: args.connections,
            first_port: args.first_port,
            port_count: args.port_count,
            source_ips: &args.source_ips,
            server: &args.server,
            models: &[args.model()],
            procs: args.procs,
            idle_clients: args.protocol.protocol.sends_nothing(),
        },
        true,
    )?;
    let conn = args.hosts.connect.clone();
    plan::print(&plan);
    if let Some(end) = refusal(&plan, args.force) {
        return Ok(Readiness::Refused(end));
    }
    let target = plan.target.context("the plan has no server address")?;
    let local_bins = binaries::dir()?;
    let mut run_hosts = Vec::new();
    let mut index_base = 0;
    for ((name, r), hp) in reached.into_iter().zip(&plan.hosts) {
        let (t, facts) = r.map_err(anyhow::Error::msg)?;
        let host = inv
            .host(&name)
            .with_context(|| format!("host {name} vanished from the inventory"))?
            .clone();
        run_hosts.push(run_host(host, hp, facts, t, index_base, &local_bins));
        index_base += hp.client_share;
    }
    deploy_all(&mut run_hosts, &local_bins, args.hosts.forks())?;
    Ok(Readiness::Ready(Box::new(Prepared {
        inventory: if args.hosts.inventory.is_some() {
            source
        } else {
            "local".into()
        },
        conn,
        hosts: run_hosts,
        target,
        plan,
        invoked,
    })))
}

/// Why the run must not start, printed; `None` when it may.
fn refusal(plan: &Plan, force: bool) -> Option<RunEnd> {
    if plan.hosts.iter().any(|h| h.error.is_some()) {
        eprintln!(
            "c1m run: refusing to start: a host cannot be reached (--force does not cover that)"
        );
        return Some(RunEnd::Unreachable);
    }
    if plan.fits {
        return None;
    }
    if !force {
        eprintln!("c1m run: refusing to start: the run cannot fit (fix the ✗ lines above, or pass --force)");
        return Some(RunEnd::Refused);
    }
    let bad_vars: Vec<&str> = plan
        .hosts
        .iter()
        .flat_map(|h| &h.findings)
        .filter(|f| f.blocks && (f.setting.starts_with("c1m_") || f.setting == "--source-ips"))
        .map(|f| f.setting.as_str())
        .collect();
    if !bad_vars.is_empty() {
        eprintln!(
            "c1m run: refusing to start: {} must be corrected (--force covers limits, not values it cannot use)",
            bad_vars.join(", ")
        );
        return Some(RunEnd::Refused);
    }
    println!("--force: starting anyway");
    None
}

fn run_host(
    host: Host,
    hp: &HostPlan,
    facts: HostFacts,
    control: Box<dyn Transport>,
    index_base: u64,
    local_bins: &Path,
) -> RunHost {
    // A host that is this machine runs the binaries from where they were built.
    let bin_dir = if host.connection() == Connection::Local {
        local_bins.to_string_lossy().into_owned()
    } else {
        hp.bin_dir.clone()
    };
    RunHost {
        role: hp.role,
        address: hp.address.clone(),
        share: hp.client_share,
        index_base,
        source_ips: hp.source_ips.clone(),
        facts,
        bin_dir,
        window: hp.window,
        control: Some(control),
        pace: None,
        host,
    }
}

/// What one host's deploy did, for a person.
fn deployed_line(d: &Deployed, dir: &str) -> String {
    if d.uploaded.is_empty() {
        format!(
            "{} unchanged (sha256 matches) in {dir}",
            d.unchanged.join(", ")
        )
    } else if d.unchanged.is_empty() {
        format!("uploaded {} to {dir}", d.uploaded.join(", "))
    } else {
        format!(
            "uploaded {} ({} unchanged) to {dir}",
            d.uploaded.join(", "),
            d.unchanged.join(", ")
        )
    }
}

/// A host's measured pace, for the deploy line.
fn pace_words(p: &Pace) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    match p.round_trip {
        Some(rt) => format!("answers in {}, starts a program in {}", ms(rt), ms(p.exec)),
        None => format!("starts a program in {}", ms(p.exec)),
    }
}

/// Deploys to every SSH host, `forks` at a time; any host that cannot take or run the binaries
/// stops the run before anything starts.
fn deploy_all(hosts: &mut [RunHost], local_bins: &Path, forks: usize) -> Result<()> {
    let remote: Vec<&mut RunHost> = hosts.iter_mut().filter(|h| !h.is_local()).collect();
    let results: Vec<(String, std::result::Result<String, String>)> = std::thread::scope(|s| {
        let mut results = Vec::new();
        let mut queue = remote.into_iter().peekable();
        while queue.peek().is_some() {
            let batch: Vec<_> = queue
                .by_ref()
                .take(forks.max(1))
                .map(|h| {
                    s.spawn(move || {
                        let name = h.host.name.clone();
                        let Some(t) = h.control.as_mut() else {
                            return (name, Err("no connection".into()));
                        };
                        let r = deploy(t.as_mut(), &h.facts, local_bins, &h.bin_dir)
                            .map(|d| deployed_line(&d, &h.bin_dir))
                            .and_then(|line| {
                                // Three samples of each exchange; the fastest is the host.
                                let p = pace::measure(t.as_mut(), 3).map_err(|e| {
                                    format!("{name}: measuring how fast it answers: {e}")
                                })?;
                                h.pace = Some(p);
                                Ok(format!("{line}; {}", pace_words(&p)))
                            });
                        (name, r)
                    })
                })
                .collect();
            for b in batch {
                results.push(
                    b.join()
                        .unwrap_or_else(|_| ("?".into(), Err("deploy panicked".into()))),
                );
            }
        }
        results
    });
    let mut failed = Vec::new();
    for (name, r) in results {
        match r {
            Ok(what) => println!("deploy {name}: {what}"),
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("deploy failed:\n  {}", failed.join("\n  "));
    }
    let clients = hosts.iter().filter(|h| h.is_client()).count().max(1) as u64;
    if clients > 1 {
        println!(
            "{clients} client hosts, {} connections each on average",
            fmt::int(hosts.iter().map(|h| h.share).sum::<u64>() / clients)
        );
    }
    Ok(())
}
