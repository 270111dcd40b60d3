//! Runs one play on one host over its transport: facts, `vars_files`, then `pre_tasks`,
//! roles and `tasks`, `post_tasks`, each section followed by the handlers it notified. Blocks
//! run their `rescue` when a task fails and their `always` whatever happens; includes load
//! their tasks when reached; `--tags`/`--skip-tags` pick the tasks. A failed task stops this
//! host only; a broken connection makes it unreachable.
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`report`] | results, steps and recap counts |
//! | `task` | one task: loop, conditions, module, register |
//! | `vars` | the variables a task sees, in Ansible's precedence |

pub mod report;
mod task;
mod vars;

pub use report::{Counted, HostReport, Stats, Status, Step, TaskResult};

use super::parse::handler_names;
use super::roles::Role;
use super::tags::Selection;
use super::{
    facts, Block, Include, IncludeWhat, Item, Loader, Meta, MetaAction, Play, Scope, Task,
};
use crate::inventory::Host;
use crate::template::{Templar, Vars};
use c1m_transport::{Become, Transport};
use minijinja::Value as JValue;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub check: bool,
    pub diff: bool,
    /// `-e`: highest precedence.
    pub extra_vars: Vars,
    /// `--tags` / `--skip-tags`.
    pub tags: Selection,
    /// ansible.cfg's `become` and `become_user`, for plays that do not say.
    pub become_default: Option<bool>,
    pub become_user_default: Option<String>,
    /// ansible.cfg's `roles_path`, for roles included at run time.
    pub roles_path: Vec<PathBuf>,
}

/// Everything about the host that does not change during the play.
pub struct HostContext<'a> {
    pub host: &'a Host,
    /// Its inventory vars, with `group_vars/`/`host_vars/` beside the playbook merged in.
    pub vars: Vars,
    /// Ansible's `groups` magic variable.
    pub groups: Json,
    pub play_hosts: Vec<String>,
    pub playbook_dir: &'a Path,
    pub inventory_file: Option<PathBuf>,
}

/// What a host keeps from one play to the next.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// Gathered facts (`ansible_facts`).
    pub facts: Option<serde_json::Map<String, Json>>,
    /// Registered results and `set_fact` values: above play vars, as Ansible's per-host fact
    /// cache for the run.
    pub set_facts: Vars,
}

/// How a sequence of tasks ended for this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Failed,
    Unreachable,
    /// `meta: end_host` / `end_play`: nothing more of this play here, without failing.
    End,
}

/// The keywords around a task, innermost last.
#[derive(Clone, Default)]
struct Chain<'s> {
    scopes: Vec<&'s Scope>,
    role: Option<Arc<Role>>,
}

impl<'s> Chain<'s> {
    fn with(&self, scope: &'s Scope, role: Option<Arc<Role>>) -> Chain<'s> {
        let mut c = self.clone();
        c.scopes.push(scope);
        if role.is_some() {
            c.role = role;
        }
        c
    }

    fn tags(&self, own: &[String]) -> Vec<String> {
        let mut t: Vec<String> = self
            .scopes
            .iter()
            .flat_map(|s| s.tags.iter().cloned())
            .chain(own.iter().cloned())
            .collect();
        t.sort();
        t.dedup();
        t
    }

    fn when(&self, own: &[String]) -> Vec<String> {
        self.scopes
            .iter()
            .flat_map(|s| s.when.iter().cloned())
            .chain(own.iter().cloned())
            .collect()
    }

    /// The innermost scope (the task's own first) that says.
    fn pick<T: Clone>(&self, own: &Scope, f: impl Fn(&Scope) -> Option<T>) -> Option<T> {
        f(own).or_else(|| self.scopes.iter().rev().find_map(|s| f(s)))
    }
}

pub type Connect<'a> = task::Connect<'a>;

/// One pass of an include's loop.
struct Iteration {
    var: String,
    item: Json,
    index_var: Option<String>,
    index: usize,
}

/// What an include brought for one pass: its tasks, their role, and the name shown.
struct Included {
    items: Arc<Vec<Item>>,
    role: Option<Arc<Role>>,
    shown: String,
}

struct Walk<'a> {
    play: &'a Play,
    hc: &'a HostContext<'a>,
    t: &'a mut Box<dyn Transport>,
    connect: Connect<'a>,
    opts: &'a RunOptions,
    state: &'a mut HostState,
    templar: Templar,
    loader: Loader,
    report: HostReport,
    /// Handler names (and `listen` topics) notified since the last flush.
    notified: Vec<String>,
    /// Handlers of roles included at run time.
    more_handlers: Vec<Task>,
    /// Vars of `vars_files`, read for this host when the play starts.
    files_vars: Vars,
    /// `ansible_failed_task` / `ansible_failed_result` while a rescue runs.
    failure: Vars,
    progress: &'a dyn Fn(&str),
}

/// Runs `play` on one host over `t` (replaced when a task reconnects).
pub fn run_play(
    play: &Play,
    hc: &HostContext,
    t: &mut Box<dyn Transport>,
    connect: Connect,
    state: &mut HostState,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> HostReport {
    let mut w = Walk {
        play,
        hc,
        t,
        connect,
        opts,
        state,
        templar: Templar::new(),
        loader: Loader::new(opts.roles_path.clone()),
        report: HostReport::new(&hc.host.name),
        notified: Vec::new(),
        more_handlers: Vec::new(),
        files_vars: Vars::new(),
        failure: Vars::new(),
        progress,
    };
    let flow = w.play();
    let mut report = w.report;
    report.stopped = matches!(flow, Flow::Failed | Flow::Unreachable);
    report
}

/// A step that failed before any task ran (facts, vars_files).
fn failed_step(report: &mut HostReport, title: &str, key: Vec<u32>, status: Status, msg: String) {
    report.record(
        Step {
            title: title.to_string(),
            handler: false,
            key,
        },
        vec![TaskResult::new(status, None, Some(msg))],
        Counted::Task,
    );
}

impl<'a> Walk<'a> {
    fn root_scope(&self) -> Scope {
        Scope {
            when: self.play.when.clone(),
            become_: self.play.become_.or(self.opts.become_default),
            become_user: self
                .play
                .become_user
                .clone()
                .or(self.opts.become_user_default.clone()),
            tags: self.play.tags.clone(),
            ..Scope::default()
        }
    }

    fn play(&mut self) -> Flow {
        let root = self.root_scope();
        let chain = Chain {
            scopes: vec![&root],
            role: None,
        };
        if self.play.gather_facts && self.opts.tags.runs(&chain.tags(&["always".to_string()])) {
            (self.progress)("Gathering Facts");
            let base = self.vars_for(&chain, None, &Vars::new());
            self.apply_become(&chain, &Scope::default(), &base);
            match facts::gather(self.t.as_mut()) {
                Ok(f) => {
                    self.state.facts = Some(f);
                    self.report.record(
                        Step {
                            title: "Gathering Facts".into(),
                            handler: false,
                            key: vec![0],
                        },
                        vec![TaskResult::new(Status::Ok, None, None)],
                        Counted::Task,
                    );
                }
                Err(e) => {
                    let status = if e.is_unreachable() {
                        Status::Unreachable
                    } else {
                        Status::Failed
                    };
                    failed_step(
                        &mut self.report,
                        "Gathering Facts",
                        vec![0],
                        status,
                        e.to_string(),
                    );
                    return if status == Status::Unreachable {
                        Flow::Unreachable
                    } else {
                        Flow::Failed
                    };
                }
            }
        }
        if let Err(msg) = self.read_vars_files(&chain) {
            failed_step(
                &mut self.report,
                "vars_files",
                vec![0, 1],
                Status::Failed,
                msg,
            );
            return Flow::Failed;
        }
        let sections: [&'a [Item]; 3] = [
            &self.play.pre_tasks,
            &self.play.tasks,
            &self.play.post_tasks,
        ];
        for (i, items) in sections.into_iter().enumerate() {
            let section = 1 + 2 * i as u32;
            let mut key = vec![section];
            let flow = self.items(items, &chain, &mut key);
            if flow != Flow::Continue {
                return flow;
            }
            let flow = self.flush(&chain, &mut vec![section + 1]);
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    /// `vars_files`: each entry's first candidate that exists, names templated with what the
    /// host knows when the play starts.
    fn read_vars_files(&mut self, chain: &Chain) -> Result<(), String> {
        let vars = self.vars_for(chain, None, &Vars::new());
        let ctx = JValue::from_serialize(&vars);
        for vf in &self.play.vars_files {
            let mut found = None;
            let mut tried = Vec::new();
            for c in &vf.candidates {
                let name = match self.templar.render(&Json::String(c.clone()), &ctx) {
                    Ok(Json::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(e) => return Err(format!("vars_files {c:?}: {e}")),
                };
                let path = self.play.origin.dir.join(&name);
                if path.is_file() {
                    found = Some(path);
                    break;
                }
                tried.push(path.display().to_string());
            }
            let path = found.ok_or_else(|| {
                format!(
                    "{}:{}: vars_files: none of {} exists",
                    self.play.origin.file,
                    vf.pos,
                    tried.join(", ")
                )
            })?;
            let v = crate::inventory::vars_dirs::load_file(&path).map_err(|e| format!("{e:#}"))?;
            self.files_vars.extend(v);
        }
        Ok(())
    }

    fn items<'s>(&mut self, items: &'s [Item], chain: &Chain<'s>, key: &mut Vec<u32>) -> Flow {
        for (i, item) in items.iter().enumerate() {
            key.push(i as u32);
            let flow = match item {
                Item::Task(t) => self.task(t, chain, key, false),
                Item::Block(b) => self.block(b, chain, key),
                Item::Include(inc) => self.include(inc, chain, key),
                Item::Meta(m) => self.meta(m, chain, key),
            };
            key.pop();
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    fn block<'s>(&mut self, b: &'s Block, chain: &Chain<'s>, key: &mut Vec<u32>) -> Flow {
        let chain = chain.with(&b.scope, b.role.clone());
        key.push(0);
        let mut flow = self.items(&b.block, &chain, key);
        key.pop();
        if flow == Flow::Failed && !b.rescue.is_empty() {
            self.report.rescue_failure();
            key.push(1);
            flow = self.items(&b.rescue, &chain, key);
            key.pop();
            self.failure.clear();
        }
        if !b.always.is_empty() && matches!(flow, Flow::Continue | Flow::Failed) {
            key.push(2);
            let after = self.items(&b.always, &chain, key);
            key.pop();
            if after != Flow::Continue {
                flow = after;
            }
        }
        flow
    }

    /// The variables a task sees (see `vars`), resolved.
    fn vars_for(&self, chain: &Chain, role: Option<&Role>, own: &Vars) -> Vars {
        let mut v = vars::compose(&vars::Layers {
            play: self.play,
            host: &self.hc.vars,
            facts: self.state.facts.as_ref(),
            files_vars: &self.files_vars,
            scopes: &chain.scopes.iter().map(|s| &s.vars).collect::<Vec<_>>(),
            own,
            set_facts: &self.state.set_facts,
            role,
            extra: &self.opts.extra_vars,
            failure: &self.failure,
        });
        v.extend(self.magic_vars(role));
        // What cannot be resolved yet (a var naming a later register) stays out: a use of it
        // fails as undefined, as in Ansible.
        let _ = self.templar.resolve_vars(&mut v);
        v
    }

    fn magic_vars(&self, role: Option<&Role>) -> Vars {
        let h = self.hc.host;
        let mut m = Vars::new();
        m.insert("inventory_hostname".into(), json!(h.name));
        m.insert(
            "inventory_hostname_short".into(),
            json!(h.name.split('.').next().unwrap_or_default()),
        );
        m.insert(
            "group_names".into(),
            json!(h.groups.iter().filter(|g| *g != "all").collect::<Vec<_>>()),
        );
        m.insert("groups".into(), self.hc.groups.clone());
        m.insert("ansible_play_hosts".into(), json!(self.hc.play_hosts));
        m.insert("ansible_play_hosts_all".into(), json!(self.hc.play_hosts));
        m.insert("play_hosts".into(), json!(self.hc.play_hosts));
        m.insert("ansible_play_name".into(), json!(self.play.name));
        m.insert("ansible_check_mode".into(), json!(self.opts.check));
        m.insert("ansible_diff_mode".into(), json!(self.opts.diff));
        m.insert(
            "playbook_dir".into(),
            json!(self.hc.playbook_dir.display().to_string()),
        );
        if let Some(inv) = &self.hc.inventory_file {
            m.insert("inventory_file".into(), json!(inv.display().to_string()));
            m.insert(
                "inventory_dir".into(),
                json!(inv
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()),
            );
        }
        if let Some(r) = role {
            m.insert("role_name".into(), json!(r.name));
            m.insert("role_path".into(), json!(r.path.display().to_string()));
        }
        m
    }

    /// Sets the connection's escalation for the next task: `ansible_become` and
    /// `ansible_become_user` variables win over keywords, as in Ansible.
    fn apply_become(&mut self, chain: &Chain, own: &Scope, vars: &Vars) {
        let var_bool = |k: &str| match vars.get(k) {
            Some(Json::Bool(b)) => Some(*b),
            Some(Json::String(s)) => crate::yaml::parse_bool(s),
            _ => None,
        };
        let enabled = var_bool("ansible_become")
            .or_else(|| chain.pick(own, |s| s.become_))
            .unwrap_or(false);
        let user = match vars.get("ansible_become_user") {
            Some(Json::String(s)) => Some(s.clone()),
            _ => chain.pick(own, |s| s.become_user.clone()).map(|u| {
                match self
                    .templar
                    .render(&Json::String(u.clone()), &JValue::from_serialize(vars))
                {
                    Ok(Json::String(s)) => s,
                    _ => u,
                }
            }),
        };
        self.t.set_become(&Become { enabled, user });
    }

    fn settings(
        &self,
        chain: &Chain,
        own: &Scope,
        role: Option<&Role>,
        origin_dir: &Path,
    ) -> task::Settings {
        let mut search = Vec::new();
        if let Some(r) = role {
            search.push(r.path.clone());
        }
        search.push(origin_dir.to_path_buf());
        search.push(self.play.origin.dir.clone());
        search.dedup();
        task::Settings {
            check: chain
                .pick(own, |s| s.check_mode)
                .map_or(self.opts.check, |c| c),
            diff: chain.pick(own, |s| s.diff).unwrap_or(self.opts.diff),
            ignore_errors: chain.pick(own, |s| s.ignore_errors).unwrap_or(false),
            no_log: chain.pick(own, |s| s.no_log).unwrap_or(false),
            search,
        }
    }

    fn render_title(&self, title: &str, vars: &Vars) -> String {
        if !crate::template::is_template(title) {
            return title.to_string();
        }
        match self.templar.render(
            &Json::String(title.to_string()),
            &JValue::from_serialize(vars),
        ) {
            Ok(Json::String(s)) => s,
            _ => title.to_string(),
        }
    }

    fn task<'s>(&mut self, t: &'s Task, chain: &Chain<'s>, key: &[u32], handler: bool) -> Flow {
        if !handler && !self.opts.tags.runs(&chain.tags(&t.scope.tags)) {
            return Flow::Continue;
        }
        let role = t.origin.role.clone().or_else(|| chain.role.clone());
        let vars = self.vars_for(chain, role.as_deref(), &t.scope.vars);
        let title = self.render_title(&t.title(), &vars);
        (self.progress)(&title);
        self.apply_become(chain, &t.scope, &vars);
        let settings = self.settings(chain, &t.scope, role.as_deref(), &t.origin.dir);
        let when = chain.when(&t.scope.when);
        let done = task::run(
            t,
            &when,
            &vars,
            &settings,
            &self.templar,
            &mut *self.t,
            self.connect,
        );
        let changed = done.results.iter().any(|r| r.status == Status::Changed);
        let failed = done
            .results
            .iter()
            .any(|r| r.status == Status::Failed && !r.ignored);
        if changed {
            for n in &t.notify {
                let n = self.render_title(n, &vars);
                if !self.notified.contains(&n) {
                    self.notified.push(n);
                }
            }
        }
        self.state.set_facts.extend(done.set);
        if failed {
            self.failure = [
                (
                    "ansible_failed_task".to_string(),
                    json!({"name": title, "action": t.module.fqcn}),
                ),
                ("ansible_failed_result".to_string(), done.last.clone()),
            ]
            .into_iter()
            .collect();
        }
        self.report.record(
            Step {
                title,
                handler,
                key: key.to_vec(),
            },
            done.results,
            Counted::Task,
        );
        if done.unreachable {
            Flow::Unreachable
        } else if done.stop {
            Flow::Failed
        } else {
            Flow::Continue
        }
    }

    fn include<'s>(&mut self, inc: &'s Include, chain: &Chain<'s>, key: &mut Vec<u32>) -> Flow {
        if !self.opts.tags.runs(&chain.tags(&inc.tags)) {
            return Flow::Continue;
        }
        let role = inc.origin.role.clone().or_else(|| chain.role.clone());
        let vars = self.vars_for(chain, role.as_deref(), &inc.vars);
        let ctx = JValue::from_serialize(&vars);
        let module = match &inc.what {
            IncludeWhat::Tasks { .. } => "include_tasks",
            IncludeWhat::Role { .. } => "include_role",
        };
        let title = match (&inc.name, &inc.what) {
            (Some(n), _) => self.render_title(n, &vars),
            (None, IncludeWhat::Role { name, .. }) => format!("include_role : {name}"),
            (None, IncludeWhat::Tasks { .. }) => module.to_string(),
        };
        let step = |key: &Vec<u32>| Step {
            title: title.clone(),
            handler: false,
            key: key.clone(),
        };
        let counted = if module == "include_tasks" {
            Counted::Task
        } else {
            Counted::Not
        };
        for cond in chain.when(&inc.when) {
            match self.templar.eval_condition(&cond, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    let r = TaskResult::new(
                        Status::Skipped,
                        None,
                        Some(format!("Conditional result was False: {cond}")),
                    );
                    self.report.record(step(key), vec![r], Counted::Task);
                    return Flow::Continue;
                }
                Err(e) => {
                    self.report.record(
                        step(key),
                        vec![TaskResult::new(Status::Failed, None, Some(e))],
                        Counted::Task,
                    );
                    return Flow::Failed;
                }
            }
        }
        let iterations: Vec<Option<Iteration>> = match &inc.loop_ {
            None => vec![None],
            Some(l) => match self.templar.render(&l.items, &ctx) {
                Ok(Json::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        Some(Iteration {
                            var: l.var.clone(),
                            item,
                            index_var: l.index_var.clone(),
                            index,
                        })
                    })
                    .collect(),
                Ok(other) => {
                    let msg = format!("loop: expected a list, got {other}");
                    self.report.record(
                        step(key),
                        vec![TaskResult::new(Status::Failed, None, Some(msg))],
                        Counted::Task,
                    );
                    return Flow::Failed;
                }
                Err(e) => {
                    self.report.record(
                        step(key),
                        vec![TaskResult::new(Status::Failed, None, Some(e))],
                        Counted::Task,
                    );
                    return Flow::Failed;
                }
            },
        };
        // What each iteration runs, loaded now when the name is a template.
        let mut loaded: Vec<(Vars, Included)> = Vec::new();
        let mut results = Vec::new();
        for it in &iterations {
            let mut v = vars.clone();
            let mut extra = inc.vars.clone();
            if let Some(it) = it {
                v.insert(it.var.clone(), it.item.clone());
                extra.insert(it.var.clone(), it.item.clone());
                if let Some(iv) = &it.index_var {
                    v.insert(iv.clone(), json!(it.index));
                    extra.insert(iv.clone(), json!(it.index));
                }
            }
            match self.load_include(inc, &v) {
                Ok(included) => {
                    let label = it.as_ref().map(|it| match &it.item {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let mut r = TaskResult::new(Status::Ok, label, None);
                    r.note = Some(format!(
                        "included: {} for {}",
                        included.shown, self.hc.host.name
                    ));
                    results.push(r);
                    loaded.push((extra, included));
                }
                Err(e) => {
                    let mut r = TaskResult::new(Status::Failed, None, Some(e));
                    r.ignored = false;
                    results.push(r);
                    self.report.record(step(key), results, Counted::Task);
                    return Flow::Failed;
                }
            }
        }
        if counted == Counted::Task {
            self.report.record(step(key), results, counted);
        } else {
            self.report.record(step(key), Vec::new(), counted);
        }
        for (i, (extra, included)) in loaded.iter().enumerate() {
            // Included tasks inherit the blocks around the include, its `apply:` and its vars,
            // not its own tags or conditions.
            let vars_scope = Scope {
                vars: extra.clone(),
                ..Scope::default()
            };
            let c = chain
                .with(&inc.apply, None)
                .with(&vars_scope, included.role.clone());
            key.push(i as u32);
            let flow = self.items(&included.items, &c, key);
            key.pop();
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    /// The items an include brings for one iteration, the role they belong to, and the name
    /// shown for them.
    fn load_include(&mut self, inc: &Include, vars: &Vars) -> Result<Included, String> {
        let ctx = JValue::from_serialize(vars);
        let render = |s: &str| match self.templar.render(&Json::String(s.to_string()), &ctx) {
            Ok(Json::String(s)) => Ok(s),
            Ok(other) => Ok(other.to_string()),
            Err(e) => Err(e),
        };
        match &inc.what {
            IncludeWhat::Tasks {
                file,
                parsed: Some(items),
            } => Ok(Included {
                items: items.clone(),
                role: None,
                shown: file.clone(),
            }),
            IncludeWhat::Tasks { file, parsed: None } => {
                let name = render(file)?;
                let items = self
                    .loader
                    .include_tasks(&inc.origin, &name, inc.pos)
                    .map_err(|e| e.to_string())?;
                Ok(Included {
                    items: Arc::new(items.0),
                    role: None,
                    shown: items.1,
                })
            }
            IncludeWhat::Role { parsed, name, from } => {
                let loaded = match parsed {
                    Some(l) => l.clone(),
                    None => {
                        let name = render(name)?;
                        Arc::new(
                            self.loader
                                .include_role(&inc.origin, &name, from, inc.pos)
                                .map_err(|e| e.to_string())?,
                        )
                    }
                };
                self.more_handlers.extend(loaded.all_handlers());
                let items = loaded.blocks(&mut Default::default(), inc.pos);
                Ok(Included {
                    items: Arc::new(items),
                    role: Some(loaded.role.clone()),
                    shown: loaded.role.name.clone(),
                })
            }
        }
    }

    fn meta<'s>(&mut self, m: &'s Meta, chain: &Chain<'s>, key: &mut Vec<u32>) -> Flow {
        if !self.opts.tags.runs(&chain.tags(&m.tags)) {
            return Flow::Continue;
        }
        let vars = self.vars_for(chain, m.origin.role.as_deref(), &Vars::new());
        let ctx = JValue::from_serialize(&vars);
        for cond in chain.when(&m.when) {
            match self.templar.eval_condition(&cond, &ctx) {
                Ok(true) => {}
                Ok(false) => return Flow::Continue,
                Err(e) => {
                    failed_step(&mut self.report, "meta", key.clone(), Status::Failed, e);
                    return Flow::Failed;
                }
            }
        }
        match m.action {
            MetaAction::FlushHandlers => {
                self.report.record(
                    Step {
                        title: "meta".into(),
                        handler: false,
                        key: key.clone(),
                    },
                    Vec::new(),
                    Counted::Not,
                );
                self.flush(chain, key)
            }
            MetaAction::Noop | MetaAction::ClearHostErrors => Flow::Continue,
            MetaAction::EndPlay | MetaAction::EndHost => Flow::End,
            MetaAction::ResetConnection => match (self.connect)() {
                Ok(fresh) => {
                    *self.t = fresh;
                    Flow::Continue
                }
                Err(e) => {
                    failed_step(
                        &mut self.report,
                        "meta: reset_connection",
                        key.clone(),
                        Status::Unreachable,
                        e.to_string(),
                    );
                    Flow::Unreachable
                }
            },
        }
    }

    /// Runs the handlers notified since the last flush, in the order they are defined.
    fn flush(&mut self, chain: &Chain, key: &mut Vec<u32>) -> Flow {
        if self.notified.is_empty() {
            return Flow::Continue;
        }
        let notified = std::mem::take(&mut self.notified);
        let handlers: Vec<Task> = self
            .play
            .handlers
            .iter()
            .chain(self.more_handlers.iter())
            .cloned()
            .collect();
        let root = Chain {
            scopes: chain.scopes.first().copied().into_iter().collect(),
            role: None,
        };
        for (i, h) in handlers.iter().enumerate() {
            if !handler_names(h).iter().any(|n| notified.contains(n)) {
                continue;
            }
            key.push(i as u32);
            let flow = self.task(h, &root, key, true);
            key.pop();
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }
}
