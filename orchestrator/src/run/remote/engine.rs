//! The live part of a run over hosts: start, follow, hold, tear down.

use super::control::{stop_budget, Control, Reconnect};
use super::finish;
use super::prepare::{Prepared, RunHost};
use super::proc::{Ended, RemoteProc, Role};
use super::Msg;
use crate::run::sampler::{kernel_total, KernelSample};
use crate::run::track::Track;
use crate::run::view::{Frame, HostFrame, HostsView};
use crate::run::RunOptions;
use anyhow::Result;
use c1m_ansible::connect::ConnectSettings;
use c1m_proto::fmt;
use c1m_proto::stats::LayoutLine;
use c1m_rundir::{self, Event, HostSample, KernelMemory};
use c1m_transport::shell_quote;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How often the binaries report: four lines per sample, so every sample is fresh.
const STATS_MS: u64 = 250;
/// A stream session proves its host alive this often and gives it up after this long silent:
/// a host that dies mid-run is declared lost in about half a minute, not never.
const KEEPALIVE: Duration = Duration::from_secs(5);
const DEAD_AFTER: Duration = Duration::from_secs(30);
/// Binding every port takes well under a second on hardware; TCG guests are slower.
const SERVER_READY: Duration = Duration::from_secs(120);
/// How long stopped binaries get to print their summaries and exit before their groups are
/// signalled. Closing a third of a million sockets takes seconds on a slow guest.
const GRACE: Duration = Duration::from_secs(30);

/// A binary started on a host.
pub struct Running {
    proc: RemoteProc,
    pub pgid: Option<u32>,
    pub ended: Option<Ended>,
}

/// Everything the engine knows about one host.
pub struct HostState {
    pub run: RunHost,
    pub dir: PathBuf,
    pub track: Track,
    pub server: Option<Running>,
    pub client: Option<Running>,
    control: Option<Control>,
    pub kernel_base: Option<KernelSample>,
    pub kernel_now: Option<KernelSample>,
    cpu_prev: Option<(u64, u64)>,
    /// (verified, client uptime) at the last rate computation.
    rate_point: (u64, f64),
    pub rate: f64,
    pub failure: Option<String>,
    /// What teardown found of this host's process groups.
    pub teardown: Vec<String>,
    tearing_down: bool,
}

impl HostState {
    fn kernel_delta(&self) -> Option<KernelMemory> {
        let (now, base) = (self.kernel_now.as_ref()?, self.kernel_base.as_ref()?);
        let mut d = now.delta(base);
        d.both_ends = self.run.is_server() && self.run.is_client();
        Some(d)
    }

    fn running(&self, role: Role) -> Option<&Running> {
        match role {
            Role::Server => self.server.as_ref(),
            Role::Client => self.client.as_ref(),
        }
    }

    fn running_mut(&mut self, role: Role) -> Option<&mut Running> {
        match role {
            Role::Server => self.server.as_mut(),
            Role::Client => self.client.as_mut(),
        }
    }

    /// Errors its client and server counted (one of them is empty unless both run here).
    fn errors_total(&self) -> u64 {
        self.track.client.errors_total() + self.track.server.errors.values().sum::<u64>()
    }

    fn client_alive(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.ended.is_none())
    }
}

/// The run at its peak: the figures memory per connection is computed from.
#[derive(Default)]
pub struct Peak {
    pub established: u64,
    pub server_open: u64,
    pub server_rss: u64,
    pub server_kernel: KernelMemory,
    pub rate: f64,
}

/// How the live phase ended.
pub struct Outcome {
    pub outcome: &'static str,
    pub reason: Option<String>,
}

/// When the target was reached: (seconds since the clients were started, seconds since
/// `c1m run` began).
pub type Reached = Option<(f64, f64)>;

/// One line about a binary's end, for failures and reasons.
fn describe(host: &str, role: Role, e: &Ended) -> String {
    match e {
        Ended::Exited(status, Some(last)) => {
            format!(
                "{} on {host} exited with status {status}: {last}",
                role.binary()
            )
        }
        Ended::Exited(status, None) => {
            format!("{} on {host} exited with status {status}", role.binary())
        }
        Ended::Lost(why) => format!("lost {host} ({}): {why}", role.binary()),
    }
}

fn command(bin_dir: &str, role: Role, args: &[String]) -> String {
    let bin = shell_quote(&format!("{bin_dir}/{}", role.binary()));
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    // `exec`: the binary takes the shell's place, so the group sshd made is the binary's.
    format!("exec {bin} {}", args.join(" "))
}

fn server_args(args: &RunOptions) -> Vec<String> {
    let mut a = vec![
        "--bind=0.0.0.0".to_string(),
        format!("--port={}", args.first_port),
        format!("--ports={}", args.port_count),
        format!("--connections={}", args.connections),
        format!("--interval-ms={STATS_MS}"),
        "--stop-on-eof".into(),
    ];
    if let Some(p) = args.procs {
        a.push(format!("--procs={p}"));
    }
    a
}

fn client_args(args: &RunOptions, h: &RunHost, target: std::net::Ipv4Addr) -> Vec<String> {
    let mut a = vec![
        "--json".to_string(),
        format!("--target={target}"),
        format!("--port={}", args.first_port),
        format!("--ports={}", args.port_count),
        format!("--connections={}", h.share),
        format!("--source-ips={}", h.source_ips.join(",")),
        format!("--index-base={}", h.index_base),
        "--hold=forever".into(),
        format!("--interval-ms={STATS_MS}"),
        "--stop-on-eof".into(),
    ];
    if let Some(w) = args.window.or(h.window) {
        a.push(format!("--window={w}"));
    }
    if let Some(r) = args.rate {
        // Each client's part of the total rate, in proportion to its share.
        let part = (r as u128 * h.share as u128).div_ceil(args.connections.max(1) as u128);
        a.push(format!("--rate={}", part.max(1)));
    }
    if let Some(c1m_proto::duration::Span(Some(m))) = args.message_interval {
        a.push(format!("--message-interval={}ms", m.as_millis().max(1)));
    }
    if let Some(p) = args.procs {
        a.push(format!("--procs={p}"));
    }
    a
}

/// Opens a connection of its own for a binary's stream and starts it, in a blocking task: the
/// SSH handshake must not hold up the engine, and clients start in parallel.
fn start(
    conn: &ConnectSettings,
    h: &HostState,
    index: usize,
    role: Role,
    cmd: String,
    tx: &UnboundedSender<Msg>,
) -> tokio::task::JoinHandle<Result<Running, String>> {
    let (conn, host, dir, tx) = (conn.clone(), h.run.host.clone(), h.dir.clone(), tx.clone());
    tokio::task::spawn_blocking(move || {
        let mut t = conn.connect(&host).map_err(|e| e.to_string())?;
        t.set_liveness(KEEPALIVE, DEAD_AFTER);
        let proc = RemoteProc::start(t, index, role, cmd, &dir, tx)
            .map_err(|e| format!("{}: cannot start {}: {e}", host.name, role.binary()))?;
        Ok(Running {
            proc,
            pgid: None,
            ended: None,
        })
    })
}

/// What a message meant, when the engine must act on it.
enum Happened {
    Layout(usize, Role, LayoutLine),
    Ended(usize, Role),
    Nothing,
}

/// The peak is taken per line, not per tick: a run stopped between ticks still has its figure.
fn update_peak(hosts: &mut [HostState], peak: &mut Peak) {
    let established: u64 = hosts.iter().map(|h| h.track.client.open).sum();
    for h in hosts.iter_mut() {
        h.track.established_peak = h.track.established_peak.max(h.track.client.open);
        h.track.server_open_peak = h.track.server_open_peak.max(h.track.server.open);
    }
    let Some(server) = hosts.iter().find(|h| h.run.is_server()) else {
        return;
    };
    peak.server_open = peak.server_open.max(server.track.server.open);
    if established >= peak.established {
        peak.established = established;
        peak.server_rss = server.track.server.rss_bytes;
        peak.server_kernel = server.kernel_delta().unwrap_or_default();
    }
}

/// Takes in one message: lines into the host's track, samples into its kernel and CPU figures.
fn absorb(hosts: &mut [HostState], msg: Msg, connecting: bool, peak: &mut Peak) -> Happened {
    match msg {
        Msg::Line { host, role, line } => {
            let layout = match role {
                Role::Server => hosts[host].track.server_line(&line),
                Role::Client => hosts[host].track.client_line(&line),
            };
            update_peak(hosts, peak);
            let h = &mut hosts[host];
            match layout {
                Some(l) => {
                    if let Some(r) = h.running_mut(role) {
                        r.pgid = Some(if l.pgid > 1 { l.pgid } else { l.pid });
                    }
                    match role {
                        Role::Server => h.track.server_layout = Some(l.clone()),
                        Role::Client => h.track.client_layout = Some(l.clone()),
                    }
                    Happened::Layout(host, role, l)
                }
                None => Happened::Nothing,
            }
        }
        Msg::Ended { host, role, ended } => {
            if let Some(r) = hosts[host].running_mut(role) {
                r.ended = Some(ended);
            }
            Happened::Ended(host, role)
        }
        Msg::Sample { host, sample } => {
            let h = &mut hosts[host];
            if let Some((all, idle)) = h.cpu_prev {
                let (da, di) = (
                    sample.cpu.0.saturating_sub(all),
                    sample.cpu.1.saturating_sub(idle),
                );
                if connecting && da > 0 {
                    h.track.cpu_busy.push(1.0 - di as f64 / da as f64);
                }
            }
            h.cpu_prev = Some(sample.cpu);
            h.kernel_now = Some(sample.kernel);
            Happened::Nothing
        }
        Msg::ControlLost { host, error } => {
            let h = &mut hosts[host];
            // In teardown a busy host often drops it (a kernel closing a million sockets); the
            // group check reconnects, and says so itself if it cannot confirm anything.
            if !h.tearing_down {
                h.teardown.push(format!("control connection lost: {error}"));
            }
            Happened::Nothing
        }
    }
}

pub async fn run(args: RunOptions, mut p: Prepared) -> Result<u8> {
    let n = args.connections;
    let started_at = chrono::Utc::now();
    let dir = c1m_rundir::create(&args.runs_dir, &started_at)?;
    println!("run directory: {}", dir.display());
    std::fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(&p.plan)?)?;
    let (tx, mut rx) = unbounded_channel::<Msg>();
    let mut hosts = Vec::new();
    for (i, mut run) in std::mem::take(&mut p.hosts).into_iter().enumerate() {
        let hdir = dir.join("hosts").join(&run.host.name);
        std::fs::create_dir_all(&hdir)?;
        std::fs::write(
            hdir.join("facts.json"),
            serde_json::to_vec_pretty(&run.facts)?,
        )?;
        let reconnect: Reconnect = {
            let (conn, host) = (p.conn.clone(), run.host.clone());
            Box::new(move || conn.connect(&host).map_err(|e| e.to_string()))
        };
        let control = run
            .control
            .take()
            .map(|t| Control::start(t, reconnect, i, Duration::from_secs(1), tx.clone()));
        hosts.push(HostState {
            run,
            dir: hdir,
            track: Track::default(),
            server: None,
            client: None,
            control,
            kernel_base: None,
            kernel_now: None,
            cpu_prev: None,
            rate_point: (0, 0.0),
            rate: 0.0,
            failure: None,
            teardown: Vec::new(),
            tearing_down: false,
        });
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let si = hosts.iter().position(|h| h.run.is_server()).unwrap_or(0);
    let mut peak = Peak::default();

    // The server, and every port listening, before any client.
    let cmd = command(&hosts[si].run.bin_dir, Role::Server, &server_args(&args));
    let mut ended: Option<Outcome> = None;
    match start(&p.conn, &hosts[si], si, Role::Server, cmd, &tx)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    {
        Ok(r) => hosts[si].server = Some(r),
        Err(e) => {
            ended = Some(Outcome {
                outcome: "failed",
                reason: Some(format!("cannot start the server: {e}")),
            })
        }
    }
    let deadline = tokio::time::Instant::now() + SERVER_READY;
    while ended.is_none() {
        tokio::select! {
            _ = &mut ctrl_c => ended = Some(Outcome { outcome: "interrupted", reason: Some("interrupted by Ctrl-C".into()) }),
            _ = tokio::time::sleep_until(deadline) => ended = Some(Outcome {
                outcome: "failed",
                reason: Some(format!("c1m-server on {} did not report listening within {} s", hosts[si].run.host.name, SERVER_READY.as_secs())),
            }),
            m = rx.recv() => match m.map(|m| absorb(&mut hosts, m, false, &mut peak)) {
                Some(Happened::Layout(h, Role::Server, l)) => {
                    println!(
                        "server {}: {} process(es) × {} thread(s) on {}:{}-{}, capacity {}",
                        hosts[h].run.host.name, l.procs, l.threads_per_proc, p.target, args.first_port,
                        u32::from(args.first_port) + u32::from(args.port_count) - 1, fmt::int(l.capacity)
                    );
                    break;
                }
                Some(Happened::Ended(h, role)) => {
                    let why = hosts[h].running(role).and_then(|r| r.ended.as_ref()).map(|e| describe(&hosts[h].run.host.name, role, e));
                    ended = Some(Outcome { outcome: "failed", reason: Some(format!("the server did not start: {}", why.unwrap_or_default())) });
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    let view_hosts: Vec<(String, u64)> = hosts
        .iter()
        .map(|h| (h.run.host.name.clone(), h.run.share))
        .collect();
    let clients_started = Instant::now();
    let mut hold_until: Option<Option<Instant>> = None;
    // (seconds since the clients were started, seconds since `c1m run` began) at the target.
    let mut reached: Reached = None;
    if ended.is_none() {
        // The baseline of kernel memory: the server host's first reading, taken at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hosts[si].kernel_now.is_none() && hosts[si].control.is_some() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => {
                    absorb(&mut hosts, m, false, &mut peak);
                }
                _ => break,
            }
        }
        for h in hosts.iter_mut() {
            h.kernel_base = h.kernel_now.clone();
        }
        if let Some(e) = hosts[si].server.as_ref().and_then(|s| s.ended.as_ref()) {
            let why = describe(&hosts[si].run.host.name, Role::Server, e);
            ended = Some(Outcome {
                outcome: "failed",
                reason: Some(format!(
                    "the server stopped before the clients started: {why}"
                )),
            });
        }
        // Every client at the same moment: all the starts in flight together.
        let starts: Vec<_> = hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.run.is_client())
            .map(|(i, h)| {
                let cmd = command(
                    &h.run.bin_dir,
                    Role::Client,
                    &client_args(&args, &h.run, p.target),
                );
                (i, start(&p.conn, h, i, Role::Client, cmd, &tx))
            })
            .collect();
        let mut results = Vec::new();
        for (i, fut) in starts {
            results.push((i, fut.await.unwrap_or_else(|e| Err(e.to_string()))));
        }
        for (i, r) in results {
            match r {
                Ok(run) => hosts[i].client = Some(run),
                Err(e) => hosts[i].failure = Some(format!("cannot start c1m-client: {e}")),
            }
        }
        if hosts.iter().all(|h| !h.client_alive()) {
            ended = Some(Outcome {
                outcome: "failed",
                reason: Some("no client could be started".into()),
            });
        }
    }

    let view = HostsView::new(n, &view_hosts, args.no_progress);
    let mut events = tokio::fs::File::create(dir.join("events.jsonl")).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while ended.is_none() {
        tokio::select! {
            _ = &mut ctrl_c => {
                view.note("Ctrl-C: stopping every client and the server…");
                ended = Some(Outcome { outcome: "interrupted", reason: Some("interrupted by Ctrl-C".into()) });
            }
            m = rx.recv() => match m.map(|m| absorb(&mut hosts, m, hold_until.is_none(), &mut peak)) {
                Some(Happened::Layout(h, Role::Client, l)) => view.note(&format!(
                    "client {}: {} process(es) × {} thread(s), {} connections from {}",
                    hosts[h].run.host.name, l.procs, l.threads_per_proc,
                    fmt::int(hosts[h].run.share), hosts[h].run.source_ips.join(",")
                )),
                Some(Happened::Ended(h, role)) => {
                    let name = hosts[h].run.host.name.clone();
                    let why = hosts[h].running(role).and_then(|r| r.ended.as_ref()).map(|e| describe(&name, role, e)).unwrap_or_default();
                    if role == Role::Server {
                        hosts[h].failure = Some(why.clone());
                        ended = Some(Outcome { outcome: "failed", reason: Some(format!("the server stopped during the run: {why}")) });
                    } else {
                        view.note(&format!("{name}: {why}; the other hosts go on"));
                        hosts[h].failure = Some(why);
                        if hosts.iter().all(|h| !h.client_alive()) {
                            ended = Some(Outcome { outcome: "failed", reason: Some("every client stopped before the end of the run".into()) });
                        }
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => {
                let t = clients_started.elapsed().as_secs_f64();
                let ev = sample_event(&mut hosts, t, si);
                let mut line = serde_json::to_string(&ev)?;
                line.push('\n');
                events.write_all(line.as_bytes()).await?;
                peak.rate = peak.rate.max(ev.connect_rate);
                update_peak(&mut hosts, &mut peak);
                let frames: Vec<HostFrame> = hosts.iter().map(|h| host_frame(h)).collect();
                view.show(&Frame {
                    t,
                    established: ev.established,
                    target: n,
                    rate: ev.connect_rate,
                    errors: ev.errors_total,
                    server_rss: ev.server_rss_bytes,
                    kernel_bytes: ev.kernel_bytes,
                }, &frames);
                if let Some(Some(until)) = hold_until {
                    if Instant::now() >= until {
                        ended = Some(Outcome { outcome: "reached", reason: None });
                    }
                }
            }
        }
        // Holding starts once every client still running has its share, seen line by line so
        // the time to target is the controller's own, start-up over SSH included.
        let live: Vec<&HostState> = hosts.iter().filter(|h| h.client_alive()).collect();
        let all_in =
            !live.is_empty() && live.iter().all(|h| h.track.client.verified >= h.run.share);
        if all_in && hold_until.is_none() && ended.is_none() {
            hold_until = Some(args.hold.0.map(|d| Instant::now() + d));
            let t = clients_started.elapsed().as_secs_f64();
            let verified: u64 = hosts.iter().map(|h| h.track.client.verified).sum();
            if verified >= n {
                reached = Some((t, p.invoked.elapsed().as_secs_f64()));
            }
            view.note(&format!(
                "{} {} verified connections {:.2} s after the clients were started; holding {}",
                if verified >= n {
                    "target reached:"
                } else {
                    "every running client has its share:"
                },
                fmt::int(verified),
                t,
                args.hold
                    .0
                    .map(|h| format!("{:.1} s", h.as_secs_f64()))
                    .unwrap_or_else(|| "until Ctrl-C".into())
            ));
        }
    }
    view.finish();
    let outcome = ended.unwrap_or(Outcome {
        outcome: "failed",
        reason: Some("the run's message channel closed".into()),
    });
    events.flush().await?;

    teardown(&mut hosts, &mut rx, &mut peak).await;
    let summary = finish::summarize(
        &args,
        &p.inventory,
        &hosts,
        si,
        &peak,
        started_at,
        (outcome, reached),
    );
    c1m_rundir::write_summary(&dir, &summary)?;
    finish::print(&summary, &hosts);
    let ok = summary.outcome == "reached"
        && !summary.partial
        && !summary.errors.contains_key("echo_mismatch");
    Ok(if ok { 0 } else { 1 })
}

fn host_frame(h: &HostState) -> HostFrame<'_> {
    let (open, rss) = if h.run.is_client() {
        (h.track.client.open, h.track.client.rss_bytes)
    } else {
        (h.track.server.open, h.track.server.rss_bytes)
    };
    let errors = h.errors_total();
    HostFrame {
        name: &h.run.host.name,
        role: &h.run.role,
        open,
        share: h.run.share,
        rate: h.rate,
        errors,
        rss,
        failure: h.failure.as_deref(),
    }
}

/// One second of the run: each client's rate on its own clock (its lines come every 250 ms, not
/// in step with ours), summed; kernel memory is the server host's.
fn sample_event(hosts: &mut [HostState], t: f64, si: usize) -> Event {
    let mut host_samples = BTreeMap::new();
    for h in hosts.iter_mut() {
        let c = &h.track.client;
        if h.run.is_client() && c.uptime_s > h.rate_point.1 {
            h.rate =
                c.verified.saturating_sub(h.rate_point.0) as f64 / (c.uptime_s - h.rate_point.1);
            h.rate_point = (c.verified, c.uptime_s);
        } else if !h.client_alive() {
            h.rate = 0.0;
        }
        h.track.rate_peak = h.track.rate_peak.max(h.rate);
        let errors = h.errors_total();
        host_samples.insert(
            h.run.host.name.clone(),
            HostSample {
                role: h.run.role.clone(),
                established: if h.run.is_client() {
                    h.track.client.open
                } else {
                    h.track.server.open
                },
                connect_rate: h.rate,
                errors_total: errors,
                rss_bytes: h.track.client.rss_bytes + h.track.server.rss_bytes,
            },
        );
    }
    let server = &hosts[si];
    let kd = server.kernel_delta().unwrap_or_default();
    let k = server.kernel_now.clone().unwrap_or_default();
    Event {
        t,
        ts_ms: c1m_proto::stats::now_ms(),
        established: hosts.iter().map(|h| h.track.client.open).sum(),
        connecting: hosts.iter().map(|h| h.track.client.connecting).sum(),
        server_open: server.track.server.open,
        connect_rate: hosts.iter().map(|h| h.rate).sum(),
        errors_total: host_samples.values().map(|s| s.errors_total).sum(),
        server_rss_bytes: server.track.server.rss_bytes,
        client_rss_bytes: hosts.iter().map(|h| h.track.client.rss_bytes).sum(),
        kernel_bytes: kernel_total(&kd),
        slab_bytes: k.slab(),
        tcp_mem_pages: k.tcp_mem_pages(),
        tcp_inuse: k.tcp_inuse(),
        hosts: host_samples,
    }
}

/// Clients first (their summaries carry the histograms), then the server; then every process
/// group c1m started is checked on its host and stopped if anything of it is left. Bounded in
/// time, so a second Ctrl-C is never needed.
async fn teardown(hosts: &mut [HostState], rx: &mut UnboundedReceiver<Msg>, peak: &mut Peak) {
    for h in hosts.iter_mut() {
        h.tearing_down = true;
    }
    for h in hosts.iter() {
        if let Some(c) = h.client.as_ref().filter(|c| c.ended.is_none()) {
            c.proc.stop();
        }
    }
    wait_for_ends(hosts, rx, Role::Client, GRACE, peak).await;
    for h in hosts.iter() {
        if let Some(s) = h.server.as_ref().filter(|s| s.ended.is_none()) {
            s.proc.stop();
        }
    }
    wait_for_ends(hosts, rx, Role::Server, GRACE, peak).await;

    // Whatever is left of any group — a binary that ignored its stdin, a worker process, a host
    // whose stream broke — is stopped by group id over the control connection.
    let mut asked = Vec::new();
    let now = Instant::now();
    for (i, h) in hosts.iter().enumerate() {
        let until = now + stop_budget(h.track.server_open_peak + h.track.established_peak);
        for role in [Role::Server, Role::Client] {
            let Some(pgid) = h.running(role).and_then(|r| r.pgid) else {
                continue;
            };
            let Some(control) = h.control.as_ref() else {
                continue;
            };
            asked.push((i, role, pgid, until, control.stop_group(pgid, until)));
        }
    }
    let mut said_waiting = false;
    for (i, role, pgid, until, stopping) in asked {
        let quick = Instant::now() + Duration::from_secs(3);
        let mut answer = tokio::task::block_in_place(|| stopping.answer_by(quick.min(until)));
        if answer.is_none() {
            if !said_waiting {
                // Only said when a host is slow; a healthy one has answered by now.
                said_waiting = true;
                println!(
                    "teardown: waiting for {} to confirm its c1m processes have ended \
                     (a host closing many connections can take a while; up to {} s)",
                    hosts[i].run.host.name,
                    until.saturating_duration_since(Instant::now()).as_secs()
                );
            }
            // The control thread gives up at `until`; its answer says why.
            let deadline = until + Duration::from_secs(5);
            answer = tokio::task::block_in_place(|| stopping.answer_by(deadline));
        }
        let answer = answer.unwrap_or_else(|| {
            let waited = Instant::now().saturating_duration_since(now);
            Err(format!("no answer in {} s", waited.as_secs()))
        });
        let h = &mut hosts[i];
        let line = match answer {
            Ok(a) if a == "gone" => continue,
            Ok(a) => format!("{} (group {pgid}) was still running: {a}", role.binary()),
            Err(e) => format!("could not check {} (group {pgid}): {e}", role.binary()),
        };
        println!("teardown {}: {line}", h.run.host.name);
        h.teardown.push(line);
    }
    wait_for_ends(hosts, rx, Role::Client, Duration::from_secs(3), peak).await;
}

/// Takes in messages until every started binary of `role` has ended, or `limit` passes.
async fn wait_for_ends(
    hosts: &mut [HostState],
    rx: &mut UnboundedReceiver<Msg>,
    role: Role,
    limit: Duration,
    peak: &mut Peak,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let pending = |hosts: &[HostState]| {
        hosts
            .iter()
            .any(|h| h.running(role).is_some_and(|r| r.ended.is_none()))
    };
    while pending(hosts) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                absorb(hosts, m, false, peak);
            }
            _ => return,
        }
    }
}
