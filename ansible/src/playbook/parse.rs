//! Playbook text into [`Playbook`]: every keyword, module, argument and template is checked
//! here, with the position of the offending node.

use super::modules::{self, Kind, ModuleSpec};
use super::{Play, Playbook, Task};
use crate::template::{self, Templar, Vars};
use crate::yaml::{self, Ctx, Node, SourceError, Value};
use serde_json::Value as Json;
use std::path::Path;

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "become",
    "become_user",
    "become_method",
    "gather_facts",
    "vars",
    "tasks",
    "handlers",
];
const TASK_KEYS: &[&str] = &[
    "name",
    "notify",
    "when",
    "loop",
    "with_items",
    "register",
    "become",
    "become_user",
    "ignore_errors",
    "tags",
    "changed_when",
    "failed_when",
    "vars",
    "listen",
];

pub fn load(path: &Path) -> anyhow::Result<Playbook> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read playbook {}: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(parse(&path.display().to_string(), &text, &dir)?)
}

pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Playbook, SourceError> {
    let root = yaml::load(file, text)?;
    let ctx = Ctx { file, text };
    let templar = Templar::new();
    let p = Parser {
        ctx,
        templar: &templar,
    };
    if root.value == Value::Null {
        return Err(p.ctx.err(&root, "empty playbook: expected a list of plays"));
    }
    let plays = p
        .ctx
        .seq(&root, "playbook")?
        .iter()
        .map(|n| p.play(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Playbook {
        path: file.to_string(),
        dir: dir.to_path_buf(),
        plays,
    })
}

struct Parser<'a> {
    ctx: Ctx<'a>,
    templar: &'a Templar,
}

fn key_node<'n>(map: &'n Node, key: &str) -> &'n Node {
    match &map.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map_or(map, |(k, _)| k),
        _ => map,
    }
}

/// The closest of `candidates` to `word`, for "did you mean" hints.
fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (similar::TextDiff::from_chars(word, c).ratio(), c))
        .filter(|(r, _)| *r >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    best.map_or(String::new(), |(_, c)| format!(" (did you mean `{c}`?)"))
}

impl Parser<'_> {
    fn check_templates(&self, node: &Node) -> Result<(), SourceError> {
        match &node.value {
            Value::Str(s) => self
                .templar
                .check_template(s)
                .map_err(|e| self.ctx.err(node, format!("bad Jinja template: {e}"))),
            Value::Seq(items) => items.iter().try_for_each(|i| self.check_templates(i)),
            Value::Map(pairs) => pairs.iter().try_for_each(|(_, v)| self.check_templates(v)),
            _ => Ok(()),
        }
    }

    fn vars(&self, node: &Node, what: &str) -> Result<Vars, SourceError> {
        if node.value == Value::Null {
            return Ok(Vars::new());
        }
        let mut vars = Vars::new();
        for (k, v) in self.ctx.map(node, what)? {
            self.check_templates(v)?;
            vars.insert(k.to_string(), v.to_json());
        }
        Ok(vars)
    }

    fn play(&self, node: &Node) -> Result<Play, SourceError> {
        let fields = self.ctx.map(node, "play")?;
        let mut play = Play {
            name: String::new(),
            hosts: String::new(),
            become_: None,
            become_user: None,
            gather_facts: true,
            vars: Vars::new(),
            tasks: Vec::new(),
            handlers: Vec::new(),
            pos: node.pos,
        };
        let mut has_hosts = false;
        for (key, value) in &fields {
            match *key {
                "name" => play.name = self.ctx.string(value, "play name")?,
                "hosts" => {
                    has_hosts = true;
                    play.hosts = match &value.value {
                        Value::Seq(items) => items
                            .iter()
                            .map(|i| self.ctx.string(i, "hosts"))
                            .collect::<Result<Vec<_>, _>>()?
                            .join(","),
                        _ => self.ctx.string(value, "hosts: a host pattern")?,
                    }
                }
                "become" => play.become_ = Some(self.ctx.bool(value, "become")?),
                "become_user" => play.become_user = Some(self.ctx.string(value, "become_user")?),
                "become_method" => {
                    if value.as_str() != Some("sudo") {
                        return Err(self
                            .ctx
                            .err(value, "become_method: c1m supports only `sudo`"));
                    }
                }
                "gather_facts" => play.gather_facts = self.ctx.bool(value, "gather_facts")?,
                "vars" => play.vars = self.vars(value, "play vars")?,
                "tasks" | "handlers" => {
                    let list = if value.value == Value::Null {
                        &[][..]
                    } else {
                        self.ctx.seq(value, key)?
                    };
                    let tasks = list
                        .iter()
                        .map(|t| self.task(t, *key == "handlers"))
                        .collect::<Result<Vec<_>, _>>()?;
                    if *key == "tasks" {
                        play.tasks = tasks;
                    } else {
                        play.handlers = tasks;
                    }
                }
                other => {
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!(
                            "unknown play keyword `{other}`{}; expected one of: {}",
                            suggest(other, PLAY_KEYS.iter().copied()),
                            PLAY_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        if !has_hosts {
            return Err(self.ctx.err(
                node,
                "play has no `hosts:`; expected a host pattern such as `all`",
            ));
        }
        // Every notify must name a handler (by name or listen), else nothing would run it.
        let handler_names: Vec<&str> = play
            .handlers
            .iter()
            .flat_map(|h| {
                h.name
                    .iter()
                    .map(String::as_str)
                    .chain(h.listen.iter().map(String::as_str))
            })
            .collect();
        for task in play.tasks.iter().chain(play.handlers.iter()) {
            for n in &task.notify {
                if !handler_names.contains(&n.as_str()) {
                    return Err(SourceError::new(
                        self.ctx.file,
                        task.pos,
                        format!(
                            "notify: no handler named `{n}`{}; handlers of this play: {}",
                            suggest(n, handler_names.iter().copied()),
                            if handler_names.is_empty() {
                                "none".into()
                            } else {
                                handler_names.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        Ok(play)
    }

    fn conditions(&self, value: &Node, what: &str) -> Result<Vec<String>, SourceError> {
        let items: Vec<&Node> = match &value.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![value],
        };
        items
            .into_iter()
            .map(|n| {
                let expr = match &n.value {
                    Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
                    _ => self.ctx.string(n, what)?,
                };
                self.templar.check_expression(&expr).map_err(|e| {
                    self.ctx
                        .err(n, format!("{what}: bad expression {expr:?}: {e}"))
                })?;
                Ok(expr)
            })
            .collect()
    }

    fn string_list(&self, value: &Node, what: &str) -> Result<Vec<String>, SourceError> {
        match &value.value {
            Value::Seq(items) => items.iter().map(|i| self.ctx.string(i, what)).collect(),
            _ => Ok(vec![self.ctx.string(value, what)?]),
        }
    }

    fn task(&self, node: &Node, handler: bool) -> Result<Task, SourceError> {
        let fields = self
            .ctx
            .map(node, if handler { "handler" } else { "task" })?;
        let mut module: Option<(&'static ModuleSpec, &Node, &Node)> = None;
        let mut task = Task {
            name: None,
            // Replaced below once the module key is found.
            module: modules::MODULES[0],
            args: Vec::new(),
            when: Vec::new(),
            loop_: None,
            loop_flatten: false,
            register: None,
            notify: Vec::new(),
            listen: Vec::new(),
            become_: None,
            ignore_errors: false,
            check_mode: None,
            changed_when: None,
            failed_when: None,
            vars: Vars::new(),
            tags: Vec::new(),
            pos: node.pos,
        };
        for (key, value) in &fields {
            match *key {
                "name" => task.name = Some(self.ctx.string(value, "task name")?),
                "notify" => task.notify = self.string_list(value, "notify")?,
                "listen" if handler => task.listen = self.string_list(value, "listen")?,
                "when" => task.when = self.conditions(value, "when")?,
                "changed_when" => task.changed_when = Some(self.conditions(value, "changed_when")?),
                "failed_when" => task.failed_when = Some(self.conditions(value, "failed_when")?),
                "loop" | "with_items" => {
                    if task.loop_.is_some() {
                        return Err(self.ctx.err(
                            key_node(node, key),
                            "a task takes only one of `loop`, `with_items`",
                        ));
                    }
                    match &value.value {
                        Value::Seq(_) => {}
                        Value::Str(s) if template::is_template(s) => {}
                        _ => {
                            return Err(self.ctx.err(value, format!("{key}: expected a list or a `{{{{ }}}}` template giving one, found {}", value.kind())))
                        }
                    }
                    self.check_templates(value)?;
                    task.loop_ = Some(value.to_json());
                    task.loop_flatten = *key == "with_items";
                }
                "register" => {
                    let name = self.ctx.string(value, "register")?;
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        || name.starts_with(|c: char| c.is_ascii_digit())
                    {
                        return Err(self.ctx.err(
                            value,
                            format!("register: expected a variable name, found {name:?}"),
                        ));
                    }
                    task.register = Some(name);
                }
                "become" => task.become_ = Some(self.ctx.bool(value, "become")?),
                "become_user" => {
                    self.ctx.string(value, "become_user")?;
                }
                "ignore_errors" => task.ignore_errors = self.ctx.bool(value, "ignore_errors")?,
                "check_mode" => task.check_mode = Some(self.ctx.bool(value, "check_mode")?),
                "tags" => task.tags = self.string_list(value, "tags")?,
                "vars" => task.vars = self.vars(value, "task vars")?,
                other => {
                    let Some(spec) = modules::lookup(other) else {
                        let known = modules::MODULES
                            .iter()
                            .flat_map(|m| [m.short, m.fqcn])
                            .chain(TASK_KEYS.iter().copied());
                        return Err(self.ctx.err(
                            key_node(node, other),
                            format!(
                                "unknown module or task keyword `{other}`{}; c1m's modules: {}",
                                suggest(other, known),
                                modules::MODULES
                                    .iter()
                                    .map(|m| m.fqcn)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    };
                    if let Some((prev, _, _)) = module {
                        return Err(self.ctx.err(
                            key_node(node, other),
                            format!(
                                "a task runs one module, but this one has `{}` and `{other}`",
                                prev.short
                            ),
                        ));
                    }
                    module = Some((spec, key_node(node, other), value));
                }
            }
        }
        let Some((spec, key, value)) = module else {
            return Err(self.ctx.err(
                node,
                format!(
                    "{} has no module; expected one of: {}",
                    if handler { "handler" } else { "task" },
                    modules::MODULES
                        .iter()
                        .map(|m| m.fqcn)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        task.module = spec;
        task.args = self.module_args(spec, key, value)?;
        Ok(task)
    }

    fn module_args(
        &self,
        spec: &'static ModuleSpec,
        key: &Node,
        value: &Node,
    ) -> Result<Vec<(String, Json)>, SourceError> {
        let mut args: Vec<(String, Json, &Node)> = Vec::new();
        match &value.value {
            Value::Map(_) => {
                for (name, v) in self.ctx.map(value, spec.fqcn)? {
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
            }
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
                    let typed = yaml::load(self.ctx.file, v)
                        .map(|n| n.to_json())
                        .unwrap_or(Json::String(v.to_string()));
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
