//! Task lists: tasks, blocks (`block`/`rescue`/`always`), static imports (`import_tasks`,
//! `import_role`), dynamic includes (`include_tasks`, `include_role`) and `meta`, with every
//! keyword checked. Keywords Ansible has but c1m does not run are refused by name.

use super::{suggest, At, FileParser};
use crate::playbook::modules::{self, ModuleSpec};
use crate::playbook::roles::From;
use crate::playbook::roles::Seen;
use crate::playbook::{
    Block, Flatten, Include, IncludeWhat, Item, Loop, Meta, MetaAction, Origin, Scope, Task, Until,
};
use crate::template;
use crate::yaml::{key_node, Node, SourceError, Value};
use std::path::PathBuf;
use std::sync::Arc;

const TASK_KEYS: &[&str] = &[
    "name",
    "notify",
    "when",
    "loop",
    "loop_control",
    "with_items",
    "with_list",
    "with_dict",
    "register",
    "become",
    "become_user",
    "become_method",
    "ignore_errors",
    "tags",
    "changed_when",
    "failed_when",
    "until",
    "retries",
    "delay",
    "vars",
    "args",
    "check_mode",
    "diff",
    "no_log",
    "listen",
];

/// Keywords of Ansible's tasks and blocks that c1m does not run, and why (or what instead).
const REFUSED: &[(&str, &str)] = &[
    ("async", "tasks run to completion over the host's session"),
    ("poll", ""),
    ("delegate_to", "every task runs on its own host"),
    ("delegate_facts", ""),
    ("local_action", "every task runs on its own host"),
    ("run_once", ""),
    (
        "environment",
        "c1m sets no environment for commands; put the variables in the command",
    ),
    ("any_errors_fatal", "a failed host stops only itself"),
    ("ignore_unreachable", ""),
    ("connection", "set ansible_connection in the inventory"),
    ("remote_user", "set ansible_user in the inventory"),
    ("port", "set ansible_port in the inventory"),
    ("throttle", ""),
    ("timeout", ""),
    ("debugger", ""),
    ("module_defaults", ""),
    ("action", "name the module as the task's key"),
    ("become_exe", ""),
    ("become_flags", ""),
    ("include", "use include_tasks or import_tasks"),
    (
        "ansible.builtin.include",
        "use include_tasks or import_tasks",
    ),
];

const BLOCK_KEYS: &[&str] = &[
    "block",
    "rescue",
    "always",
    "name",
    "when",
    "become",
    "become_user",
    "become_method",
    "vars",
    "tags",
    "ignore_errors",
    "check_mode",
    "diff",
    "no_log",
];

/// How a task names another file or role, under short or fully-qualified names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    IncludeTasks,
    ImportTasks,
    IncludeRole,
    ImportRole,
    Meta,
}

fn reach_of(key: &str) -> Option<Reach> {
    let short = key
        .strip_prefix("ansible.builtin.")
        .or_else(|| key.strip_prefix("ansible.legacy."))
        .unwrap_or(key);
    Some(match short {
        "include_tasks" => Reach::IncludeTasks,
        "import_tasks" => Reach::ImportTasks,
        "include_role" => Reach::IncludeRole,
        "import_role" => Reach::ImportRole,
        "meta" => Reach::Meta,
        _ => return None,
    })
}

impl FileParser<'_> {
    fn refuse_known(&self, node: &Node, key: &str, what: &str) -> Result<(), SourceError> {
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == key) {
            return Err(self.ctx.err(
                key_node(node, key),
                format!(
                    "c1m does not support the {what} keyword `{key}`{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                ),
            ));
        }
        if key.starts_with("with_") && !matches!(key, "with_items" | "with_list" | "with_dict") {
            return Err(self.ctx.err(
                key_node(node, key),
                format!("c1m does not support `{key}`: it has loop, with_items, with_list and with_dict"),
            ));
        }
        Ok(())
    }

    /// A task list (`tasks:`, `block:`, a task file).
    pub fn items(
        &self,
        value: &Node,
        what: &str,
        seen: &mut Seen,
    ) -> Result<Vec<Item>, SourceError> {
        if value.value == Value::Null {
            return Ok(Vec::new());
        }
        self.ctx
            .seq(value, what)?
            .iter()
            .map(|n| self.item(n, seen))
            .collect()
    }

    fn item(&self, node: &Node, seen: &mut Seen) -> Result<Item, SourceError> {
        let fields = self.ctx.map(node, "task")?;
        if fields.iter().any(|(k, _)| *k == "block") {
            return self.block(node, &fields, seen);
        }
        if let Some((key, value)) = fields
            .iter()
            .find_map(|(k, v)| reach_of(k).map(|r| (r, (*k, *v))))
        {
            let (name, value) = value;
            return match key {
                Reach::ImportTasks => self.import_tasks(node, &fields, name, value, seen),
                Reach::IncludeTasks => self.include_tasks(node, &fields, name, value, seen),
                Reach::ImportRole => self.import_role(node, &fields, name, value, seen),
                Reach::IncludeRole => self.include_role(node, &fields, name, value),
                Reach::Meta => self.meta(node, &fields, value),
            };
        }
        Ok(Item::Task(Box::new(self.task(node, false)?)))
    }

    fn block(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        seen: &mut Seen,
    ) -> Result<Item, SourceError> {
        let mut b = Block {
            name: None,
            scope: Scope::default(),
            block: Vec::new(),
            rescue: Vec::new(),
            always: Vec::new(),
            role: None,
            pos: node.pos,
        };
        for (key, value) in fields {
            self.refuse_known(node, key, "block")?;
            match *key {
                "block" => b.block = self.items(value, "block", seen)?,
                "rescue" => b.rescue = self.items(value, "rescue", seen)?,
                "always" => b.always = self.items(value, "always", seen)?,
                "name" => b.name = Some(self.ctx.string(value, "block name")?),
                other => {
                    if self.scope_key(&mut b.scope, other, value)? {
                        continue;
                    }
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!(
                            "unknown block keyword `{other}`{}; expected one of: {}",
                            suggest(other, BLOCK_KEYS.iter().copied()),
                            BLOCK_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Item::Block(Box::new(b)))
    }

    /// The file an import or include names: beside the current file, in its role's `tasks/`,
    /// or beside the play.
    pub fn task_file(&self, name: &str) -> PathBuf {
        let mut candidates = vec![self.origin.dir.join(name)];
        if let Some(r) = &self.origin.role {
            candidates.push(r.path.join("tasks").join(name));
        }
        let found = candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .unwrap_or_else(|| candidates[0].clone());
        // Shown in `included: FILE for HOST` as Ansible shows it: absolute.
        std::path::absolute(&found).unwrap_or(found)
    }

    /// Parses a task file named at `at`, its tasks belonging to this file's role.
    pub fn task_file_items(
        &self,
        path: &std::path::Path,
        at: &At,
        seen: &mut Seen,
    ) -> Result<Vec<Item>, SourceError> {
        self.loader.with_file(path, at, |file, text| {
            let root = crate::yaml::load(file, text)?;
            let p = FileParser {
                ctx: crate::yaml::Ctx { file, text },
                loader: self.loader,
                origin: Arc::new(Origin {
                    file: file.to_string(),
                    dir: super::parent_dir(path),
                    role: self.origin.role.clone(),
                }),
            };
            p.items(&root, "task file", seen)
        })
    }

    /// The file name of `import_tasks: x` / `include_tasks: {file: x, apply: …}`, and `apply`.
    fn include_args<'n>(
        &self,
        module: &str,
        value: &'n Node,
        allow_apply: bool,
    ) -> Result<(String, &'n Node, Option<&'n Node>), SourceError> {
        match &value.value {
            Value::Str(s) => Ok((s.clone(), value, None)),
            Value::Map(_) => {
                let mut file = None;
                let mut apply = None;
                for (k, v) in self.ctx.map(value, module)? {
                    match k {
                        "file" | "_raw_params" => file = Some((self.ctx.string(v, "file")?, v)),
                        "apply" if allow_apply => apply = Some(v),
                        other => {
                            return Err(self.ctx.err(
                                key_node(value, other),
                                format!(
                                    "{module}: unknown argument `{other}`; expected file{}",
                                    if allow_apply { ", apply" } else { "" }
                                ),
                            ))
                        }
                    }
                }
                let (f, n) =
                    file.ok_or_else(|| self.ctx.err(value, format!("{module}: missing `file`")))?;
                Ok((f, n, apply))
            }
            _ => Err(self
                .ctx
                .err(value, format!("{module}: expected a file name"))),
        }
    }

    fn import_tasks(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        module: &str,
        value: &Node,
        seen: &mut Seen,
    ) -> Result<Item, SourceError> {
        let (file, file_node, _) = self.include_args(module, value, false)?;
        if template::is_template(&file) {
            return Err(self.ctx.err(
                file_node,
                "import_tasks: the file name must be literal (imports are read before anything runs); use include_tasks for a templated one",
            ));
        }
        let mut scope = Scope::default();
        let mut name = None;
        for (key, v) in fields {
            if *key == module {
                continue;
            }
            self.refuse_known(node, key, "import_tasks")?;
            match *key {
                "name" => name = Some(self.ctx.string(v, "name")?),
                "loop" | "with_items" | "with_list" | "with_dict" => return Err(self.ctx.err(
                    key_node(node, key),
                    "import_tasks cannot loop (it is read before anything runs); use include_tasks",
                )),
                other if self.scope_key(&mut scope, other, v)? => {}
                other => return Err(self.unknown_include_key(node, other, module)),
            }
        }
        let path = self.task_file(&file);
        let items = self.task_file_items(&path, &self.at(file_node), seen)?;
        Ok(Item::Block(Box::new(Block {
            name,
            scope,
            block: items,
            rescue: Vec::new(),
            always: Vec::new(),
            role: None,
            pos: node.pos,
        })))
    }

    fn unknown_include_key(&self, node: &Node, key: &str, module: &str) -> SourceError {
        self.ctx.err(
            key_node(node, key),
            format!("{module}: c1m does not support `{key}` here"),
        )
    }

    /// `apply:` keywords of an include, as a scope.
    fn apply(&self, apply: Option<&Node>) -> Result<Scope, SourceError> {
        let mut scope = Scope::default();
        if let Some(a) = apply {
            for (k, v) in self.ctx.map(a, "apply")? {
                if !self.scope_key(&mut scope, k, v)? {
                    return Err(self.ctx.err(
                        key_node(a, k),
                        format!("apply: c1m does not support `{k}` here; expected when, become, become_user, vars, tags, ignore_errors, check_mode, diff, no_log"),
                    ));
                }
            }
        }
        Ok(scope)
    }

    /// The keywords an include takes for itself (`name`, `when`, loops, `vars`, `tags`).
    fn include_common(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        module: &str,
        inc: &mut Include,
    ) -> Result<(), SourceError> {
        for (key, v) in fields {
            if *key == module {
                continue;
            }
            self.refuse_known(node, key, module)?;
            match *key {
                "name" => inc.name = Some(self.ctx.string(v, "name")?),
                "when" => inc.when = self.conditions(v, "when")?,
                "vars" => inc.vars = self.vars(v, "vars")?,
                "tags" => inc.tags = self.tags(v)?,
                "loop" | "with_items" | "with_list" | "with_dict" => {
                    if inc.loop_.is_some() {
                        return Err(self
                            .ctx
                            .err(key_node(node, key), "an include takes one loop keyword"));
                    }
                    inc.loop_ = Some(self.loop_items(key, v)?);
                }
                "loop_control" => {}
                other => return Err(self.unknown_include_key(node, other, module)),
            }
        }
        if let Some(lc) = fields.iter().find(|(k, _)| *k == "loop_control") {
            let l = inc.loop_.as_mut().ok_or_else(|| {
                self.ctx.err(
                    key_node(node, "loop_control"),
                    "loop_control without a loop",
                )
            })?;
            self.loop_control(lc.1, l)?;
        }
        Ok(())
    }

    fn include_tasks(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        module: &str,
        value: &Node,
        seen: &mut Seen,
    ) -> Result<Item, SourceError> {
        let (file, file_node, apply) = self.include_args(module, value, true)?;
        self.check_templates(file_node)?;
        let mut inc = Include {
            name: None,
            what: IncludeWhat::Tasks {
                file: file.clone(),
                parsed: None,
            },
            when: Vec::new(),
            loop_: None,
            vars: Default::default(),
            tags: Vec::new(),
            apply: self.apply(apply)?,
            origin: self.origin.clone(),
            pos: node.pos,
        };
        self.include_common(node, fields, module, &mut inc)?;
        if !template::is_template(&file) {
            let path = self.task_file(&file);
            let items = self.task_file_items(&path, &self.at(file_node), seen)?;
            inc.what = IncludeWhat::Tasks {
                file: path.display().to_string(),
                parsed: Some(Arc::new(items)),
            };
        }
        Ok(Item::Include(Box::new(inc)))
    }

    /// `name`, `tasks_from`, … of `include_role`/`import_role`.
    fn role_args<'n>(
        &self,
        module: &str,
        value: &'n Node,
        allow_apply: bool,
    ) -> Result<(String, &'n Node, From, Option<&'n Node>, bool), SourceError> {
        let mut name = None;
        let mut from = From::default();
        let mut apply = None;
        let mut allow_duplicates = true;
        for (k, v) in self.ctx.map(value, module)? {
            match k {
                "name" | "role" => name = Some((self.ctx.string(v, "name")?, v)),
                "tasks_from" => from.tasks = Some(self.ctx.string(v, k)?),
                "vars_from" => from.vars = Some(self.ctx.string(v, k)?),
                "defaults_from" => from.defaults = Some(self.ctx.string(v, k)?),
                "handlers_from" => from.handlers = Some(self.ctx.string(v, k)?),
                "allow_duplicates" => allow_duplicates = self.ctx.bool(v, k)?,
                "public" | "rolespec_validate" => {
                    self.ctx.bool(v, k)?;
                }
                "apply" if allow_apply => apply = Some(v),
                other => {
                    return Err(self.ctx.err(
                        key_node(value, other),
                        format!(
                            "{module}: unknown argument `{other}`; expected name, tasks_from, vars_from, defaults_from, handlers_from, allow_duplicates{}",
                            if allow_apply { ", apply" } else { "" }
                        ),
                    ))
                }
            }
        }
        let (name, node) =
            name.ok_or_else(|| self.ctx.err(value, format!("{module}: missing `name`")))?;
        for f in [&from.tasks, &from.vars, &from.defaults, &from.handlers]
            .into_iter()
            .flatten()
        {
            if template::is_template(f) {
                return Err(self
                    .ctx
                    .err(value, format!("{module}: *_from names must be literal")));
            }
        }
        Ok((name, node, from, apply, allow_duplicates))
    }

    fn import_role(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        module: &str,
        value: &Node,
        seen: &mut Seen,
    ) -> Result<Item, SourceError> {
        let (name, name_node, from, _, allow_duplicates) = self.role_args(module, value, false)?;
        if template::is_template(&name) {
            return Err(self.ctx.err(
                name_node,
                "import_role: the role name must be literal; use include_role for a templated one",
            ));
        }
        let mut scope = Scope::default();
        let mut block_name = None;
        for (key, v) in fields {
            if *key == module {
                continue;
            }
            self.refuse_known(node, key, "import_role")?;
            match *key {
                "name" => block_name = Some(self.ctx.string(v, "name")?),
                other if self.scope_key(&mut scope, other, v)? => {}
                other => return Err(self.unknown_include_key(node, other, module)),
            }
        }
        let items = self.role_items(
            &name,
            &from,
            Default::default(),
            Default::default(),
            allow_duplicates,
            &self.at(name_node),
            seen,
        )?;
        Ok(Item::Block(Box::new(Block {
            name: block_name,
            scope,
            block: items,
            rescue: Vec::new(),
            always: Vec::new(),
            role: None,
            pos: node.pos,
        })))
    }

    fn include_role(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        module: &str,
        value: &Node,
    ) -> Result<Item, SourceError> {
        let (name, name_node, from, apply, _) = self.role_args(module, value, true)?;
        self.check_templates(name_node)?;
        let mut inc = Include {
            name: None,
            what: IncludeWhat::Role {
                name: name.clone(),
                from: from.clone(),
                parsed: None,
            },
            when: Vec::new(),
            loop_: None,
            vars: Default::default(),
            tags: Vec::new(),
            apply: self.apply(apply)?,
            origin: self.origin.clone(),
            pos: node.pos,
        };
        self.include_common(node, fields, module, &mut inc)?;
        if !template::is_template(&name) {
            let loaded = self.load_role(
                &name,
                &from,
                Default::default(),
                Default::default(),
                &self.at(name_node),
            )?;
            inc.what = IncludeWhat::Role {
                name,
                from,
                parsed: Some(Arc::new(loaded)),
            };
        }
        Ok(Item::Include(Box::new(inc)))
    }

    fn meta(
        &self,
        node: &Node,
        fields: &[(&str, &Node)],
        value: &Node,
    ) -> Result<Item, SourceError> {
        let word = self.ctx.string(value, "meta")?;
        let action = MetaAction::NAMES
            .iter()
            .find(|(n, _)| *n == word)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                self.ctx.err(
                    value,
                    format!(
                        "meta: c1m does not support `{word}`{}; it has {}",
                        suggest(&word, MetaAction::NAMES.iter().map(|(n, _)| *n)),
                        MetaAction::NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        let mut meta = Meta {
            action,
            when: Vec::new(),
            tags: Vec::new(),
            origin: self.origin.clone(),
            pos: node.pos,
        };
        for (key, v) in fields {
            match *key {
                "meta" | "ansible.builtin.meta" | "ansible.legacy.meta" | "name" => {}
                "when" => meta.when = self.conditions(v, "when")?,
                "tags" => meta.tags = self.tags(v)?,
                other => {
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!(
                            "meta: c1m does not support `{other}` here; expected name, when, tags"
                        ),
                    ))
                }
            }
        }
        Ok(Item::Meta(Box::new(meta)))
    }

    fn loop_items(&self, key: &str, value: &Node) -> Result<Loop, SourceError> {
        match (&value.value, key) {
            (Value::Seq(_), "loop" | "with_items" | "with_list") => {}
            (Value::Map(_), "with_dict") => {}
            (Value::Str(s), _) if template::is_template(s) => {}
            _ => {
                let want = if key == "with_dict" {
                    "a mapping"
                } else {
                    "a list"
                };
                return Err(self.ctx.err(
                    value,
                    format!(
                        "{key}: expected {want} or a `{{{{ }}}}` template giving one, found {}",
                        value.kind()
                    ),
                ));
            }
        }
        self.check_templates(value)?;
        Ok(Loop {
            items: value.to_json(),
            flatten: match key {
                "with_items" => Flatten::OneLevel,
                "with_dict" => Flatten::Dict,
                _ => Flatten::None,
            },
            var: "item".into(),
            index_var: None,
            label: None,
        })
    }

    fn loop_control(&self, value: &Node, l: &mut Loop) -> Result<(), SourceError> {
        for (k, v) in self.ctx.map(value, "loop_control")? {
            match k {
                "loop_var" => {
                    let name = self.ctx.string(v, k)?;
                    if !template::is_var_name(&name) {
                        return Err(self.ctx.err(v, format!("loop_var: {name:?} is not a variable name")));
                    }
                    l.var = name;
                }
                "index_var" => {
                    let name = self.ctx.string(v, k)?;
                    if !template::is_var_name(&name) {
                        return Err(self.ctx.err(v, format!("index_var: {name:?} is not a variable name")));
                    }
                    l.index_var = Some(name);
                }
                "label" => {
                    self.check_templates(v)?;
                    l.label = Some(self.ctx.string(v, k)?);
                }
                "pause" | "extended" => {
                    return Err(self.ctx.err(
                        key_node(value, k),
                        format!("loop_control: c1m does not support `{k}`; it has loop_var, index_var, label"),
                    ))
                }
                other => {
                    return Err(self.ctx.err(
                        key_node(value, other),
                        format!("loop_control: unknown key `{other}`; expected loop_var, index_var, label"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// One task (or handler, with `listen`).
    pub fn task(&self, node: &Node, handler: bool) -> Result<Task, SourceError> {
        let fields = self
            .ctx
            .map(node, if handler { "handler" } else { "task" })?;
        let mut module: Option<(&'static ModuleSpec, &Node, &Node)> = None;
        let mut task = Task {
            name: None,
            // Replaced below once the module key is found.
            module: modules::MODULES[0],
            args: Vec::new(),
            scope: Scope::default(),
            loop_: None,
            register: None,
            notify: Vec::new(),
            listen: Vec::new(),
            changed_when: None,
            failed_when: None,
            until: None,
            origin: self.origin.clone(),
            pos: node.pos,
        };
        let mut extra_args = None;
        let (mut retries, mut delay) = (None, None);
        for (key, value) in &fields {
            self.refuse_known(node, key, if handler { "handler" } else { "task" })?;
            if handler && matches!(*key, "block") || reach_of(key).is_some() {
                return Err(self.ctx.err(
                    key_node(node, key),
                    format!("`{key}` where a single task is expected (a handler is one task)"),
                ));
            }
            match *key {
                "name" => {
                    let name = self.ctx.string(value, "task name")?;
                    self.check_templates(value)?;
                    task.name = Some(name);
                }
                "notify" => task.notify = self.string_list(value, "notify")?,
                "listen" if handler => task.listen = self.string_list(value, "listen")?,
                "changed_when" => task.changed_when = Some(self.conditions(value, "changed_when")?),
                "failed_when" => task.failed_when = Some(self.conditions(value, "failed_when")?),
                "until" => {
                    task.until = Some(Until {
                        conditions: self.conditions(value, "until")?,
                        retries: 3,
                        delay_secs: 5,
                    })
                }
                "retries" => retries = Some(self.small_int(value, "retries", 10_000)?),
                "delay" => delay = Some(self.small_int(value, "delay", 86_400)?),
                "loop" | "with_items" | "with_list" | "with_dict" => {
                    if task.loop_.is_some() {
                        return Err(self.ctx.err(
                            key_node(node, key),
                            "a task takes only one of `loop`, `with_items`, `with_list`, `with_dict`",
                        ));
                    }
                    task.loop_ = Some(self.loop_items(key, value)?);
                }
                "loop_control" => {}
                "register" => {
                    let name = self.ctx.string(value, "register")?;
                    if !template::is_var_name(&name) {
                        return Err(self.ctx.err(
                            value,
                            format!("register: expected a variable name, found {name:?}"),
                        ));
                    }
                    task.register = Some(name);
                }
                "args" => {
                    self.ctx.map(value, "args")?;
                    extra_args = Some(*value);
                }
                other => {
                    if self.scope_key(&mut task.scope, other, value)? {
                        continue;
                    }
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
        if let Some((_, lc)) = fields.iter().find(|(k, _)| *k == "loop_control") {
            let l = task.loop_.as_mut().ok_or_else(|| {
                self.ctx.err(
                    key_node(node, "loop_control"),
                    "loop_control without a loop",
                )
            })?;
            self.loop_control(lc, l)?;
        }
        match (&mut task.until, retries, delay) {
            (Some(u), r, d) => {
                if let Some(r) = r {
                    u.retries = r as u32;
                }
                if let Some(d) = d {
                    u.delay_secs = d;
                }
            }
            (None, Some(_), _) | (None, _, Some(_)) => {
                return Err(self.ctx.err(
                    key_node(
                        node,
                        if retries.is_some() {
                            "retries"
                        } else {
                            "delay"
                        },
                    ),
                    "retries and delay go with `until`",
                ))
            }
            _ => {}
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
        task.args = self.module_args(spec, key, value, extra_args)?;
        Ok(task)
    }

    fn small_int(&self, value: &Node, what: &str, max: u64) -> Result<u64, SourceError> {
        match &value.value {
            Value::Int(i) if (0..=max as i64).contains(i) => Ok(*i as u64),
            _ => Err(self
                .ctx
                .err(value, format!("{what}: expected a whole number 0-{max}"))),
        }
    }
}
