//! One supervisor for both binaries' worker processes: it starts one process per launch spec,
//! reads their JSON lines, merges their latest figures into one line of the same kind
//! ([`StatsLine::merge`]), prints a tick every interval once every process has placed its
//! connections, forwards SIGINT/SIGTERM as SIGTERM, and ends with one summary. A process that
//! ends before it was asked to stops the others, and so does a verdict of the binary's
//! [`Watch`]. What a binary prints and when its test is over is the binary's; the loop is this.

use crate::fanout::Children;
use crate::launch::Spec;
use crate::stats::{LayoutLine, StatsLine};
use crate::{procfs, signals};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// How long worker processes have for their summaries once asked to stop; then they are killed.
pub const GRACE: Duration = Duration::from_secs(30);

/// How often the loop looks at signals and verdicts when no line arrives.
const POLL: Duration = Duration::from_millis(20);

/// What a binary does with the merged figures.
pub trait Watch<T> {
    /// Every worker process has placed its connections (printed its layout line).
    fn ready(&mut self) {}
    /// Judges the merged figures so far; called at least every 20 ms until the stop.
    fn judge(&mut self, _now: &T) -> Verdict {
        Verdict::Go
    }
    /// Prints the merged tick line.
    fn tick(&mut self, line: &T);
}

/// A [`Watch`]'s decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going.
    Go,
    /// The test is over: stop the worker processes and sum up.
    Done,
    /// The test failed for this reason: stop the worker processes and sum up.
    Fail(String),
}

/// How supervision ended.
#[derive(Debug, Clone)]
pub struct Ending<T> {
    /// The summaries of the worker processes merged (a process that gave none counts with its
    /// last tick, or nothing).
    pub summary: T,
    /// Why the run stopped short: a [`Verdict::Fail`], or a worker process that ended early or
    /// did not stop.
    pub failure: Option<String>,
    /// Worker processes that exited with a failure status.
    pub failed: usize,
}

/// What one worker process has said so far.
enum Part<T> {
    Starting,
    Placed,
    Running(T),
    Over(Option<T>),
}

impl<T: StatsLine> Part<T> {
    fn take(&mut self, line: &str) {
        if matches!(self, Part::Over(_)) {
            return;
        }
        if serde_json::from_str::<LayoutLine>(line).is_ok_and(|l| l.event == "layout") {
            if matches!(self, Part::Starting) {
                *self = Part::Placed;
            }
        } else if let Ok(s) = serde_json::from_str::<T>(line) {
            *self = if s.event() == "summary" {
                Part::Over(Some(s))
            } else {
                Part::Running(s)
            };
        }
        // Any other line is not a figure (a human line, a warning): passed over.
    }

    /// Stdout closed: whatever the process said last is its final word.
    fn close(&mut self) {
        *self = match std::mem::replace(self, Part::Starting) {
            Part::Running(s) | Part::Over(Some(s)) => Part::Over(Some(s)),
            _ => Part::Over(None),
        };
    }

    fn latest(&self) -> Option<&T> {
        match self {
            Part::Running(s) | Part::Over(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// Where the run is.
enum Phase {
    Running,
    Stopping(Instant),
}

/// Runs one worker process per spec and supervises them until they are all over.
pub fn supervise<S: Spec, T: StatsLine>(
    specs: &[S],
    interval: Duration,
    watch: &mut impl Watch<T>,
) -> std::io::Result<Ending<T>> {
    let children = Children::spawn(specs.iter().map(Spec::to_argv).collect())?;
    let now = Instant::now();
    let interval = interval.max(Duration::from_millis(10));
    let mut run = Supervision {
        parts: (0..children.len()).map(|_| Part::Starting).collect(),
        children,
        watch,
        started: now,
        interval,
        next_tick: now + interval,
        phase: Phase::Running,
        failure: None,
        ready: false,
        now: T::default(),
    };
    loop {
        if let Phase::Running = run.phase {
            run.judge_and_tick();
        }
        if run.parts.iter().all(|p| matches!(p, Part::Over(_))) {
            break;
        }
        if matches!(run.phase, Phase::Stopping(since) if since.elapsed() > GRACE) {
            run.kill_the_rest();
            break;
        }
        match run.children.lines.recv_timeout(POLL) {
            Ok((i, Some(line))) => run.take(i, &line),
            Ok((i, None)) => run.closed(i),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                run.parts.iter_mut().for_each(Part::close);
                break;
            }
        }
    }
    Ok(run.finish())
}

/// One supervision under way.
struct Supervision<'w, T, W> {
    children: Children,
    parts: Vec<Part<T>>,
    watch: &'w mut W,
    started: Instant,
    interval: Duration,
    next_tick: Instant,
    phase: Phase,
    failure: Option<String>,
    /// Every part has placed its connections.
    ready: bool,
    /// The parts' latest lines merged.
    now: T,
}

impl<T: StatsLine, W: Watch<T>> Supervision<'_, T, W> {
    /// Asks the watch (a signal counts as done) and prints a tick when one is due.
    fn judge_and_tick(&mut self) {
        let verdict = if signals::stop_requested() {
            Verdict::Done
        } else {
            self.watch.judge(&self.now)
        };
        match verdict {
            Verdict::Go => {}
            Verdict::Done => return self.stop(None),
            Verdict::Fail(why) => return self.stop(Some(why)),
        }
        let at = Instant::now();
        if self.ready && at >= self.next_tick {
            let mut line = self.now.clone();
            line.stamp("tick", self.uptime_s(), procfs::rss_bytes());
            self.watch.tick(&line);
            self.next_tick += self.interval;
            if self.next_tick < at {
                // Late (a slow host): the next tick one interval from now, not a burst.
                self.next_tick = at + self.interval;
            }
        }
    }

    /// Asks every worker process to stop (SIGTERM); `failure` says why, if the test failed.
    fn stop(&mut self, failure: Option<String>) {
        if failure.is_some() {
            self.failure = failure;
        }
        self.phase = Phase::Stopping(Instant::now());
        self.children.terminate();
    }

    fn take(&mut self, i: usize, line: &str) {
        self.parts[i].take(line);
        self.now = self.merged();
        if !self.ready && !self.parts.iter().any(|p| matches!(p, Part::Starting)) {
            self.ready = true;
            self.watch.ready();
        }
    }

    /// Part `i`'s stdout closed; before it was asked to stop, that ends the run.
    fn closed(&mut self, i: usize) {
        let early = !matches!(self.parts[i], Part::Over(_));
        self.parts[i].close();
        self.now = self.merged();
        if early && matches!(self.phase, Phase::Running) {
            self.stop(Some(format!("worker process {i} exited unexpectedly")));
        }
    }

    /// The grace after the stop is over: what still runs is killed, and counts as it last said.
    fn kill_the_rest(&mut self) {
        self.children.kill();
        if let Some(i) = self.parts.iter().position(|p| !matches!(p, Part::Over(_))) {
            self.failure.get_or_insert(format!(
                "worker process {i} did not stop within {} s; killed",
                GRACE.as_secs()
            ));
        }
        self.parts.iter_mut().for_each(Part::close);
    }

    fn finish(mut self) -> Ending<T> {
        let failed = self.children.wait();
        let mut summary = self.merged();
        summary.stamp("summary", self.uptime_s(), procfs::rss_bytes());
        Ending {
            summary,
            failure: self.failure,
            failed,
        }
    }

    fn merged(&self) -> T {
        T::merge(self.parts.iter().filter_map(Part::latest))
    }

    fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
