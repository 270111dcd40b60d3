//! What running a play on one host produced: a result per task (and loop item), in steps that
//! line up across hosts, and the recap counts as Ansible keeps them.

use crate::playbook::modules::Diff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Failed,
    Skipped,
    Unreachable,
}

/// One line of output: a task (or one loop item of it) on one host.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub status: Status,
    pub item: Option<String>,
    pub msg: Option<String>,
    pub diffs: Vec<Diff>,
    /// Failed but `ignore_errors: true`.
    pub ignored: bool,
    /// A failure that had changed something (a command that ran and exited non-zero): Ansible
    /// counts it as changed too when the failure is ignored.
    pub changed: bool,
    /// What the output shows instead of the status line (`included: FILE for HOST`).
    pub note: Option<String>,
}

impl TaskResult {
    pub fn new(status: Status, item: Option<String>, msg: Option<String>) -> TaskResult {
        TaskResult {
            status,
            item,
            msg,
            diffs: Vec::new(),
            ignored: false,
            changed: status == Status::Changed,
            note: None,
        }
    }
}

/// A step of a play as printed: `Gathering Facts`, a task, or a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub title: String,
    pub handler: bool,
    /// Where the step is in the play (section, positions in blocks, include iterations): the
    /// same step has the same key on every host, and keys sort in the play's order.
    pub key: Vec<u32>,
}

/// How a step counts in the recap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// As a task: ok/changed/failed/skipped/unreachable.
    Task,
    /// Not at all (`include_role`, `meta`): shown, not counted.
    Not,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.ok += o.ok;
        self.changed += o.changed;
        self.unreachable += o.unreachable;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.rescued += o.rescued;
        self.ignored += o.ignored;
    }
}

#[derive(Debug, Clone, Default)]
pub struct HostReport {
    pub host: String,
    pub steps: Vec<(Step, Vec<TaskResult>)>,
    pub stats: Stats,
    /// The host failed or was unreachable: later plays skip it.
    pub stopped: bool,
}

impl HostReport {
    pub fn new(host: &str) -> HostReport {
        HostReport {
            host: host.to_string(),
            ..HostReport::default()
        }
    }

    pub fn record(&mut self, step: Step, results: Vec<TaskResult>, counted: Counted) {
        if counted == Counted::Task {
            // One count per task as Ansible does, whatever the number of loop items.
            let any = |s: Status| results.iter().any(|r| r.status == s && !r.ignored);
            if any(Status::Unreachable) {
                self.stats.unreachable += 1;
            } else if any(Status::Failed) {
                self.stats.failed += 1;
            } else if results.iter().all(|r| r.status == Status::Skipped) && !results.is_empty() {
                self.stats.skipped += 1;
            } else {
                self.stats.ok += 1;
                if results.iter().any(|r| r.changed) {
                    self.stats.changed += 1;
                }
                if results.iter().any(|r| r.ignored) {
                    self.stats.ignored += 1;
                }
            }
        }
        self.steps.push((step, results));
    }

    /// A failure a `rescue` section took over: Ansible counts it rescued, not failed.
    pub fn rescue_failure(&mut self) {
        if self.stats.failed > 0 {
            self.stats.failed -= 1;
            self.stats.rescued += 1;
        }
    }

    /// Whether the last recorded step failed (not ignored).
    pub fn last_failed(&self) -> bool {
        self.steps
            .last()
            .is_some_and(|(_, rs)| rs.iter().any(|r| r.status == Status::Failed && !r.ignored))
    }
}
