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
    let mut children = Children::spawn(specs.iter().map(Spec::to_argv).collect())?;
    let mut parts: Vec<Part<T>> = (0..children.len()).map(|_| Part::Starting).collect();
    let merged = |parts: &[Part<T>]| T::merge(parts.iter().filter_map(Part::latest));
    let started = Instant::now();
    let interval = interval.max(Duration::from_millis(10));
    let mut next_tick = started + interval;
    let mut phase = Phase::Running;
    let mut failure: Option<String> = None;
    let mut ready = false;
    let mut now = T::default();
    loop {
        if let Phase::Running = phase {
            let verdict = if signals::stop_requested() {
                Verdict::Done
            } else {
                watch.judge(&now)
            };
            if let Verdict::Fail(why) = &verdict {
                failure = Some(why.clone());
            }
            if verdict == Verdict::Go {
                let at = Instant::now();
                if ready && at >= next_tick {
                    let mut line = now.clone();
                    line.stamp("tick", started.elapsed().as_secs_f64(), procfs::rss_bytes());
                    watch.tick(&line);
                    next_tick += interval;
                    if next_tick < at {
                        // Late (a slow host): the next tick one interval from now, not a burst.
                        next_tick = at + interval;
                    }
                }
            } else {
                phase = Phase::Stopping(Instant::now());
                children.terminate();
            }
        }
        if parts.iter().all(|p| matches!(p, Part::Over(_))) {
            break;
        }
        if let Phase::Stopping(since) = phase {
            if since.elapsed() > GRACE {
                children.kill();
                if let Some(i) = parts.iter().position(|p| !matches!(p, Part::Over(_))) {
                    failure.get_or_insert(format!(
                        "worker process {i} did not stop within {} s; killed",
                        GRACE.as_secs()
                    ));
                }
                parts.iter_mut().for_each(Part::close);
                break;
            }
        }
        match children.lines.recv_timeout(POLL) {
            Ok((i, Some(line))) => {
                parts[i].take(&line);
                now = merged(&parts);
                if !ready && !parts.iter().any(|p| matches!(p, Part::Starting)) {
                    ready = true;
                    watch.ready();
                }
            }
            Ok((i, None)) => {
                let early = !matches!(parts[i], Part::Over(_));
                parts[i].close();
                now = merged(&parts);
                if early && matches!(phase, Phase::Running) {
                    failure = Some(format!("worker process {i} exited unexpectedly"));
                    phase = Phase::Stopping(Instant::now());
                    children.terminate();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                parts.iter_mut().for_each(Part::close);
                break;
            }
        }
    }
    let failed = children.wait();
    let mut summary = merged(&parts);
    summary.stamp(
        "summary",
        started.elapsed().as_secs_f64(),
        procfs::rss_bytes(),
    );
    Ok(Ending {
        summary,
        failure,
        failed,
    })
}
