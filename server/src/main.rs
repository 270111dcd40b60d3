//! `c1m-server` entry point: plan the fd-table layout, start the workers (threads, or
//! processes when asked), print a JSON stats line every interval and a summary on SIGTERM.

use anyhow::{Context, Result};
use c1m_proto::exit::{self, BadInput, Exit};
use c1m_proto::launch::ServerSpec;
use c1m_proto::layout::{self, Layout};
use c1m_proto::stats::{emit, LayoutLine, ServerStats, StatsLine};
use c1m_proto::supervise::{self, Watch};
use c1m_proto::threads::Workers;
use c1m_proto::{procfs, signals, sys};
use c1m_server::counters::{self, Counters};
use c1m_server::worker::{self, WorkerConfig};
use clap::Parser;
use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    exit::main("c1m-server", || run(ServerSpec::parse()))
}

fn run(spec: ServerSpec) -> Result<Exit> {
    if !spec.workers.begin() {
        return Ok(Exit::Failed);
    }
    spec.ports.check().map_err(BadInput)?;
    let (plan, line) = layout::place(
        "server",
        spec.connections,
        1 + u64::from(spec.ports.count),
        &spec.workers,
    )
    .map_err(BadInput)?;
    let fd_limit = line.nofile_hard as usize;
    if plan.procs > 1 {
        if spec.steer_source_base.is_some() {
            return Err(BadInput(
                "--steer-source-base works within one process; drop --procs or the steering".into(),
            )
            .into());
        }
        supervise(&spec, &plan, line)
    } else {
        serve(&spec, &plan, fd_limit, line)
    }
}

/// Runs the workers of this process and reports until told to stop.
fn serve(spec: &ServerSpec, plan: &Layout, fd_limit: usize, line: LayoutLine) -> Result<Exit> {
    let addrs: Vec<SocketAddrV4> = spec
        .ports
        .iter()
        .map(|port| SocketAddrV4::new(spec.bind, port))
        .collect();
    let threads = plan.threads_per_proc;
    let counters: Arc<Vec<Counters>> =
        Arc::new((0..threads).map(|_| Counters::default()).collect());
    let workers = Workers::new("c1m-server");
    for index in 0..threads {
        let cfg = WorkerConfig {
            addrs: addrs.clone(),
            backlog: sys::somaxconn(),
            unshare: plan.unshare,
            fd_limit,
            steer: spec
                .steer_source_base
                .filter(|_| index == 0)
                .map(|base| (base, threads as u32)),
        };
        let counters = counters.clone();
        workers
            .spawn(
                index,
                move || worker::setup(&cfg, counters, index),
                |w| w.run(),
            )
            .context("spawning a worker thread")?;
        // One at a time: listeners join each port's SO_REUSEPORT group in worker order, which
        // the steering program's numbering relies on.
        workers.wait_ready(1).context("worker setup")?;
    }
    emit(&line);
    let started = Instant::now();
    let tick = |event: &str| {
        let mut s = counters::snapshot(&counters);
        s.procs = 1;
        s.stamp(event, started.elapsed().as_secs_f64(), procfs::rss_bytes());
        emit(&s);
    };
    wait_ticks(spec.workers.interval_ms, || tick("tick"));
    tick("summary");
    // Exit without unwinding the workers: the kernel closes every socket (RST, via linger 0).
    std::process::exit(Exit::Ok.code().into())
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

/// Prints the server's lines for its worker processes: the layout once all listen, the sums.
struct Lines {
    layout: LayoutLine,
}

impl Watch<ServerStats> for Lines {
    fn ready(&mut self) {
        emit(&self.layout);
    }

    fn tick(&mut self, line: &ServerStats) {
        emit(line);
    }
}

/// Runs `plan.procs` worker processes and reports their sum.
fn supervise(spec: &ServerSpec, plan: &Layout, mut layout: LayoutLine) -> Result<Exit> {
    let specs = spec.worker_processes(plan, std::process::id());
    layout.procs = specs.len();
    let interval = Duration::from_millis(spec.workers.interval_ms);
    let end = supervise::supervise(&specs, interval, &mut Lines { layout })
        .context("starting worker processes")?;
    emit(&end.summary);
    if let Some(why) = &end.failure {
        eprintln!("c1m-server: {why}; stopped the others");
    }
    Ok(if end.failure.is_none() && end.failed == 0 {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
