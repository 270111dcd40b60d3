//! `c1m-client` entry point: plan the layout, start workers (threads, or processes when asked),
//! report progress, hold, and exit 0 only when every connection was made and its echo verified.

use anyhow::{Context, Result};
use c1m_client::counters::{self, Counters};
use c1m_client::progress::Watcher;
use c1m_client::protocol::AnyProtocol;
use c1m_client::targets::Targets;
use c1m_client::worker::{self, Plan, Shared};
use c1m_proto::exit::{self, BadInput, Exit};
use c1m_proto::launch::{share, ClientSpec};
use c1m_proto::layout::{self, Layout};
use c1m_proto::stats::{emit, now_ms, ClientStats};
use c1m_proto::supervise::{self, Verdict, Watch};
use c1m_proto::threads::Workers;
use c1m_proto::{addrs, errors, hist, procfs, signals};
use clap::Parser;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    exit::main("c1m-client", || run(ClientSpec::parse()))
}

fn run(spec: ClientSpec) -> Result<Exit> {
    if !spec.workers.begin() {
        return Ok(Exit::Failed);
    }
    spec.ports.check().map_err(BadInput)?;
    let sources = addrs::expand_ips(&spec.source_ips).map_err(BadInput)?;
    let targets = Targets::new(sources, spec.target, spec.ports.first, spec.ports.count);
    let per_pair = addrs::local_port_count();
    if spec.connections > per_pair * targets.pairs() as u64 {
        return Err(BadInput(format!(
            "{} connections need more 4-tuples than {} source IP(s) × {} port(s) × {} local ports \
             (net.ipv4.ip_local_port_range) = {} offer; add source IPs (--source-ips) or server ports (--ports)",
            spec.connections,
            targets.sources.len(),
            spec.ports.count,
            per_pair,
            per_pair * targets.pairs() as u64
        ))
        .into());
    }
    let protocol = AnyProtocol::new(&spec.protocol, spec.target).map_err(BadInput)?;
    spec.protocol
        .check_message_interval(spec.message_interval.is_some())
        .map_err(BadInput)?;
    let (plan, line) =
        layout::place("client", spec.connections, 1, &spec.workers).map_err(BadInput)?;
    if spec.json {
        emit(&line);
    } else if spec.workers.child_of.is_none() {
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
            spec.protocol.protocol.name(),
            protocol.state_bytes(),
        );
    }
    if plan.procs > 1 {
        supervise(&spec, &plan)
    } else {
        connect_all(&spec, &plan, targets, line.nofile_hard as usize, protocol)
    }
}

/// The workers' counters summed into a stats line (histograms only when asked: they cost).
fn totals(all: &[Counters], target: u64, started: Instant, with_hists: bool) -> ClientStats {
    let mut errs = BTreeMap::new();
    for slot in 0..errors::SLOTS {
        let v: u64 = all.iter().map(|c| c.errors[slot].load(Relaxed)).sum();
        if v > 0 {
            errs.insert(errors::slot_name(slot).to_string(), v);
        }
    }
    let answer_timeouts = counters::sum(all, |c| &c.answer_timeouts);
    if answer_timeouts > 0 {
        errs.insert(errors::ANSWER_TIMEOUT.to_string(), answer_timeouts);
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
    let time_to_target_s = if verified >= target {
        all.iter()
            .map(|c| c.done_at_us.load(Relaxed))
            .max()
            .map(|us| us as f64 / 1e6)
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
        messages_sent: counters::sum(all, |c| &c.messages),
        messages_answered: counters::sum(all, |c| &c.answered),
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
    stats
}

fn connect_all(
    spec: &ClientSpec,
    plan: &Layout,
    targets: Targets,
    fd_limit: usize,
    protocol: AnyProtocol,
) -> Result<Exit> {
    let threads = plan.threads_per_proc;
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    let start = Arc::new(Barrier::new(threads + 1));
    let abort = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let targets = Arc::new(targets);
    let workers = Workers::new("c1m-client");
    let n = spec.connections;
    // Staged workers fill `width` at a time: one per core, but never more than there are.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let width = cores.min(threads);
    let stages = spec.staged.then(|| Arc::new(worker::Stages::new(width)));
    for index in 0..threads {
        // Only the active workers share the window and the rate.
        let split = if spec.staged {
            width as u64
        } else {
            threads as u64
        };
        let plan = Plan {
            index,
            threads,
            share: share(n, threads, index),
            window: (spec.window / split).max(1),
            rate: spec.rate.map(|r| r as f64 / split as f64),
            index_base: spec.index_base,
            connect_timeout: spec.connect_timeout.0,
            message_interval: spec.message_interval.and_then(|s| s.0),
            unshare: plan.unshare,
            fd_limit,
            protocol: protocol.clone(),
            stages: stages.clone(),
            fastopen: spec.fastopen,
        };
        let shared = Shared {
            counters: counters.clone(),
            targets: targets.clone(),
            start: start.clone(),
            abort: abort.clone(),
            epoch,
        };
        workers
            .spawn(index, move || worker::setup(plan, shared), |w| w.run())
            .context("spawning a worker thread")?;
    }
    workers.wait_ready(threads).context("worker setup")?;
    start.wait();
    let started = Instant::now();
    let offset_s = (started - epoch).as_secs_f64();
    let snapshot = |with_hists: bool| {
        let mut s = totals(&counters, n, started, with_hists);
        s.time_to_target_s = s.time_to_target_s.map(|t| (t - offset_s).max(0.0));
        s
    };
    let mut watch = Watcher::new(spec);
    let interval = Duration::from_millis(spec.workers.interval_ms.max(10));
    let mut next_tick = started + interval;
    let mut failure = None;
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let mut now = snapshot(false);
        let verdict = if signals::stop_requested() {
            Verdict::Done
        } else {
            watch.judge(&now)
        };
        match verdict {
            Verdict::Go => {}
            Verdict::Done => break,
            Verdict::Fail(why) => {
                abort.store(true, Relaxed);
                failure = Some(why);
                break;
            }
        }
        if Instant::now() >= next_tick {
            // Read only for the lines that show it: the loop polls every 10 ms.
            now.rss_bytes = procfs::rss_bytes();
            watch.tick(&now);
            next_tick += interval;
        }
    }
    let mut last = snapshot(true);
    last.rss_bytes = procfs::rss_bytes();
    last.event = "summary".into();
    watch.summary(&last, failure.as_deref());
    let exit = if watch.passed(&last, failure.as_deref()) {
        Exit::Ok
    } else {
        Exit::Failed
    };
    // Exit without joining: the kernel closes every socket (RST, via linger 0).
    std::process::exit(exit.code().into())
}

/// Runs `plan.procs` worker processes, each with a slice of the connections, and reports the sum.
fn supervise(spec: &ClientSpec, plan: &Layout) -> Result<Exit> {
    let specs = spec.worker_processes(plan, std::process::id());
    let mut watch = Watcher::new(spec);
    let interval = Duration::from_millis(spec.workers.interval_ms);
    let mut end =
        supervise::supervise(&specs, interval, &mut watch).context("starting worker processes")?;
    // A worker process that said nothing still had its part of the target.
    end.summary.target = spec.connections;
    let failure = end.failure.as_deref();
    watch.summary(&end.summary, failure);
    Ok(if watch.passed(&end.summary, failure) {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
