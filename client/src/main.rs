//! `c1m-client` entry point: plan the layout, start workers (threads, or processes when asked),
//! report progress, hold, and exit 0 only when every connection was made and its echo verified.

use anyhow::{bail, Context, Result};
use c1m_client::args::Args;
use c1m_client::counters::{self, Counters};
use c1m_client::hist;
use c1m_client::protocol::AnyProtocol;
use c1m_client::targets::{self, Targets};
use c1m_client::worker::{self, Plan, Shared};
use c1m_proto::duration::Span;
use c1m_proto::errors;
use c1m_proto::fanout::Children;
use c1m_proto::layout::{self, Layout};
use c1m_proto::protocol::ProtocolKind;
use c1m_proto::stats::{emit, now_ms, ClientStats};
use c1m_proto::{procfs, signals};
use clap::Parser;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    signals::install();
    let args = Args::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("c1m-client: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<u8> {
    args.workers.take_control();
    if !args.workers.adopt_parent() {
        return Ok(1);
    }
    layout::check_ports(args.port, args.ports).map_err(anyhow::Error::msg)?;
    let sources = targets::expand_ips(&args.source_ips).map_err(anyhow::Error::msg)?;
    let targets = Targets::new(sources, args.target, args.port, args.ports);
    let per_pair = targets::local_port_count();
    if args.connections > per_pair * targets.pairs() as u64 {
        bail!(
            "{} connections need more 4-tuples than {} source IP(s) × {} port(s) × {} local ports \
             (net.ipv4.ip_local_port_range) = {} offer; add source IPs (--source-ips) or server ports (--ports)",
            args.connections,
            targets.sources.len(),
            args.ports,
            per_pair,
            per_pair * targets.pairs() as u64
        );
    }
    let protocol = AnyProtocol::new(&args.protocol, args.target).map_err(anyhow::Error::msg)?;
    let (plan, line) =
        layout::place("client", args.connections, 1, &args.workers).map_err(anyhow::Error::msg)?;
    if args.json {
        emit(&line);
    } else if args.workers.child_of.is_none() {
        println!(
            "layout: {} process(es) × {} thread(s), {} fd table(s) of {} connections \
             (hard nofile {}, {}% headroom{}), capacity {}; protocol {} ({} B of state a connection)",
            plan.procs,
            plan.threads_per_proc,
            plan.tables(),
            plan.conns_per_table,
            line.nofile_hard,
            (layout::HEADROOM * 100.0) as u32,
            if plan.unshare {
                ", unshare(CLONE_FILES) per thread"
            } else {
                ""
            },
            plan.capacity(),
            args.protocol.protocol.name(),
            protocol.state_bytes(),
        );
    }
    if plan.procs > 1 {
        supervise(&args, &plan)
    } else {
        connect_all(&args, &plan, targets, line.nofile_hard as usize, protocol)
    }
}

/// What the main loop knows at each tick.
struct Totals {
    stats: ClientStats,
    errors_total: u64,
    done: bool,
}

fn totals(all: &[Counters], target: u64, started: Instant, with_hists: bool) -> Totals {
    let mut errs = BTreeMap::new();
    for slot in 0..errors::SLOTS {
        let v: u64 = all.iter().map(|c| c.errors[slot].load(Relaxed)).sum();
        if v > 0 {
            errs.insert(errors::slot_name(slot).to_string(), v);
        }
    }
    for c in all {
        if let Ok(failures) = c.failures.lock() {
            for (f, v) in failures.iter() {
                *errs.entry(f.name().into_owned()).or_default() += v;
            }
        }
    }
    let verified = counters::sum(all, |c| &c.verified);
    let dropped = counters::sum(all, |c| &c.dropped);
    let done_at: Vec<u64> = all.iter().map(|c| c.done_at_us.load(Relaxed)).collect();
    let done = verified >= target;
    let time_to_target_s = if done {
        done_at.iter().max().map(|&us| us as f64 / 1e6)
    } else {
        None
    };
    let mut stats = ClientStats {
        event: "tick".into(),
        ts_ms: now_ms(),
        uptime_s: started.elapsed().as_secs_f64(),
        target,
        attempted: counters::sum(all, |c| &c.attempted),
        connecting: counters::sum(all, |c| &c.connecting),
        verified,
        open: verified.saturating_sub(dropped),
        dropped,
        errors: errs,
        procs: 1,
        time_to_target_s,
        ..Default::default()
    };
    if with_hists {
        let mut ch = hist::new();
        let mut rh = hist::new();
        for c in all {
            if let Ok(h) = c.connect_hist.lock() {
                let _ = ch.add(&*h);
            }
            if let Ok(h) = c.rtt_hist.lock() {
                let _ = rh.add(&*h);
            }
        }
        stats.connect_latency_us = Some(hist::percentiles(&ch));
        stats.connect_hist = Some(hist::encode(&ch));
        if !rh.is_empty() {
            stats.rtt_us = Some(hist::percentiles(&rh));
            stats.rtt_hist = Some(hist::encode(&rh));
        }
    }
    let errors_total = stats.errors.values().sum();
    Totals {
        stats,
        errors_total,
        done,
    }
}

/// Prints progress: JSON lines for the orchestrator, or the seed's human lines.
struct Progress {
    json: bool,
    last_verified: u64,
    last_at: Instant,
}

impl Progress {
    fn new(json: bool) -> Progress {
        Progress {
            json,
            last_verified: 0,
            last_at: Instant::now(),
        }
    }

    fn tick(&mut self, s: &ClientStats) {
        if self.json {
            emit(s);
        } else {
            let dt = self.last_at.elapsed().as_secs_f64().max(1e-3);
            let rate = (s.verified.saturating_sub(self.last_verified)) as f64 / dt;
            println!(
                "connections: {}, time_used: {} ms, rate: {:.0}/s, connecting: {}, errors: {}",
                s.verified,
                (s.uptime_s * 1000.0) as u64,
                rate,
                s.connecting,
                s.errors.values().sum::<u64>()
            );
        }
        self.last_verified = s.verified;
        self.last_at = Instant::now();
    }

    fn summary(&self, s: &ClientStats, reason: Option<&str>) {
        if self.json {
            emit(s);
            return;
        }
        match s.time_to_target_s {
            Some(t) => println!(
                "reached {} verified connections in {:.2} s ({:.0} connections/s)",
                s.verified,
                t,
                s.verified as f64 / t.max(1e-9)
            ),
            None => println!(
                "target not reached: {} of {} verified",
                s.verified, s.target
            ),
        }
        if let Some(p) = &s.connect_latency_us {
            println!(
                "connect latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        if let Some(p) = &s.rtt_us {
            println!(
                "round trip µs: p50 {} p90 {} p99 {} p99.9 {} max {} ({} messages)",
                p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
        if !s.errors.is_empty() {
            println!("errors: {}", describe_errors(&s.errors));
        }
        if let Some(r) = reason {
            println!("stopped: {r}");
        }
    }
}

fn describe_errors(errs: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<_> = errs.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why connecting was given up, with the most likely fix for the dominant errno.
fn abort_reason(args: &Args, errs: &BTreeMap<String, u64>, total: u64) -> String {
    let top = errs
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, _)| k.as_str());
    let last_port = u32::from(args.port) + u32::from(args.ports) - 1;
    let hint = match top {
        Some("ECONNREFUSED") => format!(
            "nothing accepts connections on {}:{}-{}: is {} running there?",
            args.target,
            args.port,
            last_port,
            match args.protocol.protocol {
                ProtocolKind::Echo => "c1m-server",
                _ => "the server",
            }
        ),
        Some("EADDRNOTAVAIL") => "the source ports of (source IP × server port) are used up: \
             add --source-ips or --ports, or widen net.ipv4.ip_local_port_range"
            .into(),
        Some("EMFILE") => "the per-table fd limit was hit: lower the connections per table \
             (more --procs) or raise the hard nofile limit"
            .into(),
        Some("ENFILE") => "the system-wide file limit was hit: raise fs.file-max".into(),
        Some("ENOBUFS") | Some("ENOMEM") => {
            "the kernel is out of socket memory: raise net.ipv4.tcp_mem or add RAM".into()
        }
        Some("ETIMEDOUT") => "connects time out: the server's accept queues or the network \
             cannot keep up; lower --rate or --window"
            .into(),
        _ => "see the errors above".into(),
    };
    format!(
        "{total} errors exceeded --max-errors {} ({}); {hint}",
        args.max_errors(),
        describe_errors(errs)
    )
}

fn connect_all(
    args: &Args,
    plan: &Layout,
    targets: Targets,
    fd_limit: usize,
    protocol: AnyProtocol,
) -> Result<u8> {
    let threads = plan.threads_per_proc;
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    let start = Arc::new(Barrier::new(threads + 1));
    let abort = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let targets = Arc::new(targets);
    let (ready_tx, ready_rx) = mpsc::channel();
    let n = args.connections;
    // Staged workers fill `width` at a time: one per core, but never more than there are.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let width = cores.min(threads);
    let stages = args.staged.then(|| Arc::new(worker::Stages::new(width)));
    for index in 0..threads {
        let t = threads as u64;
        // Only the active workers share the window and the rate.
        let split = if args.staged { width as u64 } else { t };
        let plan = Plan {
            index,
            threads,
            share: n / t + u64::from((index as u64) < n % t),
            window: (args.window / split).max(1),
            rate: args.rate.map(|r| r as f64 / split as f64),
            index_base: args.index_base,
            connect_timeout: args.connect_timeout.0,
            message_interval: args.message_interval.and_then(|s| s.0),
            unshare: plan.unshare,
            fd_limit,
            protocol: protocol.clone(),
            stages: stages.clone(),
            fastopen: args.fastopen,
        };
        let shared = Shared {
            counters: counters.clone(),
            targets: targets.clone(),
            start: start.clone(),
            abort: abort.clone(),
            epoch,
        };
        let ready_tx = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || match worker::setup(plan, shared) {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(()));
                    if let Err(e) = w.run() {
                        eprintln!("c1m-client: worker {index}: {e}");
                        std::process::exit(2);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .context("spawning a worker thread")?;
    }
    for _ in 0..threads {
        ready_rx
            .recv()
            .context("a worker thread died during setup")?
            .context("worker setup")?;
    }
    start.wait();
    let started = Instant::now();
    let offset_s = (started - epoch).as_secs_f64();
    let snapshot = |with_hists: bool| {
        let mut t = totals(&counters, n, started, with_hists);
        t.stats.time_to_target_s = t.stats.time_to_target_s.map(|s| (s - offset_s).max(0.0));
        t
    };
    let mut progress = Progress::new(args.json);
    let interval = Duration::from_millis(args.workers.interval_ms.max(10));
    let mut next_tick = started + interval;
    let mut hold_until: Option<Option<Instant>> = None;
    let mut reason = None;
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let mut t = snapshot(false);
        if reason.is_none() && t.errors_total > args.max_errors() {
            abort.store(true, Relaxed);
            reason = Some(abort_reason(args, &t.stats.errors, t.errors_total));
        }
        if Instant::now() >= next_tick {
            // Read only for the lines that show it: the loop polls every 10 ms.
            t.stats.rss_bytes = procfs::rss_bytes();
            progress.tick(&t.stats);
            next_tick += interval;
        }
        if t.done && hold_until.is_none() {
            hold_until = Some(args.hold.0.map(|h| Instant::now() + h));
        }
        if signals::stop_requested() || reason.is_some() {
            break;
        }
        if let Some(Some(until)) = hold_until {
            if Instant::now() >= until {
                break;
            }
        }
    }
    let mut last = snapshot(true);
    last.stats.rss_bytes = procfs::rss_bytes();
    last.stats.event = "summary".into();
    progress.summary(&last.stats, reason.as_deref());
    let ok = last.done && !last.stats.errors.contains_key("echo_mismatch");
    // Exit without joining: the kernel closes every socket (RST, via linger 0).
    std::process::exit(if ok { 0 } else { 1 })
}

/// Runs `plan.procs` worker processes, each with a slice of the connections, and reports the sum.
fn supervise(args: &Args, plan: &Layout) -> Result<u8> {
    let me = std::process::id().to_string();
    let k = plan.procs as u64;
    let n = args.connections;
    let mut base = args.index_base;
    let arg_lists = (0..k)
        .map(|i| {
            let share = n / k + u64::from(i < n % k);
            let mut a = vec![
                "--child-of".to_string(),
                me.clone(),
                "--json".into(),
                format!("--target={}", args.target),
                format!("--port={}", args.port),
                format!("--ports={}", args.ports),
                format!("--connections={share}"),
                format!("--window={}", (args.window / k).max(1)),
                format!("--threads={}", plan.threads_per_proc),
                format!("--index-base={base}"),
                format!("--interval-ms={}", args.workers.interval_ms),
                "--hold=forever".into(),
                format!("--max-errors={}", (args.max_errors() / k).max(1)),
            ];
            base += share;
            if !args.source_ips.is_empty() {
                a.push(format!("--source-ips={}", args.source_ips.join(",")));
            }
            if let Some(r) = args.rate {
                a.push(format!("--rate={}", (r / k).max(1)));
            }
            if let Some(Span(Some(m))) = args.message_interval {
                a.push(format!("--message-interval={}ms", m.as_millis()));
            }
            if let Span(Some(t)) = args.connect_timeout {
                a.push(format!("--connect-timeout={}ms", t.as_millis()));
            }
            if !plan.unshare {
                a.push("--no-unshare".into());
            }
            if args.fastopen {
                a.push("--fastopen".into());
            }
            a.extend(args.protocol.to_argv());
            a
        })
        .collect();
    let mut children = Children::spawn(arg_lists).context("starting worker processes")?;
    let count = children.len();
    let mut latest: Vec<Option<ClientStats>> = vec![None; count];
    let mut finals: Vec<Option<ClientStats>> = vec![None; count];
    let mut progress = Progress::new(args.json);
    let started = Instant::now();
    let interval = Duration::from_millis(args.workers.interval_ms.max(10));
    let mut next_tick = started + interval;
    let mut hold_until: Option<Option<Instant>> = None;
    let mut reason: Option<String> = None;
    let mut stopping = false;
    let merge = |stats: &[Option<ClientStats>], event: &str| {
        let mut total = ClientStats {
            event: event.into(),
            ts_ms: now_ms(),
            uptime_s: started.elapsed().as_secs_f64(),
            ..Default::default()
        };
        let mut ch = hist::new();
        let mut rh = hist::new();
        let mut ttt: Option<f64> = Some(0.0);
        for s in stats.iter().flatten() {
            total.absorb(s);
            ttt = match (ttt, s.time_to_target_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            if let Some(h) = s.connect_hist.as_deref().and_then(|h| hist::decode(h).ok()) {
                let _ = ch.add(h);
            }
            if let Some(h) = s.rtt_hist.as_deref().and_then(|h| hist::decode(h).ok()) {
                let _ = rh.add(h);
            }
        }
        total.target = n;
        total.time_to_target_s = if stats.iter().all(Option::is_some) {
            ttt
        } else {
            None
        };
        if !ch.is_empty() {
            total.connect_latency_us = Some(hist::percentiles(&ch));
            total.connect_hist = Some(hist::encode(&ch));
        }
        if !rh.is_empty() {
            total.rtt_us = Some(hist::percentiles(&rh));
            total.rtt_hist = Some(hist::encode(&rh));
        }
        total
    };
    loop {
        if !stopping {
            let now_total = merge(&latest, "tick");
            if reason.is_none() && now_total.errors_total() > args.max_errors() {
                reason = Some(abort_reason(
                    args,
                    &now_total.errors,
                    now_total.errors_total(),
                ));
            }
            if now_total.verified >= n && hold_until.is_none() {
                hold_until = Some(args.hold.0.map(|h| Instant::now() + h));
            }
            let hold_over = matches!(hold_until, Some(Some(u)) if Instant::now() >= u);
            if signals::stop_requested() || reason.is_some() || hold_over {
                stopping = true;
                children.terminate();
            } else if Instant::now() >= next_tick {
                progress.tick(&now_total);
                next_tick += interval;
            }
        }
        match children.lines.recv_timeout(Duration::from_millis(20)) {
            Ok((i, Some(l))) => {
                if let Ok(s) = serde_json::from_str::<ClientStats>(&l) {
                    if s.event == "summary" {
                        finals[i] = Some(s.clone());
                    }
                    latest[i] = Some(s);
                }
            }
            Ok((i, None)) => {
                if finals[i].is_none() && !stopping {
                    reason = Some(format!("worker process {i} exited unexpectedly"));
                    stopping = true;
                    children.terminate();
                }
                if finals[i].is_none() {
                    finals[i] = latest[i].clone();
                }
                if finals.iter().all(Option::is_some) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    children.wait();
    let total = merge(&finals, "summary");
    progress.summary(&total, reason.as_deref());
    let ok = total.verified >= n && !total.errors.contains_key("echo_mismatch") && reason.is_none();
    Ok(if ok { 0 } else { 1 })
}
