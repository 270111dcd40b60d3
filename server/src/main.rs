//! `c1m-server` entry point: place the model's connections, start its workers (threads, or
//! worker processes under one supervisor), print a JSON stats line every interval and a summary
//! on SIGTERM.

use anyhow::{Context, Result};
use c1m_proto::exit::{self, BadInput, Exit};
use c1m_proto::launch::ServerSpec;
use c1m_proto::layout::Layout;
use c1m_proto::model::ServerModel;
use c1m_proto::stats::{emit, LayoutLine, ServerStats, StatsLine};
use c1m_proto::supervise::{self, Watch};
use c1m_proto::{procfs, signals};
use c1m_server::counters;
use c1m_server::models::{self, MIN_STACK_KIB};
use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    exit::main("c1m-server", || run(ServerSpec::parse()))
}

fn run(spec: ServerSpec) -> Result<Exit> {
    if !spec.workers.begin() {
        return Ok(Exit::Failed);
    }
    spec.ports.check().map_err(BadInput)?;
    if spec.model == ServerModel::ThreadPerConn && spec.stack_kib < MIN_STACK_KIB {
        return Err(BadInput(format!(
            "--stack-kib {} is below the smallest stack a connection thread can run on ({MIN_STACK_KIB})",
            spec.stack_kib
        ))
        .into());
    }
    let (plan, line) = models::place(&spec).map_err(BadInput)?;
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

/// Runs the model's workers in this process and reports until told to stop.
fn serve(spec: &ServerSpec, plan: &Layout, fd_limit: usize, line: LayoutLine) -> Result<Exit> {
    let ctx = models::Ctx {
        spec,
        plan: *plan,
        fd_limit,
    };
    let counters = models::start(&ctx)?;
    emit(&line);
    let started = Instant::now();
    let tick = |event: &str| {
        let mut s = counters::snapshot(&counters);
        s.procs = 1;
        s.threads = procfs::threads();
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
    let specs = models::worker_specs(spec, plan).context("opening the listeners")?;
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
