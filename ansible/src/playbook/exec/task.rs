//! Running one task on one host: its loop items in turn (`when` per item, arguments templated
//! and checked, the module called, `until` retried), then `register`, `changed_when`,
//! `failed_when`, and what it asks of the play (facts set, handlers notified, a fresh
//! connection).

use super::report::{Status, TaskResult};
use crate::playbook::modules::util::Staged;
use crate::playbook::modules::{Args, ModuleCtx, Outcome, TaskError};
use crate::playbook::{check_kind, Flatten, Loop, Task};
use crate::template::{Templar, Vars};
use c1m_transport::{Transport, TransportError};
use minijinja::Value as JValue;
use serde_json::{json, Map, Value as Json};
use std::path::PathBuf;
use std::time::Duration;

/// How the task's surroundings (blocks, role, play, command line) say to run it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub check: bool,
    pub diff: bool,
    pub ignore_errors: bool,
    pub no_log: bool,
    /// Where `src` files and templates are looked for, in order.
    pub search: Vec<PathBuf>,
}

/// What one task did.
pub struct Done {
    pub results: Vec<TaskResult>,
    /// The host must stop (a failure not ignored, or unreachable).
    pub stop: bool,
    pub unreachable: bool,
    /// Registered result and facts the task set (`set_fact`), to keep for later tasks.
    pub set: Vars,
    /// The task's result as `ansible_failed_result` would show it.
    pub last: Json,
}

pub type Connect<'a> = &'a dyn Fn() -> Result<Box<dyn Transport>, TransportError>;

/// Runs `task` (every loop item) with `vars` (resolved).
pub fn run(
    task: &Task,
    when: &[String],
    vars: &Vars,
    settings: &Settings,
    templar: &Templar,
    t: &mut Box<dyn Transport>,
    connect: Connect,
) -> Done {
    let mut done = Done {
        results: Vec::new(),
        stop: false,
        unreachable: false,
        set: Vars::new(),
        last: Json::Null,
    };
    let fail_all = |msg: String| {
        let mut r = TaskResult::new(Status::Failed, None, Some(msg.clone()));
        r.ignored = settings.ignore_errors;
        (r, json!({"failed": true, "changed": false, "msg": msg}))
    };
    let items: Option<Vec<Json>> = match &task.loop_ {
        None => None,
        Some(l) => match loop_items(l, templar, vars) {
            Ok(items) => Some(items),
            Err(msg) => {
                let (r, reg) = fail_all(msg);
                done.stop = !r.ignored;
                done.results.push(r);
                done.last = reg;
                return done;
            }
        },
    };
    let runs: Vec<Option<Json>> = match &items {
        None => vec![None],
        Some(items) => items.iter().cloned().map(Some).collect(),
    };
    let mut registered_items = Vec::new();
    let mut staged = Staged::default();
    let mut set_facts = Vars::new();
    for (index, item) in runs.into_iter().enumerate() {
        let mut v = vars.clone();
        v.extend(set_facts.clone());
        let mut label = None;
        if let (Some(i), Some(l)) = (&item, &task.loop_) {
            v.insert(l.var.clone(), i.clone());
            if let Some(iv) = &l.index_var {
                v.insert(iv.clone(), json!(index));
            }
            label = Some(match &l.label {
                Some(tpl) => {
                    match templar.render(&Json::String(tpl.clone()), &JValue::from_serialize(&v)) {
                        Ok(Json::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(_) => tpl.clone(),
                    }
                }
                None => item_label(i),
            });
        }
        let (res, reg, facts) = run_item(
            task,
            when,
            &v,
            settings,
            templar,
            t,
            connect,
            &mut staged,
            label,
        );
        set_facts.extend(facts);
        if res.status == Status::Unreachable {
            done.unreachable = true;
            done.stop = true;
        }
        if res.status == Status::Failed && !res.ignored {
            done.stop = true;
        }
        let lost = res.status == Status::Unreachable;
        let mut reg = reg;
        if let (Some(i), Some(l), Json::Object(m)) = (&item, &task.loop_, &mut reg) {
            m.insert(l.var.clone(), i.clone());
            m.insert("ansible_loop_var".into(), json!(l.var));
        }
        done.results.push(res);
        registered_items.push(reg);
        if lost {
            break;
        }
    }
    // The files the items changed, written once. Items that failed leave what the earlier ones
    // staged to be written, as when each item wrote its own change; a lost host writes nothing.
    let mut flush_failed = false;
    if !done.unreachable {
        if let Err((path, e)) = staged.flush(t.as_mut(), None) {
            let status = match &e {
                TaskError::Transport(te) if te.is_unreachable() => Status::Unreachable,
                _ => Status::Failed,
            };
            let mut r = TaskResult::new(status, None, Some(format!("writing {path}: {e}")));
            r.ignored = status == Status::Failed && settings.ignore_errors;
            if !r.ignored {
                done.stop = true;
            }
            done.unreachable |= status == Status::Unreachable;
            done.results.push(r);
            flush_failed = true;
        }
    }
    let value = if items.is_some() {
        let changed = registered_items.iter().any(|r| r["changed"] == json!(true));
        let failed = flush_failed || registered_items.iter().any(|r| r["failed"] == json!(true));
        json!({"results": registered_items, "changed": changed, "failed": failed,
               "msg": "All items completed", "skipped": registered_items.iter().all(|r| r["skipped"] == json!(true)) && !registered_items.is_empty()})
    } else {
        let mut one = registered_items.pop().unwrap_or(Json::Null);
        if flush_failed {
            if let Json::Object(m) = &mut one {
                m.insert("failed".into(), json!(true));
            }
        }
        one
    };
    done.set.extend(set_facts);
    if let Some(name) = &task.register {
        done.set.insert(name.clone(), value.clone());
    }
    done.last = value;
    done
}

/// The items of a loop: templated, then flattened as its keyword says.
fn loop_items(l: &Loop, templar: &Templar, vars: &Vars) -> Result<Vec<Json>, String> {
    let rendered = templar.render(&l.items, &JValue::from_serialize(vars))?;
    match (rendered, l.flatten) {
        (Json::Array(items), Flatten::OneLevel) => Ok(items
            .into_iter()
            .flat_map(|i| match i {
                Json::Array(inner) => inner,
                other => vec![other],
            })
            .collect()),
        (Json::Array(items), Flatten::None) => Ok(items),
        (Json::Object(map), Flatten::Dict) => Ok(map
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect()),
        (other, Flatten::Dict) => Err(format!("with_dict: expected a mapping, got {other}")),
        (other, _) => Err(format!("loop: expected a list, got {other}")),
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
    m.insert(
        "stderr_lines".into(),
        json!(o.stderr.lines().collect::<Vec<_>>()),
    );
    if !o.facts.is_empty() {
        m.insert("ansible_facts".into(), Json::Object(o.facts.clone()));
    }
    if let Some(msg) = failed.map(str::to_string).or(o.msg.clone()) {
        m.insert("msg".into(), json!(msg));
    }
    Json::Object(m)
}

/// One run of the module (one loop item): the result line, the registered value, the facts set.
#[allow(clippy::too_many_arguments)]
fn run_item(
    task: &Task,
    when: &[String],
    vars: &Vars,
    settings: &Settings,
    templar: &Templar,
    t: &mut Box<dyn Transport>,
    connect: Connect,
    staged: &mut Staged,
    label: Option<String>,
) -> (TaskResult, Json, Map<String, Json>) {
    let ctx = JValue::from_serialize(vars);
    let hide = |msg: String| {
        if settings.no_log {
            "the output has been hidden due to the fact that 'no_log: true' was specified for this result".to_string()
        } else {
            msg
        }
    };
    let fail = |msg: String| {
        let mut r = TaskResult::new(Status::Failed, label.clone(), Some(hide(msg.clone())));
        r.ignored = settings.ignore_errors;
        (
            r,
            json!({"failed": true, "changed": false, "msg": msg}),
            Map::new(),
        )
    };
    for cond in when {
        match templar.eval_condition(cond, &ctx) {
            Ok(true) => {}
            Ok(false) => {
                let msg = format!("Conditional result was False: {cond}");
                return (
                    TaskResult::new(Status::Skipped, label, Some(msg)),
                    json!({"skipped": true, "changed": false, "skip_reason": "Conditional result was False"}),
                    Map::new(),
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
    let attempts = task.until.as_ref().map_or(1, |u| u.retries.max(1) + 1);
    let mut attempt = 0;
    let (mut outcome, mut failed_msg, reg) = loop {
        attempt += 1;
        let mut replacement = None;
        let outcome = {
            let mut mctx = ModuleCtx {
                t: t.as_mut(),
                check: settings.check,
                diff: settings.diff,
                search: settings.search.clone(),
                staged,
                templar,
                vars,
                connect: Some(connect),
                replacement: &mut replacement,
            };
            (task.module.run)(&args, &mut mctx)
        };
        if let Some(fresh) = replacement {
            *t = fresh;
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(TaskError::Transport(e)) if e.is_unreachable() => {
                let msg = e.to_string();
                return (
                    TaskResult::new(Status::Unreachable, label, Some(msg.clone())),
                    json!({"unreachable": true, "msg": msg}),
                    Map::new(),
                );
            }
            Err(e) => return fail(e.to_string()),
        };
        let mut failed_msg: Option<String> = outcome.failed.clone();
        let mut outcome = outcome;
        if task.changed_when.is_some() || task.failed_when.is_some() || task.until.is_some() {
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
            if let Some(u) = &task.until {
                match all(&u.conditions) {
                    Ok(true) => {}
                    Ok(false) if attempt < attempts => {
                        std::thread::sleep(Duration::from_secs(u.delay_secs));
                        continue;
                    }
                    Ok(false) => {
                        failed_msg = Some(format!(
                            "Retried {} times: the until condition never held",
                            attempts - 1
                        ))
                    }
                    Err(e) => return fail(e),
                }
            }
        }
        let mut reg = registered_value(&outcome, failed_msg.as_deref());
        if task.until.is_some() {
            if let Json::Object(m) = &mut reg {
                m.insert("attempts".into(), json!(attempt));
            }
        }
        break (outcome, failed_msg, reg);
    };
    let facts = std::mem::take(&mut outcome.facts);
    if let Some(msg) = failed_msg.take() {
        let mut r = TaskResult::new(Status::Failed, label, Some(hide(msg)));
        r.ignored = settings.ignore_errors;
        r.changed = outcome.changed;
        if settings.diff && !settings.no_log {
            r.diffs = outcome.diffs;
        }
        return (r, reg, Map::new());
    }
    let status = if outcome.skipped {
        Status::Skipped
    } else if outcome.changed {
        Status::Changed
    } else {
        Status::Ok
    };
    let mut r = TaskResult::new(status, label, outcome.msg.clone().map(hide));
    if settings.diff && !settings.no_log {
        r.diffs = outcome.diffs;
    }
    (r, reg, facts)
}
