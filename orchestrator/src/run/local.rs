//! The local run: server and client on this machine over loopback. Starts both in process
//! groups of their own, follows their JSON lines, samples kernel memory each second, holds,
//! tears down (also on Ctrl-C and on failure) and writes the run directory.

use super::netns::{self, PrivateNetns};
use super::preflight;
use super::sampler::{kernel_total, KernelSample};
use super::summary::{limit_hit, print_summary, run_settings};
use super::track::Track;
use super::view::{Frame, View};
use super::{binaries, RunOptions};
use anyhow::{bail, Context, Result};
use c1m_client::targets;
use c1m_proto::fmt;
use c1m_proto::stats::LayoutLine;
use c1m_rundir::{self, Event, HostSample, HostSummary, RunSummary};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const HOST: &str = "localhost";

/// How often the binaries report: four times per sample, so every sample is fresh.
const STATS_MS: u64 = 250;

/// First source address of a steered run; worker i's address is this + i.
const STEER_BASE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A line from one of the two processes, or the end of its output.
enum Msg {
    Server(Option<String>),
    Client(Option<String>),
}

/// Enough loopback source addresses that each (source IP, server port) pair stays under a
/// quarter full: the kernel's port search slows down as a 4-tuple space fills.
pub fn auto_source_ips(connections: u64, ports: u16) -> Vec<String> {
    let per_pair = targets::local_port_count().max(1);
    let room = (per_pair / 4).max(1) * u64::from(ports.max(1));
    let k = connections.div_ceil(room).clamp(1, 65_000) as u32;
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    if k == 1 {
        vec![Ipv4Addr::from(first).to_string()]
    } else {
        vec![format!(
            "{}-{}",
            Ipv4Addr::from(first),
            Ipv4Addr::from(first + k - 1)
        )]
    }
}

fn spawn(
    netns: Option<&PrivateNetns>,
    bin: &Path,
    args: &[String],
    log: &Path,
    tx: mpsc::Sender<Msg>,
    wrap: fn(Option<String>) -> Msg,
) -> Result<Child> {
    let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // `ip netns exec` enters the namespace and execs the binary: same pid, same group.
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // A group of its own: teardown signals the group, so worker processes go too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().context("child stdout")?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(wrap(Some(l))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(wrap(None)).await;
    });
    Ok(child)
}

fn signal_group(child: &Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-(pid as libc::pid_t), sig) };
    }
}

/// SIGTERM the group, wait up to `grace`, then SIGKILL the group; always reaps the child.
async fn stop(child: &mut Child, grace: Duration) {
    signal_group(child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(child, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Worker processes of a multi-process binary die with it (PDEATHSIG); make sure.
    signal_group(child, libc::SIGKILL);
}

/// Keeps a binary's raw line in the run directory; a failed write loses only that copy.
async fn append(f: &mut tokio::fs::File, l: &str) {
    let _ = f.write_all(format!("{l}\n").as_bytes()).await;
}

pub async fn run(args: RunOptions) -> Result<u8> {
    let n = args.connections;
    if n == 0 {
        bail!("--connections must be at least 1");
    }
    let server_bin = binaries::locate("c1m-server")?;
    let client_bin = binaries::locate("c1m-client")?;
    // Steering pairs client fd table i with server fd table i through source address i; it
    // needs the run to choose the addresses and one server process.
    let steer = args.source_ips.is_empty() && args.procs.is_none() && !args.no_steering;
    let mut source_ips = if args.source_ips.is_empty() {
        auto_source_ips(n, args.port_count)
    } else {
        args.source_ips.clone()
    };
    let ips = targets::expand_ips(&source_ips).map_err(anyhow::Error::msg)?;
    if let Some(bad) = ips.iter().find(|ip| !ip.is_loopback()) {
        bail!("--source-ips: {bad} is not a loopback address; a local run uses 127.0.0.0/8 only");
    }

    // Preflight: every limit that would stop the run, with its fix.
    let facts = preflight::local_facts()?;
    let tuning = facts.tuning();
    let findings = preflight::check(n, args.port_count, ips.len(), &facts);
    println!(
        "preflight for {} connections on this machine (both ends local):",
        fmt::int(n)
    );
    for f in &findings {
        println!("  {f}");
    }
    if findings.iter().any(|f| f.blocks) {
        if !args.force {
            eprintln!("c1m run: refusing to start: the run cannot fit (fix the ✗ lines above, or pass --force)");
            return Ok(3);
        }
        println!("  --force: starting anyway");
    }

    let netns = if args.no_netns {
        None
    } else if let Some(why) = netns::unavailable() {
        println!("  note: running in this network namespace ({why}); its TCP hash table was sized at boot");
        None
    } else {
        match PrivateNetns::create(netns::buckets_for(2 * n)) {
            Ok(ns) => {
                println!(
                    "network namespace: {} (loopback only, {} established-hash buckets)",
                    ns.name,
                    fmt::int(ns.ehash_entries)
                );
                Some(ns)
            }
            // A container may forbid namespaces; the run still works, only slower.
            Err(e) => {
                println!("  note: running in this network namespace ({e:#})");
                None
            }
        }
    };

    let started_at = chrono::Utc::now();
    let dir = c1m_rundir::create(&args.runs_dir, &started_at)?;
    let host_dir = dir.join("hosts").join(HOST);
    std::fs::create_dir_all(&host_dir)?;
    println!("run directory: {}", dir.display());

    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let mut server_args = vec![
        "--bind=127.0.0.1".to_string(),
        format!("--port={}", args.first_port),
        format!("--ports={}", args.port_count),
        format!("--connections={n}"),
        format!("--interval-ms={STATS_MS}"),
    ];
    if let Some(p) = args.procs {
        server_args.push(format!("--procs={p}"));
    }
    if steer {
        server_args.push(format!("--steer-source-base={STEER_BASE}"));
    }
    let mut server = spawn(
        netns.as_ref(),
        &server_bin,
        &server_args,
        &host_dir.join("server.log"),
        tx.clone(),
        Msg::Server,
    )?;
    let mut server_raw = tokio::fs::File::create(host_dir.join("server.jsonl")).await?;
    let mut client_raw = tokio::fs::File::create(host_dir.join("client.jsonl")).await?;
    let mut track = Track::default();

    // Wait for the server's layout line: every listener is up.
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = rx.recv().await {
            if let Msg::Server(Some(l)) = m {
                append(&mut server_raw, &l).await;
                if let Some(layout) = track.server_line(&l) {
                    return Some(layout);
                }
            } else if let Msg::Server(None) = m {
                return None;
            }
        }
        None
    })
    .await;
    let Ok(Some(layout)) = ready else {
        stop(&mut server, Duration::from_secs(2)).await;
        let log = std::fs::read_to_string(host_dir.join("server.log")).unwrap_or_default();
        bail!("c1m-server did not start: {}", log.trim());
    };
    println!(
        "server: {} process(es) × {} thread(s) on 127.0.0.1:{}-{}, {} per fd table, capacity {}",
        layout.procs,
        layout.threads_per_proc,
        args.first_port,
        u32::from(args.first_port) + u32::from(args.port_count) - 1,
        fmt::int(layout.conns_per_table),
        fmt::int(layout.capacity)
    );

    let mut client_extra = Vec::new();
    if steer {
        // One source address per server worker, filled in stages (see c1m-client --staged).
        let t = layout.threads_per_proc as u32;
        let first = u32::from(STEER_BASE);
        source_ips = vec![format!("{}-{}", STEER_BASE, Ipv4Addr::from(first + t - 1))];
        client_extra = vec!["--staged".to_string(), format!("--threads={t}")];
    }
    track.server_layout = Some(layout);

    let base = KernelSample::take();
    let mut client_args = vec![
        "--json".to_string(),
        "--target=127.0.0.1".into(),
        format!("--port={}", args.first_port),
        format!("--ports={}", args.port_count),
        format!("--connections={n}"),
        format!("--source-ips={}", source_ips.join(",")),
        "--hold=forever".into(),
        format!("--interval-ms={STATS_MS}"),
    ];
    client_args.extend(client_extra);
    if let Some(w) = args.window {
        client_args.push(format!("--window={w}"));
    }
    if let Some(r) = args.rate {
        client_args.push(format!("--rate={r}"));
    }
    if let Some(c1m_proto::duration::Span(Some(m))) = args.message_interval {
        client_args.push(format!("--message-interval={}ms", m.as_millis().max(1)));
    }
    if let Some(p) = args.procs {
        client_args.push(format!("--procs={p}"));
    }
    let mut client = spawn(
        netns.as_ref(),
        &client_bin,
        &client_args,
        &host_dir.join("client.log"),
        tx.clone(),
        Msg::Client,
    )?;
    drop(tx);
    let client_started = Instant::now();

    let view = View::new(n, args.no_progress);
    let mut events = tokio::fs::File::create(dir.join("events.jsonl")).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut hold_until: Option<Option<Instant>> = None;
    let mut last_verified = 0u64;
    let mut last_t = 0.0f64;
    let mut cpu_prev = super::sampler::cpu_times();
    let mut outcome = "reached";
    let mut reason: Option<String> = None;
    let mut client_alive = true;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                outcome = "interrupted";
                reason = Some("interrupted by Ctrl-C".into());
                view.note("Ctrl-C: stopping client and server…");
                break;
            }
            m = rx.recv() => match m {
                Some(Msg::Client(Some(l))) => {
                    append(&mut client_raw, &l).await;
                    if let Some(layout) = track.client_line(&l) {
                        view.note(&format!(
                            "client: {} process(es) × {} thread(s) from {} source IP(s), {} per fd table",
                            layout.procs, layout.threads_per_proc, targets::expand_ips(&source_ips).map_or(0, |v| v.len()), fmt::int(layout.conns_per_table)
                        ));
                        if steer {
                            view.note("steering: client fd table i ↔ server worker i by source address, filled one per core at a time");
                        }
                        track.client_layout = Some(layout);
                    }
                }
                Some(Msg::Client(None)) => {
                    client_alive = false;
                    if hold_until.is_none() {
                        outcome = "not_reached";
                        let log = std::fs::read_to_string(host_dir.join("client.log")).unwrap_or_default();
                        reason = Some(match log.lines().rev().find(|l| !l.trim().is_empty()) {
                            Some(l) => format!("the client stopped before the target: {}", l.trim()),
                            None => "the client stopped before the target".into(),
                        });
                    } else {
                        outcome = "failed";
                        reason = Some("the client exited during the hold".into());
                    }
                    break;
                }
                Some(Msg::Server(Some(l))) => {
                    append(&mut server_raw, &l).await;
                    track.server_line(&l);
                }
                Some(Msg::Server(None)) => {
                    outcome = "failed";
                    reason = Some("the server exited during the run".into());
                    break;
                }
                None => break,
            },
            _ = tick.tick() => {
                let t = client_started.elapsed().as_secs_f64();
                let k = KernelSample::take();
                let kd = k.delta(&base);
                let verified = track.client.verified;
                // On the client's own clock: its lines come every 250 ms, not in step with ours.
                let ct = track.client.uptime_s;
                let rate = if ct > last_t {
                    (verified.saturating_sub(last_verified)) as f64 / (ct - last_t)
                } else {
                    0.0
                };
                if ct > last_t {
                    last_verified = verified;
                    last_t = ct;
                }
                let cpu_now = super::sampler::cpu_times();
                let (dt, di) = (cpu_now.0.saturating_sub(cpu_prev.0), cpu_now.1.saturating_sub(cpu_prev.1));
                cpu_prev = cpu_now;
                if hold_until.is_none() && dt > 0 {
                    track.cpu_busy.push(1.0 - di as f64 / dt as f64);
                }
                let errors_total = track.client.errors.values().sum::<u64>() + track.server.errors.values().sum::<u64>();
                let ev = Event {
                    t,
                    ts_ms: c1m_proto::stats::now_ms(),
                    established: track.client.open,
                    connecting: track.client.connecting,
                    server_open: track.server.open,
                    connect_rate: rate,
                    errors_total,
                    server_rss_bytes: track.server.rss_bytes,
                    client_rss_bytes: track.client.rss_bytes,
                    kernel_bytes: kernel_total(&kd),
                    slab_bytes: k.slab(),
                    tcp_mem_pages: k.tcp_mem_pages(),
                    tcp_inuse: k.tcp_inuse(),
                    hosts: BTreeMap::from([(HOST.to_string(), HostSample {
                        role: "server+client".into(),
                        established: track.client.open,
                        connect_rate: rate,
                        errors_total,
                        rss_bytes: track.server.rss_bytes + track.client.rss_bytes,
                    })]),
                };
                let mut line = serde_json::to_string(&ev)?;
                line.push('\n');
                events.write_all(line.as_bytes()).await?;
                track.rate_peak = track.rate_peak.max(rate);
                track.server_open_peak = track.server_open_peak.max(track.server.open);
                if track.client.open >= track.established_peak {
                    track.established_peak = track.client.open;
                    track.server_rss_at_peak = track.server.rss_bytes;
                    track.kernel_at_peak = kd;
                }
                view.show(&Frame {
                    t,
                    established: track.client.open,
                    target: n,
                    rate,
                    errors: errors_total,
                    server_rss: track.server.rss_bytes,
                    kernel_bytes: ev.kernel_bytes,
                });
                if verified >= n && hold_until.is_none() {
                    hold_until = Some(args.hold.0.map(|h| Instant::now() + h));
                    view.note(&format!(
                        "target reached: {} verified connections in {:.2} s; holding {}",
                        fmt::int(verified),
                        track.client.time_to_target_s.unwrap_or(t),
                        args.hold.0.map(|h| format!("{:.1} s", h.as_secs_f64())).unwrap_or_else(|| "until Ctrl-C".into())
                    ));
                }
                if let Some(Some(until)) = hold_until {
                    if Instant::now() >= until { break; }
                }
            }
        }
    }
    view.finish();

    // Teardown: client first (its summary carries the histograms), then the server. A second
    // Ctrl-C is not needed: the groups are SIGKILLed after the grace period.
    if client_alive {
        signal_group(&client, libc::SIGTERM);
    } else {
        // The client's end of output was already seen: the drain below will not see it again.
        signal_group(&server, libc::SIGTERM);
    }
    let drain = async {
        while let Some(m) = rx.recv().await {
            match m {
                Msg::Client(Some(l)) => {
                    append(&mut client_raw, &l).await;
                    let had_summary = track.client_summary.is_some();
                    track.client_line(&l);
                    if !had_summary && track.client_summary.is_some() {
                        // The client's figures are in: the server may go.
                        signal_group(&server, libc::SIGTERM);
                    }
                }
                Msg::Server(Some(l)) => {
                    append(&mut server_raw, &l).await;
                    track.server_line(&l);
                }
                Msg::Client(None) => signal_group(&server, libc::SIGTERM),
                Msg::Server(None) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), drain).await;
    stop(&mut client, Duration::from_secs(5)).await;
    stop(&mut server, Duration::from_secs(5)).await;
    events.flush().await?;
    drop(netns);

    let summary = summarize(
        &args,
        &track,
        &tuning,
        &source_ips,
        started_at,
        outcome,
        reason,
    );
    c1m_rundir::write_summary(&dir, &summary)?;
    print_summary(&summary);
    let ok = summary.outcome == "reached" && !summary.errors.contains_key("echo_mismatch");
    Ok(if ok { 0 } else { 1 })
}

fn summarize(
    args: &RunOptions,
    track: &Track,
    tuning: &BTreeMap<String, String>,
    source_ips: &[String],
    started_at: chrono::DateTime<chrono::Utc>,
    outcome: &str,
    reason: Option<String>,
) -> RunSummary {
    let n = args.connections;
    let client = track.client_summary.as_ref().unwrap_or(&track.client);
    let server = track.server_summary.as_ref().unwrap_or(&track.server);
    let mut errors = client.errors.clone();
    for (k, v) in &server.errors {
        *errors.entry(format!("server_{k}")).or_default() += v;
    }
    let peak = track.established_peak.max(1);
    let ttt = client.time_to_target_s;
    let mut outcome = outcome.to_string();
    if outcome == "reached" && client.verified < n {
        outcome = "not_reached".into();
    }
    let limit = limit_hit(
        args,
        client,
        &errors,
        &outcome,
        reason.as_deref(),
        &track.cpu_busy,
        "both ends share this machine's cores",
    );
    let layout = |l: &Option<LayoutLine>| {
        l.as_ref()
            .map(|l| format!("{}×{}", l.procs, l.threads_per_proc))
            .unwrap_or_default()
    };
    RunSummary {
        schema: c1m_rundir::SCHEMA,
        c1m_version: env!("CARGO_PKG_VERSION").into(),
        started_at: started_at.to_rfc3339(),
        finished_at: Some(chrono::Utc::now().to_rfc3339()),
        inventory: "local".into(),
        outcome,
        reason,
        partial: track.client_summary.is_none() || track.server_summary.is_none(),
        target: n,
        established_peak: track.established_peak,
        server_open_peak: track.server_open_peak,
        time_to_target_s: ttt,
        run_to_target_s: None,
        connect_rate_peak: track.rate_peak,
        connect_rate_mean: ttt
            .map(|t| client.verified as f64 / t.max(1e-9))
            .unwrap_or(0.0),
        connect_latency_us: client.connect_latency_us.clone(),
        rtt_us: client.rtt_us.clone(),
        errors: errors.clone(),
        server_rss_bytes: track.server_rss_at_peak,
        client_rss_bytes: client.rss_bytes,
        user_bytes_per_conn: track.server_rss_at_peak as f64 / peak as f64,
        kernel_bytes_per_conn: kernel_total(&track.kernel_at_peak) as f64 / peak as f64,
        kernel_memory: track.kernel_at_peak.clone(),
        hosts: vec![HostSummary {
            name: HOST.into(),
            role: "server+client".into(),
            address: "127.0.0.1".into(),
            share: n,
            established_peak: track.established_peak,
            errors,
            rss_bytes: track.server_rss_at_peak + client.rss_bytes,
            layout: format!(
                "server {}, client {}",
                layout(&track.server_layout),
                layout(&track.client_layout)
            ),
            tuning: tuning.clone(),
            failure: None,
        }],
        limit: Some(limit),
        settings: run_settings(args, source_ips.to_vec()),
    }
}
