//! Runs one play on one host over its transport: facts, tasks in order (with `when`, loops,
//! `register`, `changed_when`/`failed_when`), then the handlers that were notified. A failed task
//! stops this host only; a broken connection makes it unreachable.

use super::modules::util::Staged;
use super::modules::{Args, Diff, ModuleCtx, Outcome, TaskError};
use super::{check_kind, facts, Play, Task};
use crate::inventory::Host;
use crate::template::{Templar, Vars};
use c1m_transport::Transport;
use minijinja::Value as JValue;
use serde_json::{json, Value as Json};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    /// `-e KEY=VAL`: highest precedence.
    pub extra_vars: Vars,
}

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
}

/// A step of a play as printed: `Gathering Facts`, a task, or a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub title: String,
    pub handler: bool,
    /// Order within the play, so results of all hosts can be printed task by task.
    pub index: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub ignored: u32,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.ok += o.ok;
        self.changed += o.changed;
        self.unreachable += o.unreachable;
        self.failed += o.failed;
        self.skipped += o.skipped;
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
    fn record(&mut self, step: Step, results: Vec<TaskResult>) {
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
            if any(Status::Changed) {
                self.stats.changed += 1;
            }
            if results.iter().any(|r| r.ignored) {
                self.stats.ignored += 1;
            }
        }
        self.steps.push((step, results));
    }
}

/// Everything about the host that does not change during the play.
pub struct HostContext<'a> {
    pub host: &'a Host,
    /// Ansible's `groups` magic variable.
    pub groups: Json,
    pub play_hosts: Vec<String>,
    pub playbook_dir: &'a Path,
}

pub fn run_play(
    play: &Play,
    hc: &HostContext,
    t: &mut dyn Transport,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> HostReport {
    let templar = Templar::new();
    let mut report = HostReport {
        host: hc.host.name.clone(),
        ..HostReport::default()
    };
    let mut base: Vars = hc.host.vars.clone();
    base.insert("inventory_hostname".into(), json!(hc.host.name));
    base.insert(
        "inventory_hostname_short".into(),
        json!(hc.host.name.split('.').next().unwrap_or_default()),
    );
    base.insert(
        "group_names".into(),
        json!(hc
            .host
            .groups
            .iter()
            .filter(|g| *g != "all")
            .collect::<Vec<_>>()),
    );
    base.insert("groups".into(), hc.groups.clone());
    base.insert("ansible_play_hosts".into(), json!(hc.play_hosts));
    base.insert("ansible_check_mode".into(), json!(opts.check));
    base.insert("ansible_diff_mode".into(), json!(opts.diff));
    base.insert(
        "playbook_dir".into(),
        json!(hc.playbook_dir.display().to_string()),
    );

    let mut index = 0;
    if play.gather_facts {
        progress("Gathering Facts");
        let step = Step {
            title: "Gathering Facts".into(),
            handler: false,
            index,
        };
        match facts::gather(t) {
            Ok(f) => {
                for (k, v) in &f {
                    base.insert(format!("ansible_{k}"), v.clone());
                }
                base.insert("ansible_facts".into(), Json::Object(f));
                report.record(step, vec![result(Status::Ok, None, None)]);
            }
            Err(e) => {
                let status = if e.is_unreachable() {
                    Status::Unreachable
                } else {
                    Status::Failed
                };
                report.record(step, vec![result(status, None, Some(e.to_string()))]);
                report.stopped = true;
                return report;
            }
        }
    }
    base.extend(play.vars.clone());

    let mut registered = Vars::new();
    let mut notified: Vec<String> = Vec::new();
    for task in &play.tasks {
        index += 1;
        let title = render_title(&templar, &task.title(), &base);
        progress(&title);
        let step = Step {
            title,
            handler: false,
            index,
        };
        let (results, stop) = run_task(
            task,
            &base,
            &mut registered,
            hc.playbook_dir,
            &templar,
            t,
            opts,
        );
        if results.iter().any(|r| r.status == Status::Changed) {
            for n in &task.notify {
                if !notified.contains(n) {
                    notified.push(n.clone());
                }
            }
        }
        report.record(step, results);
        if stop {
            report.stopped = true;
            return report;
        }
    }
    for handler in &play.handlers {
        index += 1;
        let wanted = handler
            .name
            .iter()
            .chain(handler.listen.iter())
            .any(|n| notified.contains(n));
        if !wanted {
            continue;
        }
        progress(&handler.title());
        let step = Step {
            title: handler.title(),
            handler: true,
            index,
        };
        let (results, stop) = run_task(
            handler,
            &base,
            &mut registered,
            hc.playbook_dir,
            &templar,
            t,
            opts,
        );
        report.record(step, results);
        if stop {
            report.stopped = true;
            return report;
        }
    }
    report
}

/// Task names may use play vars, as in Ansible; a name that does not render is shown as written.
fn render_title(templar: &Templar, title: &str, vars: &Vars) -> String {
    if !crate::template::is_template(title) {
        return title.to_string();
    }
    let mut v = vars.clone();
    let _ = templar.resolve_vars(&mut v);
    match templar.render(
        &Json::String(title.to_string()),
        &JValue::from_serialize(&v),
    ) {
        Ok(Json::String(s)) => s,
        _ => title.to_string(),
    }
}

fn result(status: Status, item: Option<String>, msg: Option<String>) -> TaskResult {
    TaskResult {
        status,
        item,
        msg,
        diffs: Vec::new(),
        ignored: false,
    }
}

fn item_label(item: &Json) -> String {
    match item {
        Json::String(s) => s.clone(),
        Json::Object(m) => m
            .get("name")
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| item.to_string()),
        other => other.to_string(),
    }
}

/// Runs one task (all its loop items); returns its results and whether the host must stop.
fn run_task(
    task: &Task,
    base: &Vars,
    registered: &mut Vars,
    playbook_dir: &Path,
    templar: &Templar,
    t: &mut dyn Transport,
    opts: &RunOptions,
) -> (Vec<TaskResult>, bool) {
    let mut vars = base.clone();
    vars.extend(registered.clone());
    vars.extend(task.vars.clone());
    vars.extend(opts.extra_vars.clone());
    if let Err(e) = templar.resolve_vars(&mut vars) {
        return (
            vec![result(Status::Failed, None, Some(e))],
            !task.ignore_errors,
        );
    }
    // `check_mode: false` on a task runs it for real under --check (read-only probes).
    let opts = &RunOptions {
        check: task.check_mode.map_or(opts.check, |c| c),
        diff: opts.diff,
        extra_vars: Vars::new(),
    };
    let items: Option<Vec<Json>> = match &task.loop_ {
        None => None,
        Some(l) => match templar.render(l, &JValue::from_serialize(&vars)) {
            Ok(Json::Array(items)) if task.loop_flatten => Some(
                items
                    .into_iter()
                    .flat_map(|i| match i {
                        Json::Array(inner) => inner,
                        other => vec![other],
                    })
                    .collect(),
            ),
            Ok(Json::Array(items)) => Some(items),
            Ok(other) => {
                let msg = format!("loop: expected a list, got {other}");
                return (
                    vec![result(Status::Failed, None, Some(msg))],
                    !task.ignore_errors,
                );
            }
            Err(e) => {
                return (
                    vec![result(Status::Failed, None, Some(e))],
                    !task.ignore_errors,
                )
            }
        },
    };
    let runs: Vec<Option<Json>> = match &items {
        None => vec![None],
        Some(items) => items.iter().cloned().map(Some).collect(),
    };
    let mut results = Vec::new();
    let mut registered_items = Vec::new();
    let mut stop = false;
    let mut staged = Staged::default();
    for item in runs {
        let mut v = vars.clone();
        if let Some(i) = &item {
            v.insert("item".into(), i.clone());
        }
        let label = item.as_ref().map(item_label);
        let (res, reg) = run_once(task, &v, playbook_dir, templar, t, &mut staged, opts, label);
        if res.status == Status::Unreachable || (res.status == Status::Failed && !res.ignored) {
            stop = true;
        }
        results.push(res);
        registered_items.push(reg);
        if stop
            && results
                .last()
                .is_some_and(|r| r.status == Status::Unreachable)
        {
            break;
        }
    }
    // The files the items changed, written once. Items that failed leave what the earlier ones
    // staged to be written, as when each item wrote its own change; a lost host writes nothing.
    let lost = results.iter().any(|r| r.status == Status::Unreachable);
    let mut flush_failed = false;
    if !lost {
        if let Err((path, e)) = staged.flush(t, None) {
            let status = match &e {
                TaskError::Transport(te) if te.is_unreachable() => Status::Unreachable,
                _ => Status::Failed,
            };
            let mut r = result(status, None, Some(format!("writing {path}: {e}")));
            r.ignored = status == Status::Failed && task.ignore_errors;
            if !r.ignored {
                stop = true;
            }
            results.push(r);
            flush_failed = true;
        }
    }
    if let Some(name) = &task.register {
        let value = if items.is_some() {
            let changed = registered_items.iter().any(|r| r["changed"] == json!(true));
            let failed =
                flush_failed || registered_items.iter().any(|r| r["failed"] == json!(true));
            json!({"results": registered_items, "changed": changed, "failed": failed})
        } else {
            let mut one = registered_items.pop().unwrap_or(Json::Null);
            if flush_failed {
                if let Json::Object(m) = &mut one {
                    m.insert("failed".into(), json!(true));
                }
            }
            one
        };
        registered.insert(name.clone(), value);
    }
    (results, stop)
}

fn registered_value(o: &Outcome, failed: Option<&str>) -> Json {
    let mut m = o.extra.clone();
    m.insert("changed".into(), json!(o.changed));
    m.insert("failed".into(), json!(failed.is_some()));
    m.insert("skipped".into(), json!(o.skipped));
    if let Some(rc) = o.rc {
        m.insert("rc".into(), json!(rc));
    }
    m.insert("stdout".into(), json!(o.stdout));
    m.insert("stderr".into(), json!(o.stderr));
    m.insert(
        "stdout_lines".into(),
        json!(o.stdout.lines().collect::<Vec<_>>()),
    );
    if let Some(msg) = failed.map(str::to_string).or(o.msg.clone()) {
        m.insert("msg".into(), json!(msg));
    }
    Json::Object(m)
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    task: &Task,
    vars: &Vars,
    playbook_dir: &Path,
    templar: &Templar,
    t: &mut dyn Transport,
    staged: &mut Staged,
    opts: &RunOptions,
    label: Option<String>,
) -> (TaskResult, Json) {
    let ctx = JValue::from_serialize(vars);
    let fail = |msg: String| {
        let mut r = result(Status::Failed, label.clone(), Some(msg.clone()));
        r.ignored = task.ignore_errors;
        (r, json!({"failed": true, "changed": false, "msg": msg}))
    };
    for cond in &task.when {
        match templar.eval_condition(cond, &ctx) {
            Ok(true) => {}
            Ok(false) => {
                let msg = format!("Conditional result was False: {cond}");
                return (
                    result(Status::Skipped, label, Some(msg)),
                    json!({"skipped": true, "changed": false}),
                );
            }
            Err(e) => return fail(e),
        }
    }
    let mut args = Args {
        module: task.module.fqcn,
        ..Args::default()
    };
    for (name, raw) in &task.args {
        // `debug: var=x` shows the variable's value.
        let raw = if task.module.short == "debug" && name == "var" {
            json!(format!("{{{{ {} }}}}", raw.as_str().unwrap_or_default()))
        } else {
            raw.clone()
        };
        match templar.render(&raw, &ctx) {
            Ok(v) => {
                if let Some(spec) = task.module.canonical_arg(name) {
                    if let Err(expected) = check_kind(spec.kind, &v) {
                        return fail(format!(
                            "{}: argument {name}: expected {expected}, got {v}",
                            task.module.fqcn
                        ));
                    }
                }
                args.map.insert(name.clone(), v);
            }
            Err(e) => return fail(format!("argument {name}: {e}")),
        }
    }
    let mut mctx = ModuleCtx {
        t,
        check: opts.check,
        diff: opts.diff,
        playbook_dir: playbook_dir.to_path_buf(),
        staged,
    };
    let outcome = (task.module.run)(&args, &mut mctx);
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(TaskError::Transport(e)) if e.is_unreachable() => {
            let msg = e.to_string();
            return (
                result(Status::Unreachable, label, Some(msg.clone())),
                json!({"unreachable": true, "msg": msg}),
            );
        }
        Err(e) => return fail(e.to_string()),
    };
    let mut failed_msg: Option<String> = outcome.failed.clone();
    if task.changed_when.is_some() || task.failed_when.is_some() {
        let mut v = vars.clone();
        let reg = registered_value(&outcome, failed_msg.as_deref());
        if let Some(name) = &task.register {
            v.insert(name.clone(), reg.clone());
        }
        if let Json::Object(m) = &reg {
            for (k, val) in m {
                v.entry(k.clone()).or_insert(val.clone());
            }
        }
        let c = JValue::from_serialize(&v);
        let all = |conds: &Vec<String>| -> Result<bool, String> {
            for cond in conds {
                if !templar.eval_condition(cond, &c)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if let Some(conds) = &task.changed_when {
            match all(conds) {
                Ok(b) => outcome.changed = b,
                Err(e) => return fail(e),
            }
        }
        if let Some(conds) = &task.failed_when {
            match all(conds) {
                Ok(true) => failed_msg = Some("failed_when condition is true".into()),
                Ok(false) => failed_msg = None,
                Err(e) => return fail(e),
            }
        }
    }
    let reg = registered_value(&outcome, failed_msg.as_deref());
    if let Some(msg) = failed_msg {
        let (mut r, _) = fail(msg);
        r.diffs = outcome.diffs;
        return (r, reg);
    }
    let status = if outcome.skipped {
        Status::Skipped
    } else if outcome.changed {
        Status::Changed
    } else {
        Status::Ok
    };
    let mut r = result(status, label, outcome.msg.clone());
    r.diffs = if opts.diff {
        outcome.diffs.clone()
    } else {
        Vec::new()
    };
    (r, reg)
}
