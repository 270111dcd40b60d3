//! Module arguments: a mapping, `key=value` words, or a free-form command line, each checked
//! against the module's argument spec (names, aliases, literal types, required ones).

use super::{suggest, FileParser};
use crate::playbook::modules::{Kind, ModuleSpec};
use crate::template;
use crate::yaml::{self, key_node, Node, SourceError, Value};
use serde_json::Value as Json;

impl FileParser<'_> {
    /// The arguments of module `spec` given at `value` (under the module's `key`), plus those
    /// of the task's `args:` keyword.
    pub fn module_args(
        &self,
        spec: &'static ModuleSpec,
        key: &Node,
        value: &Node,
        extra: Option<&Node>,
    ) -> Result<Vec<(String, Json)>, SourceError> {
        let mut args: Vec<(String, Json, &Node)> = Vec::new();
        if let Some(extra) = extra {
            self.mapping_args(spec, extra, &mut args)?;
        }
        match &value.value {
            Value::Map(_) => self.mapping_args(spec, value, &mut args)?,
            Value::Str(s) if spec.free_form => {
                // `shell: cmd creates=/x` — Ansible's trailing key=value options on free-form.
                let (raw, opts) = split_free_form(s, spec);
                args.push(("_raw_params".into(), Json::String(raw), value));
                for (k, v) in opts {
                    args.push((k, Json::String(v), value));
                }
            }
            Value::Str(s) => {
                for word in shlex::split(s).unwrap_or_default() {
                    let Some((k, v)) = word.split_once('=') else {
                        return Err(self.ctx.err(
                            value,
                            format!(
                                "{}: expected key=value arguments or a mapping, found `{word}`",
                                spec.fqcn
                            ),
                        ));
                    };
                    let typed = yaml::load(self.ctx.file, v)
                        .map(|n| n.to_json())
                        .unwrap_or(Json::String(v.to_string()));
                    if spec.any_args && template::is_var_name(k) && spec.canonical_arg(k).is_none()
                    {
                        args.push((k.to_string(), typed, value));
                        continue;
                    }
                    let Some(a) = spec.canonical_arg(k) else {
                        let at = s
                            .find(&word)
                            .map_or(value.pos, |o| self.ctx.pos_within(value, o));
                        return Err(SourceError::new(
                            self.ctx.file,
                            at,
                            format!(
                                "{}: unknown argument `{k}`{}; expected one of: {}",
                                spec.fqcn,
                                suggest(k, spec.args.iter().map(|a| a.name)),
                                spec.args
                                    .iter()
                                    .map(|a| a.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    };
                    let typed = if a.kind == Kind::Str {
                        Json::String(v.to_string())
                    } else {
                        typed
                    };
                    args.push((a.name.to_string(), typed, value));
                }
            }
            Value::Null => {}
            _ => {
                return Err(self.ctx.err(
                    value,
                    format!(
                        "{}: expected a mapping of arguments, found {}",
                        spec.fqcn,
                        value.kind()
                    ),
                ))
            }
        }
        for (name, json, node) in &args {
            if let Some(dup) = args.iter().filter(|(n, _, _)| n == name).nth(1) {
                return Err(self.ctx.err(
                    dup.2,
                    format!("{}: argument `{name}` given twice (an alias?)", spec.fqcn),
                ));
            }
            self.check_templates(node)?;
            if let Some(a) = spec.canonical_arg(name) {
                check_kind(a.kind, json).map_err(|expected| {
                    self.ctx.err(
                        node,
                        format!(
                            "{}: argument `{name}`: expected {expected}, found {}",
                            spec.fqcn,
                            describe_json(json)
                        ),
                    )
                })?;
            }
        }
        let has = |n: &str| args.iter().any(|(a, _, _)| a == n);
        for r in spec.required {
            if !has(r) {
                return Err(self.ctx.err(
                    key,
                    format!("{}: missing required argument `{r}`", spec.fqcn),
                ));
            }
        }
        if !spec.one_of.is_empty() && !spec.one_of.iter().any(|r| has(r)) {
            let names: Vec<&str> = spec
                .one_of
                .iter()
                .map(|n| {
                    if *n == "_raw_params" {
                        "a free-form command"
                    } else {
                        n
                    }
                })
                .collect();
            return Err(self.ctx.err(
                key,
                format!("{}: one of {} is required", spec.fqcn, names.join(", ")),
            ));
        }
        Ok(args.into_iter().map(|(n, j, _)| (n, j)).collect())
    }

    fn mapping_args<'n>(
        &self,
        spec: &'static ModuleSpec,
        value: &'n Node,
        args: &mut Vec<(String, Json, &'n Node)>,
    ) -> Result<(), SourceError> {
        for (name, v) in self.ctx.map(value, spec.fqcn)? {
            if spec.any_args && crate::template::is_var_name(name) {
                args.push((name.to_string(), v.to_json(), v));
                continue;
            }
            let Some(a) = spec.canonical_arg(name) else {
                let free = if spec.free_form {
                    ", or a free-form command string"
                } else {
                    ""
                };
                return Err(self.ctx.err(
                    key_node(value, name),
                    format!(
                        "{}: unknown argument `{name}`{}; expected one of: {}{free}",
                        spec.fqcn,
                        suggest(name, spec.args.iter().map(|a| a.name)),
                        spec.args
                            .iter()
                            .map(|a| a.name)
                            .filter(|n| !n.starts_with('_'))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            if a.name.starts_with('_') {
                return Err(self.ctx.err(
                    key_node(value, name),
                    format!("{}: unknown argument `{name}`", spec.fqcn),
                ));
            }
            args.push((a.name.to_string(), v.to_json(), v));
        }
        Ok(())
    }
}

/// Splits Ansible's trailing `key=value` options (`creates=`, `chdir=`...) off a free-form line.
fn split_free_form(s: &str, spec: &ModuleSpec) -> (String, Vec<(String, String)>) {
    let mut words: Vec<&str> = s.split(' ').collect();
    let mut opts = Vec::new();
    while let Some(last) = words.last() {
        match last.split_once('=') {
            Some((k, v)) if k != "_raw_params" && spec.canonical_arg(k).is_some() && k != "cmd" => {
                opts.push((k.to_string(), v.to_string()));
                words.pop();
            }
            _ => break,
        }
    }
    (words.join(" "), opts)
}

fn describe_json(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}

/// Whether a literal argument fits `kind`; templated strings are checked after rendering.
pub fn check_kind(kind: Kind, v: &Json) -> Result<(), String> {
    if let Json::String(s) = v {
        if template::is_template(s) {
            return Ok(());
        }
    }
    let ok = match (kind, v) {
        (_, Json::Null) => true,
        (Kind::Any, _) => true,
        (Kind::Str, Json::String(_) | Json::Number(_) | Json::Bool(_)) => true,
        (Kind::Bool, Json::Bool(_)) => true,
        (Kind::Bool, Json::String(s)) => yaml::parse_bool(s).is_some(),
        (Kind::Int, Json::Number(n)) => n.is_i64(),
        (Kind::Int, Json::String(s)) => s.parse::<i64>().is_ok(),
        (Kind::Mode, Json::Number(n)) => n.as_u64().is_some_and(|m| m <= 0o7777),
        (Kind::Mode, Json::String(s)) => {
            u32::from_str_radix(s.trim_start_matches("0o"), 8).is_ok_and(|m| m <= 0o7777)
        }
        (Kind::Choice(c), Json::String(s)) => c.contains(&s.as_str()),
        (Kind::StrOrList, Json::String(_) | Json::Array(_)) => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Kind::Str => "a string".into(),
        Kind::Bool => "a boolean (true/false)".into(),
        Kind::Int => "an integer".into(),
        Kind::Mode => "an octal mode such as \"0644\"".into(),
        Kind::Choice(c) => format!("one of {}", c.join(", ")),
        Kind::StrOrList => "a string or a list".into(),
        Kind::Any => "a value".into(),
    })
}
