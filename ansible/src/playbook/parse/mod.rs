//! Playbook text into [`Playbook`]: plays and their keywords here; task lists in `task`,
//! module arguments in `args`, roles in `role_load`. Every file a playbook reaches statically
//! (imports, roles, `include_*` of a literal name) is read and checked here, before anything
//! runs; errors point at the offending node of the file they are in.

mod args;
mod role_load;
mod task;

pub use args::check_kind;

use super::roles::{LoadedRole, Seen};
use super::{Item, Origin, Play, Playbook, Scope, Task, VarsFile};
use crate::template::{self, Templar, Vars};
use crate::yaml::{self, key_node, Ctx, Node, Pos, SourceError, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deep imports and roles may nest (a file importing itself is refused long before).
const MAX_NESTING: usize = 32;

/// Reads playbooks and the files they reach. One per command; dynamic includes use it again at
/// run time.
pub struct Loader {
    /// `roles_path` from ansible.cfg, searched after `roles/` beside the playbook.
    pub roles_path: Vec<PathBuf>,
    pub(super) templar: Templar,
    /// The files being read, innermost last, to refuse a file that includes itself.
    stack: RefCell<Vec<PathBuf>>,
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new(Vec::new())
    }
}

/// Loads the playbook at `path` (roles only from `roles/` beside it).
pub fn load(path: &Path) -> anyhow::Result<Playbook> {
    Loader::default().load(path)
}

/// Parses playbook `text` named `file` whose relative paths start at `dir`.
pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Playbook, SourceError> {
    Loader::default().parse(file, text, dir)
}

impl Loader {
    pub fn new(roles_path: Vec<PathBuf>) -> Loader {
        Loader {
            roles_path,
            templar: Templar::new(),
            stack: RefCell::new(Vec::new()),
        }
    }

    pub fn load(&self, path: &Path) -> anyhow::Result<Playbook> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read playbook {}: {e}", path.display()))?;
        let dir = parent_dir(path);
        Ok(self.parse(&path.display().to_string(), &text, &dir)?)
    }

    pub fn parse(&self, file: &str, text: &str, dir: &Path) -> Result<Playbook, SourceError> {
        let plays = self.plays(file, text, dir, &Imported::default())?;
        Ok(Playbook {
            path: file.to_string(),
            dir: dir.to_path_buf(),
            plays,
        })
    }

    /// The tasks of `include_tasks: name` reached at run time from a task of `origin` (at
    /// `pos`), and the file's path.
    pub fn include_tasks(
        &self,
        origin: &Arc<Origin>,
        name: &str,
        pos: Pos,
    ) -> Result<(Vec<Item>, String), SourceError> {
        let fp = FileParser {
            ctx: Ctx {
                file: &origin.file,
                text: "",
            },
            loader: self,
            origin: origin.clone(),
        };
        let path = fp.task_file(name);
        let at = At {
            file: origin.file.clone(),
            pos,
        };
        let items = fp.task_file_items(&path, &at, &mut Seen::default())?;
        Ok((items, path.display().to_string()))
    }

    /// The role `include_role: name` reaches at run time from a task of `origin`.
    pub fn include_role(
        &self,
        origin: &Arc<Origin>,
        name: &str,
        from: &crate::playbook::roles::From,
        pos: Pos,
    ) -> Result<LoadedRole, SourceError> {
        let fp = FileParser {
            ctx: Ctx {
                file: &origin.file,
                text: "",
            },
            loader: self,
            origin: origin.clone(),
        };
        let at = At {
            file: origin.file.clone(),
            pos,
        };
        fp.load_role(name, from, Vars::new(), Vars::new(), &at)
    }

    /// Reads a file another one names at `at` (`file:pos`), guarding against cycles; `f` gets
    /// its text and its name as errors show it.
    pub(super) fn with_file<T>(
        &self,
        path: &Path,
        at: &At,
        f: impl FnOnce(&str, &str) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        {
            let stack = self.stack.borrow();
            if stack.contains(&canonical) {
                return Err(at.err(format!("{} includes itself", path.display())));
            }
            if stack.len() >= MAX_NESTING {
                return Err(at.err(format!(
                    "imports and roles nested deeper than {MAX_NESTING} files"
                )));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| at.err(format!("cannot read {}: {e}", path.display())))?;
        self.stack.borrow_mut().push(canonical);
        let result = f(&path.display().to_string(), &text);
        self.stack.borrow_mut().pop();
        result
    }

    /// The plays of one playbook file (`import_playbook` entries expanded).
    fn plays(
        &self,
        file: &str,
        text: &str,
        dir: &Path,
        imported: &Imported,
    ) -> Result<Vec<Play>, SourceError> {
        let root = yaml::load(file, text)?;
        let p = FileParser {
            ctx: Ctx { file, text },
            loader: self,
            origin: Arc::new(Origin {
                file: file.to_string(),
                dir: dir.to_path_buf(),
                role: None,
            }),
        };
        if root.value == Value::Null {
            return Err(p.ctx.err(&root, "empty playbook: expected a list of plays"));
        }
        let mut plays = Vec::new();
        for node in p.ctx.seq(&root, "playbook")? {
            if let Some(import) = p.import_playbook(node, imported)? {
                plays.extend(import);
            } else {
                plays.push(p.play(node, imported)?);
            }
        }
        Ok(plays)
    }
}

/// What an `import_playbook` passes to the plays it brings in.
#[derive(Debug, Clone, Default)]
struct Imported {
    when: Vec<String>,
    vars: Vars,
    tags: Vec<String>,
}

/// A place in a file, for errors about what is found there later (a file it names).
#[derive(Debug, Clone)]
pub(super) struct At {
    pub file: String,
    pub pos: Pos,
}

impl At {
    pub fn err(&self, msg: impl Into<String>) -> SourceError {
        SourceError::new(&self.file, self.pos, msg)
    }
}

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Parses the nodes of one file.
pub(super) struct FileParser<'a> {
    pub ctx: Ctx<'a>,
    pub loader: &'a Loader,
    /// The file, its directory and its role, as the tasks read from it carry them.
    pub origin: Arc<Origin>,
}

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "become",
    "become_user",
    "become_method",
    "gather_facts",
    "gather_subset",
    "vars",
    "vars_files",
    "pre_tasks",
    "roles",
    "tasks",
    "post_tasks",
    "handlers",
    "tags",
    "check_mode",
    "diff",
    "ignore_errors",
    "no_log",
    "collections",
    "strategy",
    "any_errors_fatal",
    "force_handlers",
];

/// Play keywords of Ansible that c1m does not run: refused by name rather than ignored.
const PLAY_REFUSED: &[(&str, &str)] = &[
    (
        "serial",
        "c1m runs every host of a play at once (bounded by --forks)",
    ),
    (
        "max_fail_percentage",
        "a failed host stops only itself in c1m",
    ),
    ("order", "hosts run in inventory order"),
    (
        "connection",
        "set ansible_connection in the inventory instead",
    ),
    (
        "remote_user",
        "set ansible_user in the inventory or remote_user in ansible.cfg",
    ),
    ("port", "set ansible_port in the inventory"),
    ("environment", "c1m sets no environment for commands"),
    ("module_defaults", ""),
    ("vars_prompt", "c1m never prompts"),
    ("run_once", ""),
    ("throttle", ""),
    ("timeout", ""),
    ("debugger", ""),
    ("fact_path", ""),
    ("gather_timeout", ""),
    ("ignore_unreachable", ""),
    ("become_exe", ""),
    ("become_flags", ""),
];

impl FileParser<'_> {
    pub fn at(&self, node: &Node) -> At {
        At {
            file: self.ctx.file.to_string(),
            pos: node.pos,
        }
    }

    pub fn templar(&self) -> &Templar {
        &self.loader.templar
    }

    pub fn check_templates(&self, node: &Node) -> Result<(), SourceError> {
        match &node.value {
            Value::Str(s) => self
                .templar()
                .check_template(s)
                .map_err(|e| self.ctx.err(node, format!("bad Jinja template: {e}"))),
            Value::Seq(items) => items.iter().try_for_each(|i| self.check_templates(i)),
            Value::Map(pairs) => pairs.iter().try_for_each(|(_, v)| self.check_templates(v)),
            _ => Ok(()),
        }
    }

    pub fn vars(&self, node: &Node, what: &str) -> Result<Vars, SourceError> {
        if node.value == Value::Null {
            return Ok(Vars::new());
        }
        let mut vars = Vars::new();
        for (k, v) in self.ctx.map(node, what)? {
            if !template::is_var_name(k) {
                return Err(self.ctx.err(
                    key_node(node, k),
                    format!("{what}: {k:?} is not a valid variable name"),
                ));
            }
            self.check_templates(v)?;
            vars.insert(k.to_string(), v.to_json());
        }
        Ok(vars)
    }

    pub fn conditions(&self, value: &Node, what: &str) -> Result<Vec<String>, SourceError> {
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
                self.templar().check_expression(&expr).map_err(|e| {
                    self.ctx
                        .err(n, format!("{what}: bad expression {expr:?}: {e}"))
                })?;
                Ok(expr)
            })
            .collect()
    }

    pub fn string_list(&self, value: &Node, what: &str) -> Result<Vec<String>, SourceError> {
        match &value.value {
            Value::Seq(items) => items.iter().map(|i| self.ctx.string(i, what)).collect(),
            _ => Ok(vec![self.ctx.string(value, what)?]),
        }
    }

    /// Tags: a list, or one string of comma-separated tags.
    pub fn tags(&self, value: &Node) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        for t in self.string_list(value, "tags")? {
            out.extend(
                t.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        Ok(out)
    }

    /// A keyword every play, block and task may carry, into `scope`; false when `key` is none.
    pub fn scope_key(
        &self,
        scope: &mut Scope,
        key: &str,
        value: &Node,
    ) -> Result<bool, SourceError> {
        match key {
            "when" => scope.when = self.conditions(value, "when")?,
            "become" => scope.become_ = Some(self.ctx.bool(value, "become")?),
            "become_user" => {
                let user = self.ctx.string(value, "become_user")?;
                self.check_templates(value)?;
                scope.become_user = Some(user);
            }
            "become_method" => {
                if value.as_str() != Some("sudo") {
                    return Err(self
                        .ctx
                        .err(value, "become_method: c1m supports only `sudo`"));
                }
            }
            "vars" => scope.vars = self.vars(value, "vars")?,
            "tags" => scope.tags = self.tags(value)?,
            "ignore_errors" => scope.ignore_errors = Some(self.ctx.bool(value, "ignore_errors")?),
            "check_mode" => scope.check_mode = Some(self.ctx.bool(value, "check_mode")?),
            "diff" => scope.diff = Some(self.ctx.bool(value, "diff")?),
            "no_log" => scope.no_log = Some(self.ctx.bool(value, "no_log")?),
            "collections" => {
                // Only changes how short module names resolve; c1m's are fixed.
                self.string_list(value, "collections")?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `- import_playbook: file` (with `when`, `vars`, `tags`, `name`); `None` for a play.
    fn import_playbook(
        &self,
        node: &Node,
        outer: &Imported,
    ) -> Result<Option<Vec<Play>>, SourceError> {
        let fields = self.ctx.map(node, "play")?;
        let Some((key, file_node)) = fields
            .iter()
            .find(|(k, _)| matches!(*k, "import_playbook" | "ansible.builtin.import_playbook"))
        else {
            return Ok(None);
        };
        let file = self.ctx.string(file_node, key)?;
        if template::is_template(&file) {
            return Err(self.ctx.err(
                file_node,
                "import_playbook: the file name must be literal (imports are read before anything runs)",
            ));
        }
        let mut imported = outer.clone();
        for (k, v) in &fields {
            match *k {
                "import_playbook" | "ansible.builtin.import_playbook" | "name" => {}
                "when" => imported.when.extend(self.conditions(v, "when")?),
                "vars" => imported.vars.extend(self.vars(v, "vars")?),
                "tags" => imported.tags.extend(self.tags(v)?),
                other => {
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!("import_playbook: c1m does not support `{other}` here; expected when, vars, tags, name"),
                    ))
                }
            }
        }
        let path = self.origin.dir.join(&file);
        let dir = parent_dir(&path);
        let at = self.at(file_node);
        let plays = self.loader.with_file(&path, &at, |name, text| {
            self.loader.plays(name, text, &dir, &imported)
        })?;
        Ok(Some(plays))
    }

    fn play(&self, node: &Node, imported: &Imported) -> Result<Play, SourceError> {
        let fields = self.ctx.map(node, "play")?;
        let mut play = Play {
            name: String::new(),
            hosts: String::new(),
            become_: None,
            become_user: None,
            gather_facts: true,
            vars: imported.vars.clone(),
            vars_files: Vec::new(),
            tags: imported.tags.clone(),
            when: imported.when.clone(),
            pre_tasks: Vec::new(),
            tasks: Vec::new(),
            post_tasks: Vec::new(),
            handlers: Vec::new(),
            roles: Vec::new(),
            origin: self.origin.clone(),
            pos: node.pos,
        };
        // Keywords passed down to every task of the play.
        let mut scope = Scope::default();
        let mut has_hosts = false;
        let mut role_items = Vec::new();
        let mut seen_roles = Seen::default();
        for (key, value) in &fields {
            if let Some((_, why)) = PLAY_REFUSED.iter().find(|(k, _)| k == key) {
                return Err(self.ctx.err(
                    key_node(node, key),
                    format!(
                        "c1m does not support the play keyword `{key}`{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ),
                ));
            }
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
                "gather_facts" => play.gather_facts = self.ctx.bool(value, "gather_facts")?,
                "gather_subset" => {
                    // c1m gathers one fixed set of facts; the subset only narrows Ansible's.
                    self.string_list(value, "gather_subset")?;
                }
                "vars" => play.vars.extend(self.vars(value, "play vars")?),
                "vars_files" => play.vars_files = self.vars_files(value)?,
                "tags" => play.tags.extend(self.tags(value)?),
                "strategy" => {
                    if !matches!(value.as_str(), Some("linear" | "free")) {
                        return Err(self.ctx.err(
                            value,
                            "strategy: c1m runs each host's tasks in order on its own (`linear` or `free`)",
                        ));
                    }
                }
                "any_errors_fatal" | "force_handlers" => {
                    if self.ctx.bool(value, key)? {
                        return Err(self.ctx.err(
                            value,
                            format!("c1m does not support `{key}: true`: a failed host stops only itself"),
                        ));
                    }
                }
                "roles" => {
                    if value.value != Value::Null {
                        for entry in self.ctx.seq(value, "roles")? {
                            role_items.extend(self.role_entry(entry, &mut seen_roles)?);
                        }
                    }
                }
                "pre_tasks" | "tasks" | "post_tasks" => {
                    let items = self.items(value, key, &mut seen_roles)?;
                    match *key {
                        "pre_tasks" => play.pre_tasks = items,
                        "tasks" => play.tasks = items,
                        _ => play.post_tasks = items,
                    }
                }
                "handlers" => {
                    let mut handlers = self.handlers(value)?;
                    // A play's own handlers come before its roles' in lookups by name.
                    handlers.append(&mut play.handlers);
                    play.handlers = handlers;
                }
                other => {
                    if other != "when"
                        && other != "vars"
                        && self.scope_key(&mut scope, other, value)?
                    {
                        continue;
                    }
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!(
                            "unknown play keyword `{other}`{}; expected one of: {}",
                            suggest(other, PLAY_KEYS.iter().copied()),
                            PLAY_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        // Handlers and vars of every role the play brings in (`roles:` and `import_role`).
        for r in seen_roles.take_new() {
            for h in r.handlers.iter() {
                play.handlers.push(h.clone());
            }
            for role in r.imported.iter().chain([&r.role]) {
                if !play.roles.iter().any(|x| Arc::ptr_eq(x, role)) {
                    play.roles.push(role.clone());
                }
            }
        }
        if !has_hosts {
            return Err(self.ctx.err(
                node,
                "play has no `hosts:`; expected a host pattern such as `all`",
            ));
        }
        // Roles run before the play's tasks, whatever the order of the keys.
        role_items.append(&mut play.tasks);
        play.tasks = role_items;
        // The play's own keywords wrap each section (its `become` and `vars` are the play's).
        if scope.when.is_empty()
            && scope.become_.is_none()
            && scope.become_user.is_none()
            && scope.ignore_errors.is_none()
            && scope.check_mode.is_none()
            && scope.diff.is_none()
            && scope.no_log.is_none()
        {
            // nothing to wrap
        } else {
            for section in [&mut play.pre_tasks, &mut play.tasks, &mut play.post_tasks] {
                let inner = std::mem::take(section);
                *section = vec![Item::Block(Box::new(super::Block {
                    name: None,
                    scope: scope.clone(),
                    block: inner,
                    rescue: Vec::new(),
                    always: Vec::new(),
                    role: None,
                    pos: node.pos,
                }))];
            }
        }
        self.check_notify(&play)?;
        Ok(play)
    }

    fn vars_files(&self, value: &Node) -> Result<Vec<VarsFile>, SourceError> {
        let mut out = Vec::new();
        for item in self.ctx.seq(value, "vars_files")? {
            let candidates = match &item.value {
                Value::Seq(_) => self.string_list(item, "vars_files")?,
                _ => vec![self.ctx.string(item, "vars_files: a file name")?],
            };
            self.check_templates(item)?;
            // A literal name is read now, so a bad file stops the run before it starts.
            for c in &candidates {
                if !template::is_template(c) {
                    let path = self.origin.dir.join(c);
                    if path.is_file() || candidates.len() == 1 {
                        let at = self.at(item);
                        self.loader.with_file(&path, &at, |name, text| {
                            crate::inventory::vars_dirs::parse_vars(name, text)
                        })?;
                    }
                }
            }
            out.push(VarsFile {
                candidates,
                pos: item.pos,
            });
        }
        Ok(out)
    }

    fn handlers(&self, value: &Node) -> Result<Vec<Task>, SourceError> {
        if value.value == Value::Null {
            return Ok(Vec::new());
        }
        self.ctx
            .seq(value, "handlers")?
            .iter()
            .map(|n| self.task(n, true))
            .collect()
    }

    /// Every `notify` must name a handler (by name, `role : name`, or `listen`), else nothing
    /// would run it.
    fn check_notify(&self, play: &Play) -> Result<(), SourceError> {
        let names: BTreeSet<String> = play.handlers.iter().flat_map(handler_names).collect();
        let mut missing: Option<(&Task, &str)> = None;
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
        let mut tasks = Vec::new();
        for s in [&play.pre_tasks, &play.tasks, &play.post_tasks] {
            walk(s, &mut tasks);
        }
        tasks.extend(play.handlers.iter());
        'outer: for t in tasks {
            for n in &t.notify {
                if !template::is_template(n) && !names.contains(n) {
                    missing = Some((t, n));
                    break 'outer;
                }
            }
        }
        if let Some((task, n)) = missing {
            let list: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(SourceError::new(
                &task.origin.file,
                task.pos,
                format!(
                    "notify: no handler named `{n}`{}; handlers of this play: {}",
                    suggest(n, list.iter().copied()),
                    if list.is_empty() {
                        "none".into()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
        Ok(())
    }
}

/// The names a handler answers to: its name, `role : name`, and its `listen` topics.
pub fn handler_names(h: &Task) -> Vec<String> {
    let mut out: Vec<String> = h.name.iter().cloned().collect();
    if let (Some(role), Some(name)) = (&h.origin.role, &h.name) {
        out.push(format!("{} : {name}", role.name));
    }
    out.extend(h.listen.iter().cloned());
    out
}

/// The closest of `candidates` to `word`, for "did you mean" hints.
pub(super) fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (similar::TextDiff::from_chars(word, c).ratio(), c))
        .filter(|(r, _)| *r >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    best.map_or(String::new(), |(_, c)| format!(" (did you mean `{c}`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn play_keywords_ansible_has_but_c1m_does_not_are_refused_by_name() {
        let e = parse("b.yml", "- hosts: all\n  serial: 1\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().starts_with("b.yml:2:3:"), "{e}");
        assert!(
            e.msg.contains("does not support the play keyword `serial`"),
            "{e}"
        );
    }
}
