//! The part of Ansible's playbook language that c1m executes natively: plays with
//! `pre_tasks`/`roles`/`tasks`/`post_tasks`/`handlers`, blocks with `rescue`/`always`, static
//! imports (`import_playbook`, `import_tasks`, `import_role`, `roles:`), dynamic includes
//! (`include_tasks`, `include_role`), tags, and the modules under [`modules`].
//!
//! | module | responsibility |
//! | --- | --- |
//! | `parse` | text into the tree below: every keyword, module, argument and template checked |
//! | [`roles`] | finding and loading roles (tasks, handlers, defaults, vars, meta dependencies) |
//! | [`tags`] | which tasks `--tags`/`--skip-tags` select |
//! | [`list`] | `--list-hosts`, `--list-tasks`, `--list-tags` |
//! | [`facts`] | the facts a tuning playbook needs |
//! | [`exec`] | running a play on one host |
//! | [`modules`] | the modules, one file each |
//!
//! Parsing checks everything that can be checked without a host — YAML syntax, keywords,
//! module names, argument names and literal types, Jinja syntax, handler names, the files that
//! imports, roles and static includes name — and reports the first problem as
//! `file:line:col: what was expected`, so nothing runs on any host from a bad project.
//! Keywords c1m does not support are refused the same way, never skipped.

pub mod exec;
pub mod facts;
pub mod list;
pub mod modules;
mod parse;
pub mod roles;
pub mod tags;

pub use parse::{check_kind, load, parse, Loader};

use crate::template::Vars;
use crate::yaml::Pos;
use modules::ModuleSpec;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: String,
    /// The playbook's directory: `group_vars/` beside it, relative paths of its plays.
    pub dir: PathBuf,
    pub plays: Vec<Play>,
}

/// Where a task was written and what it belongs to: its file (for errors), the directory
/// relative paths start from, and its role.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: String,
    pub dir: PathBuf,
    pub role: Option<Arc<roles::Role>>,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub gather_facts: bool,
    pub vars: Vars,
    /// `vars_files`, read per host when the play starts (names may be templates).
    pub vars_files: Vec<VarsFile>,
    pub tags: Vec<String>,
    /// Conditions on every task (from `import_playbook: … when:`).
    pub when: Vec<String>,
    pub pre_tasks: Vec<Item>,
    /// The roles' tasks (one block per role) followed by the play's `tasks`.
    pub tasks: Vec<Item>,
    pub post_tasks: Vec<Item>,
    /// The play's handlers and those of its roles.
    pub handlers: Vec<Task>,
    /// Every role the play's `roles:` and static imports name, dependencies first.
    pub roles: Vec<Arc<roles::Role>>,
    /// Where the play was written; its directory is the base of relative paths.
    pub origin: Arc<Origin>,
    pub pos: Pos,
}

/// One entry of `vars_files`: a file name (perhaps a template) or a list of candidates, the
/// first that exists being read.
#[derive(Debug, Clone)]
pub struct VarsFile {
    pub candidates: Vec<String>,
    pub pos: Pos,
}

/// What a block, a role or a static import passes down to the tasks inside it.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub when: Vec<String>,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub vars: Vars,
    pub tags: Vec<String>,
    pub ignore_errors: Option<bool>,
    /// `check_mode: false` runs for real under `--check` (read-only probes).
    pub check_mode: Option<bool>,
    pub diff: Option<bool>,
    pub no_log: Option<bool>,
}

/// An entry of a task list.
#[derive(Debug, Clone)]
pub enum Item {
    Task(Box<Task>),
    Block(Box<Block>),
    Include(Box<Include>),
    Meta(Box<Meta>),
}

#[derive(Debug, Clone)]
pub struct Block {
    pub name: Option<String>,
    pub scope: Scope,
    pub block: Vec<Item>,
    pub rescue: Vec<Item>,
    pub always: Vec<Item>,
    /// Set when this block is a role's body: its tasks see the role's vars and files.
    pub role: Option<Arc<roles::Role>>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: Option<String>,
    pub module: &'static ModuleSpec,
    /// Arguments by canonical name, as written (templated at run time).
    pub args: Vec<(String, Json)>,
    pub scope: Scope,
    pub loop_: Option<Loop>,
    pub register: Option<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    pub changed_when: Option<Vec<String>>,
    pub failed_when: Option<Vec<String>>,
    pub until: Option<Until>,
    pub origin: Arc<Origin>,
    pub pos: Pos,
}

/// `loop`/`with_*` and `loop_control`.
#[derive(Debug, Clone)]
pub struct Loop {
    pub items: Json,
    pub flatten: Flatten,
    /// `loop_control.loop_var` (default `item`).
    pub var: String,
    /// `loop_control.index_var`.
    pub index_var: Option<String>,
    /// `loop_control.label`: what the output shows for an item.
    pub label: Option<String>,
}

/// How the items of a loop keyword are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flatten {
    /// `loop`, `with_list`: as given.
    None,
    /// `with_items`: nested lists flattened one level.
    OneLevel,
    /// `with_dict`: a mapping into `{key, value}` items.
    Dict,
}

/// `until` with `retries` and `delay`.
#[derive(Debug, Clone)]
pub struct Until {
    pub conditions: Vec<String>,
    pub retries: u32,
    pub delay_secs: u64,
}

/// `include_tasks` / `include_role`: loaded when the host reaches it.
#[derive(Debug, Clone)]
pub struct Include {
    pub name: Option<String>,
    pub what: IncludeWhat,
    /// Conditions of the include itself, evaluated once.
    pub when: Vec<String>,
    pub loop_: Option<Loop>,
    /// `vars:` of the include: seen by every included task.
    pub vars: Vars,
    /// Tags of the include itself (not passed to what it includes, as in Ansible).
    pub tags: Vec<String>,
    /// `apply:` keywords passed to every included task.
    pub apply: Scope,
    pub origin: Arc<Origin>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum IncludeWhat {
    /// A task file; `parsed` when its name is not a template (checked before anything runs).
    Tasks {
        file: String,
        parsed: Option<Arc<Vec<Item>>>,
    },
    /// A role, with `tasks_from`, `vars_from`, `defaults_from`, `handlers_from`.
    Role {
        name: String,
        from: roles::From,
        parsed: Option<Arc<roles::LoadedRole>>,
    },
}

/// `meta:` actions.
#[derive(Debug, Clone)]
pub struct Meta {
    pub action: MetaAction,
    pub when: Vec<String>,
    pub tags: Vec<String>,
    pub origin: Arc<Origin>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaAction {
    FlushHandlers,
    Noop,
    EndPlay,
    EndHost,
    ResetConnection,
    ClearHostErrors,
}

impl MetaAction {
    pub const NAMES: [(&'static str, MetaAction); 6] = [
        ("flush_handlers", MetaAction::FlushHandlers),
        ("noop", MetaAction::Noop),
        ("end_play", MetaAction::EndPlay),
        ("end_host", MetaAction::EndHost),
        ("reset_connection", MetaAction::ResetConnection),
        ("clear_host_errors", MetaAction::ClearHostErrors),
    ];
}

impl Task {
    /// What Ansible prints in `TASK [...]`: `role : name`, the name, or the module.
    pub fn title(&self) -> String {
        let base = self
            .name
            .clone()
            .unwrap_or_else(|| self.module.short.to_string());
        match &self.origin.role {
            Some(r) => format!("{} : {base}", r.name),
            None => base,
        }
    }
}

impl Play {
    /// The tasks the play names statically, in order: inside blocks (rescue and always
    /// included) and the play's sections, not what dynamic includes load.
    pub fn task_list(&self) -> Vec<&Task> {
        fn walk<'a>(items: &'a [Item], out: &mut Vec<&'a Task>) {
            for i in items {
                match i {
                    Item::Task(t) => out.push(t),
                    Item::Block(b) => {
                        walk(&b.block, out);
                        walk(&b.rescue, out);
                        walk(&b.always, out);
                    }
                    Item::Include(_) | Item::Meta(_) => {}
                }
            }
        }
        let mut out = Vec::new();
        for section in [&self.pre_tasks, &self.tasks, &self.post_tasks] {
            walk(section, &mut out);
        }
        out
    }
}
