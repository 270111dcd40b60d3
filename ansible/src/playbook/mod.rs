//! The subset of Ansible's playbook language that c1m executes natively.
//!
//! Parsing checks everything that can be checked without a host — YAML syntax, keywords, module
//! names, argument names and literal types, Jinja syntax, handler names — and reports the first
//! problem as `file:line:col: what was expected`, so nothing runs on any host from a bad file.

pub mod exec;
pub mod facts;
pub mod modules;
mod parse;

pub use parse::{check_kind, load, parse};

use crate::template::Vars;
use crate::yaml::Pos;
use modules::ModuleSpec;
use serde_json::Value as Json;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: String,
    /// Where `copy: src=` files are looked up.
    pub dir: PathBuf,
    pub plays: Vec<Play>,
}

#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: String,
    pub become_: Option<bool>,
    pub become_user: Option<String>,
    pub gather_facts: bool,
    pub vars: Vars,
    pub tasks: Vec<Task>,
    pub handlers: Vec<Task>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: Option<String>,
    pub module: &'static ModuleSpec,
    /// Arguments by canonical name, as written (templated at run time).
    pub args: Vec<(String, Json)>,
    pub when: Vec<String>,
    pub loop_: Option<Json>,
    /// `with_items` flattens nested lists one level; `loop` does not.
    pub loop_flatten: bool,
    pub register: Option<String>,
    pub notify: Vec<String>,
    pub listen: Vec<String>,
    pub become_: Option<bool>,
    pub ignore_errors: bool,
    /// `check_mode: false` runs the task for real even under `--check` (for read-only probes).
    pub check_mode: Option<bool>,
    pub changed_when: Option<Vec<String>>,
    pub failed_when: Option<Vec<String>>,
    pub vars: Vars,
    pub tags: Vec<String>,
    pub pos: Pos,
}

impl Task {
    /// What Ansible prints in `TASK [...]`: the name, or the module.
    pub fn title(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.module.short.to_string())
    }
}
