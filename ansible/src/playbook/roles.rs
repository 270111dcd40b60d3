//! Roles: where Ansible finds them and what a role directory holds. A role named `x` is
//! `roles/x` beside the playbook, else `x` in a `roles_path` directory, else `x` beside the
//! playbook; a name with a `/` is a path. Its parts are `tasks/`, `handlers/`, `defaults/`,
//! `vars/`, `meta/` (each `main.yml`, `main.yaml`, `main.json` or `main`, or the file a
//! `*_from` names), `templates/` and `files/`. Loading its tasks is the parser's job; this module
//! knows the layout.

use super::{Block, Item, Scope, Task};
use crate::template::Vars;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A role as the tasks inside it see it: its name and directory (for files and templates) and
/// its variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub path: PathBuf,
    /// `defaults/` (lowest precedence of all).
    pub defaults: Vars,
    /// `vars/` and the `vars:` of the role's invocation.
    pub vars: Vars,
    /// Parameters given inline where the role is named (`- role: x` `port: 80`): above
    /// `set_fact`, as Ansible's role params.
    pub params: Vars,
}

/// Which files of a role to read instead of `main` (`include_role`/`import_role`'s
/// `tasks_from`, `vars_from`, `defaults_from`, `handlers_from`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct From {
    pub tasks: Option<String>,
    pub vars: Option<String>,
    pub defaults: Option<String>,
    pub handlers: Option<String>,
}

/// The directories a role name is looked for in, in order.
pub fn search_dirs(playbook_dir: &Path, roles_path: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![playbook_dir.join("roles")];
    dirs.extend(roles_path.iter().cloned());
    dirs.push(playbook_dir.to_path_buf());
    dirs
}

/// The directory of role `name`, or the places looked in.
pub fn locate(name: &str, playbook_dir: &Path, roles_path: &[PathBuf]) -> Result<PathBuf, String> {
    if name.contains('/') {
        let p = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            playbook_dir.join(name)
        };
        return if p.is_dir() {
            Ok(p)
        } else {
            Err(format!(
                "role `{name}` not found: {} is not a directory",
                p.display()
            ))
        };
    }
    let dirs = search_dirs(playbook_dir, roles_path);
    for d in &dirs {
        let p = d.join(name);
        if p.is_dir() {
            return Ok(p);
        }
    }
    let hint = if name.matches('.').count() >= 2 {
        " (roles of Ansible collections are not supported: put the role in roles/)"
    } else {
        ""
    };
    Err(format!(
        "role `{name}` not found; looked in {}{hint}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The file of part `part` (`tasks`, `handlers`, `defaults`, `vars`, `meta`) named `file`
/// (default `main`): the first of `file`, `file.yml`, `file.yaml`, `file.json` that exists.
pub fn part_file(role_dir: &Path, part: &str, file: Option<&str>) -> Option<PathBuf> {
    let base = role_dir.join(part).join(file.unwrap_or("main"));
    if file.is_some_and(|f| f.contains('.')) && base.is_file() {
        return Some(base);
    }
    ["", ".yml", ".yaml", ".json"]
        .iter()
        .map(|ext| PathBuf::from(format!("{}{ext}", base.display())))
        .find(|p| p.is_file())
}

/// A role read from disk with everything it brings.
#[derive(Debug, Clone)]
pub struct LoadedRole {
    pub role: Arc<Role>,
    pub allow_duplicates: bool,
    /// `meta/main.yml` dependencies, with the keywords their entries give.
    pub deps: Vec<(Scope, LoadedRole)>,
    pub tasks: Vec<Item>,
    /// Its handlers and those of roles its tasks import.
    pub handlers: Vec<Task>,
    /// Roles its tasks import (for their vars and handlers).
    pub imported: Vec<Arc<Role>>,
}

impl LoadedRole {
    /// The role's blocks, dependencies first; `seen` drops what already ran in the play.
    pub fn blocks(&self, seen: &mut Seen, pos: crate::yaml::Pos) -> Vec<Item> {
        let mut out = Vec::new();
        for (scope, dep) in &self.deps {
            let inner = dep.blocks(seen, pos);
            if inner.is_empty() {
                continue;
            }
            out.push(Item::Block(Box::new(Block {
                name: None,
                scope: scope.clone(),
                block: inner,
                rescue: Vec::new(),
                always: Vec::new(),
                role: None,
                pos,
            })));
        }
        let key = (
            self.role.path.display().to_string(),
            serde_json::to_string(&self.role.params).unwrap_or_default(),
        );
        if seen.done.contains(&key) && !self.allow_duplicates {
            return out;
        }
        seen.done.push(key);
        seen.new.push(self.clone());
        out.push(Item::Block(Box::new(Block {
            name: None,
            scope: Scope::default(),
            block: self.tasks.clone(),
            rescue: Vec::new(),
            always: Vec::new(),
            role: Some(self.role.clone()),
            pos,
        })));
        out
    }

    /// This role and every role it brings, dependencies first.
    pub fn all_roles(&self) -> Vec<Arc<Role>> {
        let mut out = Vec::new();
        for (_, d) in &self.deps {
            out.extend(d.all_roles());
        }
        out.extend(self.imported.iter().cloned());
        out.push(self.role.clone());
        out
    }

    /// Handlers of this role and of everything it brings.
    pub fn all_handlers(&self) -> Vec<Task> {
        let mut out = Vec::new();
        for (_, d) in &self.deps {
            out.extend(d.all_handlers());
        }
        out.extend(self.handlers.iter().cloned());
        out
    }
}

/// Roles a play has already run, so a role named twice (or as two roles' dependency) runs
/// once, as in Ansible; and the roles loaded since the play last asked.
#[derive(Debug, Default)]
pub struct Seen {
    done: Vec<(String, String)>,
    new: Vec<LoadedRole>,
}

impl Seen {
    pub fn take_new(&mut self) -> Vec<LoadedRole> {
        std::mem::take(&mut self.new)
    }
}
