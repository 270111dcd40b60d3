//! `c1m-server` entry point: plan the fd-table layout, start the workers (threads, or
//! processes when asked), print a JSON stats line every interval and a summary on SIGTERM.

use anyhow::{bail, Context, Result};
use c1m_proto::fanout::Children;
use c1m_proto::layout::{self, Layout};
use c1m_proto::stats::{emit, now_ms, LayoutLine, ServerStats};
use c1m_proto::{procfs, signals, sys};
use c1m_server::args::Args;
use c1m_server::counters::{self, Counters};
use c1m_server::worker::{self, WorkerConfig};
use clap::Parser;
use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    signals::install();
    let args = Args::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("c1m-server: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<u8> {
    args.workers.take_control();
    if !args.workers.adopt_parent() {
        return Ok(0);
    }
    layout::check_ports(args.port, args.ports).map_err(anyhow::Error::msg)?;
    let (plan, line) = layout::place(
        "server",
        args.connections,
        1 + u64::from(args.ports),
        &args.workers,
    )
    .map_err(anyhow::Error::msg)?;
    let fd_limit = line.nofile_hard as usize;
    if plan.procs > 1 {
        if args.steer_source_base.is_some() {
            bail!("--steer-source-base works within one process; drop --procs or the steering");
        }
        supervise(&args, &plan, line)
    } else {
        serve(&args, &plan, fd_limit, line)
    }
}

/// Runs the workers of this process and reports until told to stop.
fn serve(args: &Args, plan: &Layout, fd_limit: usize, line: LayoutLine) -> Result<u8> {
    let addrs: Vec<SocketAddrV4> = (0..args.ports)
        .map(|i| SocketAddrV4::new(args.bind, args.port + i))
        .collect();
    let threads = plan.threads_per_proc;
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    let (ready_tx, ready_rx) = mpsc::channel();
    for index in 0..threads {
        let cfg = WorkerConfig {
            addrs: addrs.clone(),
            backlog: sys::somaxconn(),
            unshare: plan.unshare,
            fd_limit,
            steer: args
                .steer_source_base
                .filter(|_| index == 0)
                .map(|base| (base, threads as u32)),
            fastopen: args.fastopen,
        };
        let counters = counters.clone();
        let ready_tx = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || match worker::setup(&cfg, counters, index) {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(()));
                    if let Err(e) = w.run() {
                        eprintln!("c1m-server: worker {index}: {e}");
                        std::process::exit(1);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .context("spawning a worker thread")?;
        // One at a time: listeners join each port's SO_REUSEPORT group in worker order, which
        // the steering program's numbering relies on.
        ready_rx
            .recv()
            .context("a worker thread died during setup")?
            .context("worker setup")?;
    }
    emit(&line);
    let started = Instant::now();
    let tick = |event: &str| {
        let mut s = counters::snapshot(&counters);
        s.event = event.into();
        s.ts_ms = now_ms();
        s.uptime_s = started.elapsed().as_secs_f64();
        s.rss_bytes = procfs::rss_bytes();
        s.procs = 1;
        emit(&s);
    };
    wait_ticks(args.workers.interval_ms, || tick("tick"));
    tick("summary");
    // Exit without unwinding the workers: the kernel closes every socket (RST, via linger 0).
    std::process::exit(0)
}

/// Calls `tick` every interval until SIGINT/SIGTERM.
fn wait_ticks(interval_ms: u64, mut tick: impl FnMut()) {
    let interval = Duration::from_millis(interval_ms.max(10));
    let mut next = Instant::now() + interval;
    while !signals::stop_requested() {
        let now = Instant::now();
        if now >= next {
            tick();
            next += interval;
            if next < now {
                next = now + interval;
            }
        }
        std::thread::sleep((next - Instant::now().min(next)).min(Duration::from_millis(50)));
    }
}

/// Runs `plan.procs` worker processes and reports their sum.
fn supervise(args: &Args, plan: &Layout, mut line: LayoutLine) -> Result<u8> {
    let me = std::process::id().to_string();
    let per_proc = args.connections.div_ceil(plan.procs as u64);
    let arg_lists = (0..plan.procs)
        .map(|_| {
            let mut a = vec![
                "--child-of".to_string(),
                me.clone(),
                format!("--bind={}", args.bind),
                format!("--port={}", args.port),
                format!("--ports={}", args.ports),
                format!("--connections={per_proc}"),
                format!("--threads={}", plan.threads_per_proc),
                format!("--interval-ms={}", args.workers.interval_ms),
            ];
            if !plan.unshare {
                a.push("--no-unshare".into());
            }
            if args.fastopen {
                a.push("--fastopen".into());
            }
            a
        })
        .collect();
    let mut children = Children::spawn(arg_lists).context("starting worker processes")?;
    let n = children.len();
    let mut latest: Vec<Option<ServerStats>> = vec![None; n];
    let mut summaries = 0;
    let mut ready = 0;
    let mut open = n;
    let started = Instant::now();
    let interval = Duration::from_millis(args.workers.interval_ms.max(10));
    let mut next = Instant::now() + interval;
    let mut stopping = false;
    let sum = |latest: &[Option<ServerStats>], event: &str| {
        let mut total = ServerStats {
            event: event.into(),
            ts_ms: now_ms(),
            uptime_s: started.elapsed().as_secs_f64(),
            rss_bytes: procfs::rss_bytes(),
            ..Default::default()
        };
        for s in latest.iter().flatten() {
            total.absorb(s);
        }
        total
    };
    loop {
        if signals::stop_requested() && !stopping {
            stopping = true;
            children.terminate();
        }
        if stopping && (summaries == n || open == 0) {
            break;
        }
        match children.lines.recv_timeout(Duration::from_millis(50)) {
            Ok((i, Some(l))) => {
                if l.contains("\"layout\"") {
                    ready += 1;
                    if ready == n {
                        line.procs = n;
                        emit(&line);
                    }
                } else if let Ok(s) = serde_json::from_str::<ServerStats>(&l) {
                    if s.event == "summary" {
                        summaries += 1;
                    }
                    latest[i] = Some(s);
                }
            }
            Ok((i, None)) => {
                open -= 1;
                if !stopping {
                    eprintln!("c1m-server: worker process {i} exited; stopping the others");
                    children.terminate();
                    children.wait();
                    return Ok(1);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !stopping && Instant::now() >= next && ready == n {
            emit(&sum(&latest, "tick"));
            next += interval;
        }
    }
    emit(&sum(&latest, "summary"));
    let failed = children.wait();
    Ok(if failed == 0 { 0 } else { 1 })
}
