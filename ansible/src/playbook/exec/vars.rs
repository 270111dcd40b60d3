//! The variables a task sees, layered in Ansible's precedence (lowest first): role defaults
//! (every role of the play, then the task's own role), the host's inventory vars and
//! `group_vars`/`host_vars`, facts, play `vars`, `vars_files`, role vars (every role of the
//! play, then the task's own), the vars of the blocks around the task (outermost first), the
//! task's vars, registered results and `set_fact`s, the task's role parameters, `-e` extra
//! vars — and a rescue's `ansible_failed_*`.

use crate::playbook::roles::Role;
use crate::playbook::Play;
use crate::template::Vars;
use serde_json::{Map, Value as Json};

pub struct Layers<'a> {
    pub play: &'a Play,
    pub host: &'a Vars,
    pub facts: Option<&'a Map<String, Json>>,
    pub files_vars: &'a Vars,
    /// Vars of the enclosing blocks and includes, outermost first.
    pub scopes: &'a [&'a Vars],
    pub own: &'a Vars,
    pub set_facts: &'a Vars,
    pub role: Option<&'a Role>,
    pub extra: &'a Vars,
    pub failure: &'a Vars,
}

pub fn compose(l: &Layers) -> Vars {
    let mut v = Vars::new();
    for r in &l.play.roles {
        v.extend(r.defaults.clone());
    }
    if let Some(r) = l.role {
        v.extend(r.defaults.clone());
    }
    v.extend(l.host.clone());
    if let Some(facts) = l.facts {
        // Facts as `ansible_facts.NAME` and, as Ansible injects them, `ansible_NAME`.
        for (k, val) in facts {
            v.insert(format!("ansible_{k}"), val.clone());
        }
        v.insert("ansible_facts".into(), Json::Object(facts.clone()));
    }
    v.extend(l.play.vars.clone());
    v.extend(l.files_vars.clone());
    for r in &l.play.roles {
        v.extend(r.vars.clone());
    }
    if let Some(r) = l.role {
        v.extend(r.vars.clone());
    }
    for s in l.scopes {
        v.extend((*s).clone());
    }
    v.extend(l.own.clone());
    v.extend(l.set_facts.clone());
    if let Some(r) = l.role {
        v.extend(r.params.clone());
    }
    v.extend(l.extra.clone());
    v.extend(l.failure.clone());
    v
}
