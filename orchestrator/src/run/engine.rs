//! The live part of every run, local or over an inventory, in named phases: open the run
//! directory, start the server and wait until every port listens, start every client at the
//! same moment, follow them while they connect and hold, tear down, write `run.json`.
//!
//! Hosts are driven the same way whether they are this machine (pipes) or remote (SSH exec
//! channels): each binary is a stream in a thread of its own ([`super::proc`]), each host has
//! a control thread that samples it and stops process groups ([`super::control`]), and all of
//! them talk to this loop through one channel ([`super::msg`]).

use super::control::{Control, Reconnect, Watch};
use super::intake::{absorb, Happened};
use super::launch;
use super::local_env::LocalEnv;
use super::msg::{Ended, Msg, Role};
use super::prepare::Prepared;
use super::proc::RemoteProc;
use super::sampler::kernel_total;
use super::signals::{self, StopSignals};
use super::state::{Ending, Hold, HostState, Peak, Phase, Reached, Running, ServerUnderTest};
use super::summary::{self, Finished};
use super::teardown::teardown;
use super::view::{Frame, HostFrame, View};
use super::{RunEnd, RunOptions};
use crate::check::gather::{measure_server, read_tree, resolve_pid};
use crate::check::server::{self, PidSource, UnderTest};
use crate::check::server_tree::TreeSample;
use anyhow::Result;
use c1m_ansible::connect::ConnectSettings;
use c1m_proto::fmt;
use c1m_proto::stats::LayoutLine;
use c1m_rundir::{Event, HostSample, Outcome};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// A stream session proves its host alive this often and gives it up after this long silent:
/// a host that dies mid-run is declared lost in about half a minute, not never. On a host
/// measured slow (`RunHost::budget`) silence may last as long as 300 program starts there.
const KEEPALIVE: Duration = Duration::from_secs(5);
const DEAD_AFTER: Duration = Duration::from_secs(30);
/// Binding every port takes well under a second on hardware; TCG guests are slower, so the
/// wait is also at least 1,000 program starts on the server's host as measured at deploy.
const SERVER_READY: Duration = Duration::from_secs(120);
/// How long a server command gets to listen on every port; a server that needs longer is
/// misconfigured or waiting for something it will not get.
const COMMAND_READY: Duration = Duration::from_secs(30);

/// Runs the live part of a prepared run and writes its run directory.
pub async fn run(opts: RunOptions, prepared: Prepared) -> Result<RunEnd> {
    let mut signals = StopSignals::listen()?;
    let env = LocalEnv::set_up(
        &opts,
        &prepared.hosts,
        prepared.target,
        &prepared.plan.server.under_test,
    );
    let mut e = Engine::open(opts, prepared, env)?;
    e.start_server(&mut signals).await;
    if matches!(e.phase, Phase::Connecting) {
        e.start_clients().await;
    }
    e.follow(&mut signals).await?;
    e.teardown().await;
    e.finish()
}

/// One run in progress.
struct Engine {
    opts: RunOptions,
    inventory: String,
    conn: ConnectSettings,
    target: Ipv4Addr,
    invoked: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    dir: PathBuf,
    hosts: Vec<HostState>,
    /// The server host's index.
    si: usize,
    tx: UnboundedSender<Msg>,
    rx: UnboundedReceiver<Msg>,
    peak: Peak,
    /// Dropped after teardown: deletes the run's network namespace.
    env: LocalEnv,
    phase: Phase,
    clients_started: Instant,
    reached: Option<Reached>,
    sut: ServerUnderTest,
    /// The server's own limits refused the run once it was up (no `--force`).
    refused: bool,
}

impl Engine {
    /// The run directory with the plan and each host's facts; a control thread per host.
    fn open(opts: RunOptions, mut p: Prepared, env: LocalEnv) -> Result<Engine> {
        let started_at = chrono::Utc::now();
        let dir = c1m_rundir::create(&opts.runs_dir, &started_at)?;
        println!("run directory: {}", dir.display());
        std::fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(&p.plan)?)?;
        let (tx, rx) = unbounded_channel::<Msg>();
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
            hosts.push(HostState::new(run, hdir, control));
        }
        let si = hosts.iter().position(|h| h.run.is_server()).unwrap_or(0);
        let under_test = p.plan.server.under_test.clone();
        hosts[si].server_reports = under_test == UnderTest::C1mServer;
        let sut = ServerUnderTest {
            name: under_test.label(),
            root: None,
            before: p
                .plan
                .server
                .measured
                .clone()
                .map(|m| (TreeSample::default(), m)),
            under_test,
        };
        Ok(Engine {
            opts,
            inventory: p.inventory,
            conn: p.conn,
            target: p.target,
            invoked: p.invoked,
            started_at,
            dir,
            hosts,
            si,
            tx,
            rx,
            peak: Peak::default(),
            env,
            phase: Phase::Connecting,
            clients_started: Instant::now(),
            reached: None,
            sut,
            refused: false,
        })
    }

    /// Opens a connection of its own for a binary's stream and starts it, in a blocking task:
    /// an SSH handshake must not hold up the engine, and clients start in parallel.
    fn start(
        &self,
        host: usize,
        role: Role,
        cmd: String,
    ) -> tokio::task::JoinHandle<Result<Running, String>> {
        let h = &self.hosts[host];
        let c1m_binary = role == Role::Client || h.server_reports;
        let dead_after = h.run.budget(DEAD_AFTER, 300);
        let (conn, inv_host, dir, tx) = (
            self.conn.clone(),
            h.run.host.clone(),
            h.dir.clone(),
            self.tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut t = conn.connect(&inv_host).map_err(|e| e.to_string())?;
            t.set_liveness(KEEPALIVE, dead_after);
            let proc = RemoteProc::start(t, host, role, c1m_binary, cmd, &dir, tx)
                .map_err(|e| format!("{}: cannot start {}: {e}", inv_host.name, role.binary()))?;
            Ok(Running {
                proc,
                pgid: None,
                ended: None,
                // A server command does not stop at the end of its stdin.
                stops_on_eof: c1m_binary,
            })
        })
    }

    /// The server, and every port listening, before any client; its process tree and limits;
    /// then the kernel baseline.
    async fn start_server(&mut self, signals: &mut StopSignals) {
        match self.sut.under_test.clone() {
            UnderTest::C1mServer => self.start_c1m_server(signals).await,
            UnderTest::Command { cmd, .. } => self.start_command(&cmd, signals).await,
            UnderTest::External { .. } => self.find_external(),
        }
        if matches!(self.phase, Phase::Connecting) {
            self.read_server(signals).await;
        }
        if matches!(self.phase, Phase::Connecting) {
            self.take_kernel_baseline().await;
        }
    }

    /// Waits for a message that says the server is up, a signal, or the deadline.
    async fn wait_up(&mut self, signals: &mut StopSignals, limit: Duration, what: &str) {
        let si = self.si;
        let deadline = tokio::time::Instant::now() + limit;
        while matches!(self.phase, Phase::Connecting) {
            tokio::select! {
                sig = signals.recv() => self.interrupted(sig),
                _ = tokio::time::sleep_until(deadline) => {
                    let name = self.hosts[si].run.host.name.clone();
                    self.end(Outcome::Failed, format!("{} on {name} did not {what} within {} s", self.sut.name, limit.as_secs()));
                }
                m = self.rx.recv() => match m.map(|m| absorb(&mut self.hosts, m, false, &mut self.peak)) {
                    Some(Happened::Layout(h, Role::Server, l)) => {
                        self.say_server_layout(h, &l);
                        self.sut.root = Some(l.pid);
                        break;
                    }
                    Some(Happened::Started(pid)) => {
                        self.sut.root = Some(pid);
                        break;
                    }
                    Some(Happened::Ended(h, role)) => {
                        let why = self.describe_end(h, role);
                        self.end(Outcome::Failed, format!("the server did not start: {why}"));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }

    async fn start_c1m_server(&mut self, signals: &mut StopSignals) {
        let si = self.si;
        let spec = launch::server_spec(&self.opts, self.target, &self.env);
        let cmd = launch::command(&self.hosts[si].run, &spec, &self.env);
        match self.start(si, Role::Server, cmd).await {
            Ok(Ok(r)) => self.hosts[si].server = Some(r),
            Ok(Err(e)) => {
                return self.end(Outcome::Failed, format!("cannot start the server: {e}"))
            }
            Err(e) => return self.end(Outcome::Failed, format!("cannot start the server: {e}")),
        }
        // At least 1,000 program starts on the server's host as measured at deploy.
        let ready_within = self.hosts[si].run.budget(SERVER_READY, 1_000);
        self.wait_up(signals, ready_within, "report listening")
            .await;
    }

    /// A server command: started in a session of its own; up once its shell has said its pid.
    async fn start_command(&mut self, cmd: &str, signals: &mut StopSignals) {
        let si = self.si;
        let line = launch::server_command(&self.hosts[si].run, cmd, &self.env);
        println!("server command on {}: {cmd}", self.hosts[si].run.host.name);
        match self.start(si, Role::Server, line).await {
            Ok(Ok(r)) => self.hosts[si].server = Some(r),
            Ok(Err(e)) => return self.end(Outcome::Failed, format!("cannot start {cmd}: {e}")),
            Err(e) => return self.end(Outcome::Failed, format!("cannot start {cmd}: {e}")),
        }
        let ready_within = self.hosts[si].run.budget(COMMAND_READY, 1_000);
        self.wait_up(signals, ready_within, "start").await;
    }

    /// A server already running: nothing to start; measured when its pid was given.
    fn find_external(&mut self) {
        self.sut.root = self.sut.before.as_ref().map(|(_, m)| m.pid);
        if self.sut.root.is_none() {
            println!(
                "server under test: already running at {}:{}, not measured (give --server-pid or c1m_server_pid to measure it)",
                self.target,
                server::ports_text(self.opts.first_port, self.opts.port_count)
            );
        }
    }

    /// Once the server is up: every port listening (a command's), its process tree and limits
    /// read, the ceiling they allow judged against the target, and its tree watched from then on.
    async fn read_server(&mut self, signals: &mut StopSignals) {
        let Some(root) = self.sut.root else {
            return;
        };
        let si = self.si;
        let probe = Probe {
            root,
            pid: self.sut.under_test.pid_source().cloned(),
            // c1m-server says itself when every port listens.
            ports: (self.sut.under_test != UnderTest::C1mServer).then_some((
                self.target,
                self.opts.first_port,
                self.opts.port_count,
            )),
            until: Instant::now() + COMMAND_READY,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let cancel = probe.cancel.clone();
        let (conn, host) = (self.conn.clone(), self.hosts[si].run.host.clone());
        let mut job = tokio::task::spawn_blocking(move || {
            let mut t = conn.connect(&host).map_err(|e| e.to_string())?;
            let (root, tree) = probe.run(t.as_mut())?;
            let m = measure_server(t.as_mut(), &tree, root);
            Ok((root, tree, m))
        });
        let got = loop {
            tokio::select! {
                r = &mut job => break r.unwrap_or_else(|e| Err(e.to_string())),
                sig = signals.recv() => {
                    self.interrupted(sig);
                    cancel.store(true, Ordering::SeqCst);
                }
                m = self.rx.recv() => match m.map(|m| absorb(&mut self.hosts, m, false, &mut self.peak)) {
                    Some(Happened::Ended(h, role)) => {
                        let why = self.describe_end(h, role);
                        self.end(Outcome::Failed, format!("the server did not start: {why}"));
                        cancel.store(true, Ordering::SeqCst);
                    }
                    Some(_) => {}
                    None => cancel.store(true, Ordering::SeqCst),
                }
            }
        };
        if !matches!(self.phase, Phase::Connecting) {
            return;
        }
        let (root, tree, mut m) = match got {
            Ok(x) => x,
            Err(e) => {
                let name = &self.hosts[si].run.host.name;
                return self.end(Outcome::Failed, format!("{} on {name}: {e}", self.sut.name));
            }
        };
        let c1m_server = self.sut.under_test == UnderTest::C1mServer;
        if c1m_server {
            // Its fd tables are per thread, not per process: its own layout says what it holds.
            m.name = "c1m-server".into();
            m.ceiling = self.hosts[si]
                .track
                .server_layout
                .as_ref()
                .map(|l| l.capacity);
        }
        println!(
            "server under test: {} (pid {root}: {} process(es), {} thread(s), RSS {}) on {}:{}",
            m.name,
            m.processes,
            m.threads,
            fmt::bytes(tree.rss_bytes() as f64),
            self.target,
            server::ports_text(self.opts.first_port, self.opts.port_count)
        );
        // c1m-server's ceilings are its model's, named (never refusing) by the preflight; another
        // server's are its own limits, known only now.
        let finding = (!c1m_server).then(|| server::ceiling_finding(&m, self.opts.connections));
        if let Some(f) = &finding {
            println!("  {f}");
        }
        self.sut.name = m.name.clone();
        self.sut.root = Some(root);
        let clk_tck = tree.clk_tck;
        self.sut.before = Some((tree, m));
        if let Some(c) = self.hosts[si].control.as_ref() {
            // Only a run that sends nothing needs the accept queues: an answered connection was
            // accepted.
            let silent = self.opts.protocol.protocol.sends_nothing();
            c.watch(Watch {
                root,
                clk_tck,
                queues: silent.then_some((self.opts.first_port, self.opts.port_count)),
            });
        }
        if finding.is_some_and(|f| f.blocks) {
            if self.opts.force {
                println!("--force: starting the clients anyway");
            } else {
                self.refused = true;
                self.end(
                    Outcome::NotReached,
                    format!("refused: {} cannot hold {} connections (pass --force to run to its ceiling)", self.sut.name, fmt::int(self.opts.connections)),
                );
            }
        }
    }

    fn say_server_layout(&self, h: usize, l: &LayoutLine) {
        println!(
            "server {}: {} process(es) × {} thread(s) on {}:{}-{}, {} per fd table, capacity {}",
            self.hosts[h].run.host.name,
            l.procs,
            l.threads_per_proc,
            self.target,
            self.opts.first_port,
            u32::from(self.opts.first_port) + u32::from(self.opts.port_count) - 1,
            fmt::int(l.conns_per_table),
            fmt::int(l.capacity)
        );
    }

    /// The baseline of kernel memory: each host's first reading, taken at once.
    async fn take_kernel_baseline(&mut self) {
        let si = self.si;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.hosts[si].kernel_now.is_none() && self.hosts[si].control.is_some() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    absorb(&mut self.hosts, m, false, &mut self.peak);
                }
                _ => break,
            }
        }
        for h in self.hosts.iter_mut() {
            h.kernel_base = h.kernel_now.clone();
        }
        if self.hosts[si]
            .server
            .as_ref()
            .is_some_and(|s| s.ended.is_some())
        {
            let why = self.describe_end(si, Role::Server);
            self.end(
                Outcome::Failed,
                format!("the server stopped before the clients started: {why}"),
            );
        }
    }

    /// Every client at the same moment: all the starts in flight together.
    async fn start_clients(&mut self) {
        let steered = self
            .env
            .steer
            .then(|| self.hosts[self.si].track.server_layout.clone())
            .flatten();
        let mut starts = Vec::new();
        for i in 0..self.hosts.len() {
            if !self.hosts[i].run.is_client() {
                continue;
            }
            let spec = launch::client_spec(
                &self.opts,
                &self.hosts[i].run,
                self.target,
                steered.as_ref(),
                &self.env,
            );
            let cmd = launch::command(&self.hosts[i].run, &spec, &self.env);
            // run.json records the addresses the client was really given.
            self.hosts[i].run.source_ips = spec.source_ips;
            starts.push((i, self.start(i, Role::Client, cmd)));
        }
        self.clients_started = Instant::now();
        for (i, fut) in starts {
            match fut.await.unwrap_or_else(|e| Err(e.to_string())) {
                Ok(run) => self.hosts[i].client = Some(run),
                Err(e) => self.hosts[i].failure = Some(format!("cannot start c1m-client: {e}")),
            }
        }
        if self.hosts.iter().all(|h| !h.client_alive()) {
            self.end(Outcome::Failed, "no client could be started");
        }
    }

    /// Connecting and holding: lines and samples in, a frame and an event a second, until the
    /// hold is over, a signal comes, or the run fails.
    async fn follow(&mut self, signals: &mut StopSignals) -> Result<()> {
        let view_hosts: Vec<(String, u64)> = self
            .hosts
            .iter()
            .map(|h| (h.run.host.name.clone(), h.run.share))
            .collect();
        let view = View::new(self.opts.connections, &view_hosts, self.opts.no_progress);
        let mut events = tokio::fs::File::create(self.dir.join("events.jsonl")).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !matches!(self.phase, Phase::Over(_)) {
            tokio::select! {
                sig = signals.recv() => {
                    if sig == "SIGHUP" {
                        signals::detach_output();
                    }
                    view.note(&format!("{sig}: stopping every client and the server…"));
                    self.interrupted(sig);
                }
                m = self.rx.recv() => match m {
                    Some(m) => self.on_message(m, &view),
                    None => self.end(Outcome::Failed, "the run's message channel closed"),
                },
                _ = tick.tick() => {
                    let ev = self.sample_event();
                    let mut line = serde_json::to_string(&ev)?;
                    line.push('\n');
                    events.write_all(line.as_bytes()).await?;
                    self.show(&view, &ev);
                    if matches!(self.phase, Phase::Holding(Hold::Until(t)) if Instant::now() >= t) {
                        self.phase = Phase::Over(Ending { outcome: Outcome::Reached, reason: None });
                    }
                }
            }
            self.check_target(&view);
        }
        view.finish();
        events.flush().await?;
        Ok(())
    }

    fn on_message(&mut self, m: Msg, view: &View) {
        let connecting = matches!(self.phase, Phase::Connecting);
        match absorb(&mut self.hosts, m, connecting, &mut self.peak) {
            Happened::Layout(h, Role::Client, l) => view.note(&self.client_layout_line(h, &l)),
            Happened::Ended(h, role) => self.on_ended(h, role, view),
            _ => {}
        }
    }

    fn client_layout_line(&self, h: usize, l: &LayoutLine) -> String {
        let run = &self.hosts[h].run;
        let mut line = format!(
            "client {}: {} process(es) × {} thread(s), {} connections from {}, {} per fd table",
            run.host.name,
            l.procs,
            l.threads_per_proc,
            fmt::int(run.share),
            run.source_ips.join(","),
            fmt::int(l.conns_per_table)
        );
        if self.env.steer {
            line.push_str("\nsteering: client fd table i ↔ server worker i by source address, filled one per core at a time");
        }
        line
    }

    /// A binary ended while the run was live: the server ends the run; a client is marked and
    /// the others go on, until none is left.
    fn on_ended(&mut self, h: usize, role: Role, view: &View) {
        let why = self.describe_end(h, role);
        self.hosts[h].failure = Some(why.clone());
        if role == Role::Server {
            return self.end(
                Outcome::Failed,
                format!("the server stopped during the run: {why}"),
            );
        }
        if self.hosts.iter().any(HostState::client_alive) {
            return view.note(&format!(
                "{}: {why}; the other hosts go on",
                self.hosts[h].run.host.name
            ));
        }
        let several = self.hosts.iter().filter(|h| h.run.is_client()).count() > 1;
        match (&self.phase, several) {
            (Phase::Connecting, false) => self.end(
                Outcome::NotReached,
                format!("the client stopped before the target: {why}"),
            ),
            (Phase::Connecting, true) => self.end(
                Outcome::NotReached,
                "every client stopped before the target",
            ),
            _ => self.end(
                Outcome::Failed,
                "every client stopped before the end of the run",
            ),
        }
    }

    /// Holding starts once every client still running has its share, seen line by line.
    fn check_target(&mut self, view: &View) {
        if !matches!(self.phase, Phase::Connecting) {
            return;
        }
        let live: Vec<&HostState> = self.hosts.iter().filter(|h| h.client_alive()).collect();
        if live.is_empty() || live.iter().any(|h| h.track.client.verified < h.run.share) {
            return;
        }
        let t = self.clients_started.elapsed().as_secs_f64();
        let verified: u64 = self.hosts.iter().map(|h| h.track.client.verified).sum();
        let target = verified >= self.opts.connections;
        if target {
            self.reached = Some(Reached {
                since_clients: t,
                since_invoked: self.invoked.elapsed().as_secs_f64(),
            });
        }
        let (hold, holding) = match self.opts.hold.0 {
            Some(d) => (
                Hold::Until(Instant::now() + d),
                format!("{:.1} s", d.as_secs_f64()),
            ),
            None => (Hold::Forever, "until a signal (Ctrl-C)".into()),
        };
        self.phase = Phase::Holding(hold);
        view.note(&format!(
            "{} {} {} connections {t:.2} s after the clients were started; holding {holding}",
            if target {
                "target reached:"
            } else {
                "every running client has its share:"
            },
            fmt::int(verified),
            self.opts.protocol.protocol.counted_as(),
        ));
    }

    fn end(&mut self, outcome: Outcome, reason: impl Into<String>) {
        if !matches!(self.phase, Phase::Over(_)) {
            self.phase = Phase::Over(Ending::new(outcome, reason));
        }
    }

    fn interrupted(&mut self, sig: &str) {
        self.end(Outcome::Interrupted, format!("interrupted by {sig}"));
    }

    /// One line about a binary's end, for failures and reasons.
    fn describe_end(&self, h: usize, role: Role) -> String {
        let host = &self.hosts[h].run.host.name;
        let bin = match role {
            Role::Server => self.sut.name.as_str(),
            Role::Client => role.binary(),
        };
        match self.hosts[h].running(role).and_then(|r| r.ended.as_ref()) {
            Some(Ended::Exited(status, Some(last))) => {
                format!("{bin} on {host} exited with status {status}: {last}")
            }
            Some(Ended::Exited(status, None)) => {
                format!("{bin} on {host} exited with status {status}")
            }
            Some(Ended::Lost(why)) => format!("lost {host} ({bin}): {why}"),
            None => format!("{bin} on {host} ended"),
        }
    }

    /// One second of the run: each client's rate on its own clock (its lines come every
    /// 250 ms, not in step with ours), summed; kernel memory is the server host's.
    fn sample_event(&mut self) -> Event {
        let t = self.clients_started.elapsed().as_secs_f64();
        let mut host_samples = BTreeMap::new();
        for h in self.hosts.iter_mut() {
            update_rate(h);
            host_samples.insert(
                h.run.host.name.clone(),
                HostSample {
                    role: h.run.role.as_str().into(),
                    established: if h.run.is_client() {
                        h.track.client.open
                    } else {
                        h.track.server.open
                    },
                    connect_rate: h.rate,
                    errors_total: h.errors_total(),
                    rss_bytes: h.track.client.rss_bytes + h.track.server.rss_bytes,
                },
            );
        }
        let server = &self.hosts[self.si];
        let kd = server.kernel_delta().unwrap_or_default();
        let k = server.kernel_now.clone().unwrap_or_default();
        let established = self.hosts.iter().map(HostState::client_open).sum();
        let ev = Event {
            t,
            ts_ms: c1m_proto::stats::now_ms(),
            established,
            connecting: self.hosts.iter().map(|h| h.track.client.connecting).sum(),
            server_open: if server.server_reports {
                server.track.server.open
            } else {
                established
            },
            connect_rate: self.hosts.iter().map(|h| h.rate).sum(),
            errors_total: host_samples.values().map(|s| s.errors_total).sum(),
            server_rss_bytes: server.track.server.rss_bytes,
            client_rss_bytes: self.hosts.iter().map(|h| h.track.client.rss_bytes).sum(),
            kernel_bytes: kernel_total(&kd),
            slab_bytes: k.slab(),
            tcp_mem_pages: k.tcp_mem_pages(),
            tcp_inuse: k.tcp_inuse(),
            hosts: host_samples,
        };
        self.peak.rate = self.peak.rate.max(ev.connect_rate);
        self.peak.update(&mut self.hosts);
        ev
    }

    fn show(&self, view: &View, ev: &Event) {
        let frames: Vec<HostFrame> = self.hosts.iter().map(host_frame).collect();
        view.show(
            &Frame {
                t: ev.t,
                established: ev.established,
                target: self.opts.connections,
                rate: ev.connect_rate,
                errors: ev.errors_total,
                server_rss: ev.server_rss_bytes,
                kernel_bytes: ev.kernel_bytes,
            },
            &frames,
        );
    }

    /// Waits (a few seconds at most) for a reading of the server host taken after the peak:
    /// a run that stops right at its target would otherwise keep the reading from before it.
    async fn settle_peak(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.peak.kernel_is_fresh(&self.hosts) && self.hosts[self.si].control.is_some() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    absorb(&mut self.hosts, m, false, &mut self.peak);
                }
                _ => return,
            }
        }
    }

    async fn teardown(&mut self) {
        self.settle_peak().await;
        teardown(&mut self.hosts, &mut self.rx, &mut self.peak).await;
        // The namespace goes once nothing runs in it.
        self.env = LocalEnv::default();
    }

    /// run.json, the summary printed, the exit it calls for.
    fn finish(self) -> Result<RunEnd> {
        let ending = match self.phase {
            Phase::Over(e) => e,
            _ => Ending::new(Outcome::Failed, "the run stopped in the middle"),
        };
        let summary = summary::summarize(&Finished {
            opts: &self.opts,
            inventory: &self.inventory,
            hosts: &self.hosts,
            peak: &self.peak,
            started_at: self.started_at,
            ending,
            reached: self.reached,
            sut: &self.sut,
            target: self.target,
        });
        c1m_rundir::write_summary(&self.dir, &summary)?;
        summary::print(&summary, &self.hosts);
        if self.refused {
            return Ok(RunEnd::Refused);
        }
        Ok(summary::verdict(&summary))
    }
}

/// A client's connect rate since the last tick, on its own clock.
fn update_rate(h: &mut HostState) {
    let c = &h.track.client;
    if h.run.is_client() && c.uptime_s > h.rate_point.1 {
        h.rate = c.verified.saturating_sub(h.rate_point.0) as f64 / (c.uptime_s - h.rate_point.1);
        h.rate_point = (c.verified, c.uptime_s);
    } else if !h.client_alive() {
        h.rate = 0.0;
    }
}

fn host_frame(h: &HostState) -> HostFrame<'_> {
    let (open, rss) = if h.run.is_client() {
        (h.track.client.open, h.track.client.rss_bytes)
    } else {
        (h.track.server.open, h.track.server.rss_bytes)
    };
    HostFrame {
        name: &h.run.host.name,
        role: h.run.role.as_str(),
        open,
        share: h.run.share,
        rate: h.rate,
        errors: h.errors_total(),
        rss,
        failure: h.failure.as_deref(),
    }
}

/// Finding a started server's ports listening and reading its tree, on a connection of its own
/// (a blocking job the engine can give up on).
struct Probe {
    /// The process the run started (or was given).
    root: u32,
    /// The process to measure instead, when the command's server is not its own child.
    pid: Option<PidSource>,
    /// (address, first port, count) to find listening; `None`: the server has said so.
    ports: Option<(Ipv4Addr, u16, u16)>,
    until: Instant,
    cancel: Arc<AtomicBool>,
}

impl Probe {
    /// The measured root and its tree (descriptors counted), once every port listens and the
    /// tree has settled: nginx listens before its workers exist and have set their limits, so
    /// a tree counts only when two readings in a row show the same processes and limits.
    fn run(self, t: &mut dyn c1m_transport::Transport) -> Result<(u32, TreeSample), String> {
        let mut last = String::new();
        let mut previous: Option<(u32, TreeSample)> = None;
        let shape = |t: &TreeSample| -> Vec<(u32, Option<(u64, u64)>)> {
            t.processes.iter().map(|p| (p.pid, p.nofile)).collect()
        };
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            match self.try_once(t) {
                Ok(Some(got)) => {
                    if previous
                        .as_ref()
                        .is_some_and(|p| p.0 == got.0 && shape(&p.1) == shape(&got.1))
                    {
                        return Ok(got);
                    }
                    if Instant::now() >= self.until {
                        // Still changing (a server that forks on demand): as it is now.
                        return Ok(got);
                    }
                    previous = Some(got);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    previous = None;
                    last = e;
                }
            }
            if Instant::now() >= self.until {
                let waited = COMMAND_READY.as_secs();
                return Err(match self.ports {
                    Some((a, first, n)) if last.is_empty() => format!(
                        "not listening on {a}:{} after {waited} s",
                        server::ports_text(first, n)
                    ),
                    _ => format!("{last} (after {waited} s)"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_once(
        &self,
        t: &mut dyn c1m_transport::Transport,
    ) -> Result<Option<(u32, TreeSample)>, String> {
        let pid = match &self.pid {
            Some(src) => resolve_pid(t, src)?,
            None => self.root,
        };
        if let Some((addr, first, count)) = self.ports {
            let out = t
                .exec(&super::listening::script(pid), None)
                .map_err(|e| format!("/proc/{pid}/net/tcp: {e}"))?;
            let up = super::listening::listening(&[&out.stdout_str()], addr, first, count);
            if up.len() < usize::from(count) {
                let missing: Vec<String> = (0..count)
                    .map(|i| first + i)
                    .filter(|p| !up.contains(p))
                    .take(5)
                    .map(|p| p.to_string())
                    .collect();
                return Err(format!("not listening on {addr}:{}", missing.join(",")));
            }
        }
        read_tree(t, pid, true, None).map(|tree| Some((pid, tree)))
    }
}
