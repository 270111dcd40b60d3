//! The modules c1m runs natively, under Ansible's short and fully-qualified names, with Ansible's
//! argument names and defaults. Each reads the current state first, changes only what differs,
//! honours check mode and produces before/after diffs.

mod assert;
mod blockinfile;
mod command;
mod copy;
mod fail;
mod file;
mod lineinfile;
mod modprobe;
mod pam_limits;
mod service;
mod set_fact;
mod stat;
mod sysctl;
mod systemd;
mod template_file;
pub mod util;
mod wait_for_connection;

use crate::template::{Templar, Vars};
use c1m_transport::{Transport, TransportError};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The type an argument must have once templated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    /// An octal file mode (`"0644"` or YAML 1.1's octal `0644`).
    Mode,
    /// A string that must be one of the listed words.
    Choice(&'static [&'static str]),
    /// A string or list of strings.
    StrOrList,
    /// Anything (checked by the module).
    Any,
}

#[derive(Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub aliases: &'static [&'static str],
}

const fn arg(name: &'static str, kind: Kind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        aliases: &[],
    }
}

const fn arg_alias(name: &'static str, kind: Kind, aliases: &'static [&'static str]) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        aliases,
    }
}

pub type RunFn = fn(&Args, &mut ModuleCtx) -> Result<Outcome, TaskError>;

#[derive(Debug)]
pub struct ModuleSpec {
    pub fqcn: &'static str,
    pub short: &'static str,
    pub args: &'static [ArgSpec],
    pub required: &'static [&'static str],
    /// At least one of these must be given (e.g. `src` or `content`).
    pub one_of: &'static [&'static str],
    /// Accepts a free-form string (`command: echo hi`), stored as `_raw_params`.
    pub free_form: bool,
    /// Takes any variable name as an argument besides those listed (`set_fact`).
    pub any_args: bool,
    pub run: RunFn,
}

impl ModuleSpec {
    /// The canonical name of `name` if it is an argument or alias of this module.
    pub fn canonical_arg(&self, name: &str) -> Option<&'static ArgSpec> {
        self.args
            .iter()
            .find(|a| a.name == name || a.aliases.contains(&name))
    }
}

pub static MODULES: &[&ModuleSpec] = &[
    &sysctl::SPEC,
    &pam_limits::SPEC,
    &modprobe::SPEC,
    &copy::SPEC,
    &file::SPEC,
    &command::COMMAND,
    &command::SHELL,
    &systemd::SPEC,
    &systemd::SYSTEMD_SERVICE,
    &stat::SPEC,
    &stat::DEBUG,
    &template_file::SPEC,
    &lineinfile::SPEC,
    &blockinfile::SPEC,
    &set_fact::SPEC,
    &assert::SPEC,
    &fail::SPEC,
    &wait_for_connection::SPEC,
    &service::SPEC,
];

/// Finds a module by its short name, its FQCN, or `ansible.legacy.` name.
pub fn lookup(name: &str) -> Option<&'static ModuleSpec> {
    let short = name.strip_prefix("ansible.legacy.").unwrap_or(name);
    MODULES
        .iter()
        .copied()
        .find(|m| m.fqcn == short || m.short == short)
}

/// Templated arguments of one module call, by canonical name.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub module: &'static str,
    pub map: BTreeMap<String, Json>,
}

impl Args {
    fn bad(&self, name: &str, expected: &str, v: &Json) -> TaskError {
        TaskError::Failed(format!(
            "{}: argument {name}: expected {expected}, got {v}",
            self.module
        ))
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<String>, TaskError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(if *b { "True" } else { "False" }.into())),
            Some(v) => Err(self.bad(name, "a string", v)),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<String, TaskError> {
        self.str(name)?.ok_or_else(|| {
            TaskError::Failed(format!(
                "{}: missing required argument: {name}",
                self.module
            ))
        })
    }

    pub fn str_or(&self, name: &str, default: &str) -> Result<String, TaskError> {
        Ok(self.str(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, TaskError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(Json::String(s)) => crate::yaml::parse_bool(s)
                .ok_or_else(|| self.bad(name, "a boolean", &Json::String(s.clone()))),
            Some(Json::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(n.as_i64() == Some(1))
            }
            Some(v) => Err(self.bad(name, "a boolean", v)),
        }
    }

    /// An octal mode; `None` when not given.
    pub fn mode(&self, name: &str) -> Result<Option<u32>, TaskError> {
        match self.map.get(name) {
            None | Some(Json::Null) => Ok(None),
            // YAML 1.1 already turned an unquoted 0644 into its value.
            Some(Json::Number(n)) => n
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m <= 0o7777)
                .map(Some)
                .ok_or_else(|| {
                    self.bad(
                        name,
                        "an octal mode like \"0644\"",
                        &Json::Number(n.clone()),
                    )
                }),
            Some(Json::String(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Some)
                .ok_or_else(|| {
                    self.bad(
                        name,
                        "an octal mode like \"0644\"",
                        &Json::String(s.clone()),
                    )
                }),
            Some(v) => Err(self.bad(name, "an octal mode like \"0644\"", v)),
        }
    }

    pub fn check_choice(
        &self,
        name: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String, TaskError> {
        let v = self.str_or(name, default)?;
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(TaskError::Failed(format!(
                "{}: argument {name}: expected one of {}, got {v:?}",
                self.module,
                choices.join(", ")
            )))
        }
    }
}

/// What a module runs against.
pub struct ModuleCtx<'a> {
    pub t: &'a mut dyn Transport,
    pub check: bool,
    pub diff: bool,
    /// Where a `src` is looked for, in order (the role's directory, the task file's, the
    /// play's): `DIR/files/NAME` (or `templates/`), then `DIR/NAME`.
    pub search: Vec<PathBuf>,
    /// Files this task's loop items change, written once when the task ends (see
    /// [`util::Staged`]).
    pub staged: &'a mut util::Staged,
    /// The engine's templating and the task's variables (the `template` module renders files).
    pub templar: &'a Templar,
    pub vars: &'a Vars,
    /// Opens a fresh connection to the host (`wait_for_connection`).
    pub connect: Option<&'a dyn Fn() -> Result<Box<dyn Transport>, TransportError>>,
    /// A fresh connection a module made, which the host uses from now on.
    pub replacement: &'a mut Option<Box<dyn Transport>>,
}

impl ModuleCtx<'_> {
    /// The local file `name` of kind `kind` (`files`, `templates`) from the search path; an
    /// absolute name as it is.
    pub fn find_local(&self, kind: &str, name: &str) -> Result<PathBuf, TaskError> {
        let p = std::path::Path::new(name);
        if p.is_absolute() {
            return if p.is_file() {
                Ok(p.to_path_buf())
            } else {
                Err(TaskError::Failed(format!("{name}: no such file")))
            };
        }
        let mut tried = Vec::new();
        for dir in &self.search {
            for c in [dir.join(kind).join(name), dir.join(name)] {
                if c.is_file() {
                    return Ok(c);
                }
                tried.push(c.display().to_string());
            }
        }
        Err(TaskError::Failed(format!(
            "could not find {name} (looked for {})",
            tried.join(", ")
        )))
    }
}

/// Before/after of one file or value, shown with `--diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub label: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub changed: bool,
    pub skipped: bool,
    pub msg: Option<String>,
    pub diffs: Vec<Diff>,
    pub rc: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The module ran but its result counts as a failure (a command's non-zero exit), unless
    /// `failed_when` says otherwise.
    pub failed: Option<String>,
    /// Extra result fields for `register` (e.g. `stat`).
    pub extra: serde_json::Map<String, Json>,
    /// Variables the task sets for the host's later tasks (`set_fact`'s `ansible_facts`).
    pub facts: serde_json::Map<String, Json>,
}

impl Outcome {
    pub fn ok(msg: impl Into<String>) -> Self {
        Outcome {
            msg: Some(msg.into()),
            ..Outcome::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
}
