//! Roles into task blocks: a role's `meta/` dependencies first (each once per play, unless
//! `allow_duplicates`), then the role's own tasks as a block that carries the role (for its
//! vars, templates and files). Used by a play's `roles:`, `import_role` and `include_role`.

use super::{At, FileParser};
use crate::inventory::vars_dirs::parse_vars;
use crate::playbook::roles::{self, From, LoadedRole, Role, Seen};
use crate::playbook::{Block, Item, Origin, Scope};
use crate::template::Vars;
use crate::yaml::{self, key_node, Ctx, Node, SourceError, Value};
use std::path::Path;
use std::sync::Arc;

/// Role entry keywords that are the role's, not parameters.
const ENTRY_KEYWORDS: &[&str] = &[
    "role",
    "name",
    "vars",
    "tags",
    "when",
    "become",
    "become_user",
    "become_method",
    "ignore_errors",
    "check_mode",
    "diff",
    "no_log",
    "collections",
];

/// Entry keywords Ansible has and c1m refuses (as for tasks).
const ENTRY_REFUSED: &[&str] = &[
    "delegate_to",
    "environment",
    "any_errors_fatal",
    "run_once",
    "connection",
    "remote_user",
    "port",
    "module_defaults",
    "throttle",
    "timeout",
    "debugger",
];

impl FileParser<'_> {
    /// One entry of `roles:` or of `meta/main.yml` `dependencies:`: a name, or a mapping with
    /// `role:`/`name:`, keywords and parameters.
    fn role_entry_parts<'n>(
        &self,
        entry: &'n Node,
    ) -> Result<(String, Scope, Vars, &'n Node), SourceError> {
        match &entry.value {
            Value::Str(name) => Ok((name.clone(), Scope::default(), Vars::new(), entry)),
            Value::Map(_) => {
                let mut name = None;
                let mut scope = Scope::default();
                let mut params = Vars::new();
                for (k, v) in self.ctx.map(entry, "role")? {
                    if ENTRY_REFUSED.contains(&k) {
                        return Err(self.ctx.err(
                            key_node(entry, k),
                            format!("c1m does not support the role keyword `{k}`"),
                        ));
                    }
                    match k {
                        "role" | "name" => {
                            if name.is_some() {
                                return Err(self.ctx.err(
                                    key_node(entry, k),
                                    "a role entry takes one of `role`, `name`",
                                ));
                            }
                            name = Some((self.ctx.string(v, k)?, v));
                        }
                        other if ENTRY_KEYWORDS.contains(&other) => {
                            self.scope_key(&mut scope, other, v)?;
                        }
                        param => {
                            if !crate::template::is_var_name(param) {
                                return Err(self.ctx.err(
                                    key_node(entry, param),
                                    format!(
                                        "role parameter {param:?} is not a valid variable name"
                                    ),
                                ));
                            }
                            self.check_templates(v)?;
                            params.insert(param.to_string(), v.to_json());
                        }
                    }
                }
                let (name, node) = name.ok_or_else(|| {
                    self.ctx
                        .err(entry, "role entry without `role:` (or `name:`)")
                })?;
                Ok((name, scope, params, node))
            }
            _ => Err(self.ctx.err(
                entry,
                format!(
                    "role entry: expected a name or a mapping, found {}",
                    entry.kind()
                ),
            )),
        }
    }

    /// One entry of a play's `roles:`, as blocks.
    pub fn role_entry(&self, entry: &Node, seen: &mut Seen) -> Result<Vec<Item>, SourceError> {
        let (name, mut scope, params, name_node) = self.role_entry_parts(entry)?;
        if crate::template::is_template(&name) {
            return Err(self.ctx.err(
                name_node,
                "roles: the role name must be literal; use include_role for a templated one",
            ));
        }
        // The entry's `vars:` are the role's vars (Ansible's role `vars` keyword), not block vars.
        let vars = std::mem::take(&mut scope.vars);
        let loaded = self.load_role(&name, &From::default(), vars, params, &self.at(name_node))?;
        let items = loaded.blocks(seen, entry.pos);
        Ok(vec![Item::Block(Box::new(Block {
            name: None,
            scope,
            block: items,
            rescue: Vec::new(),
            always: Vec::new(),
            role: None,
            pos: entry.pos,
        }))])
    }

    /// `import_role`'s blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn role_items(
        &self,
        name: &str,
        from: &From,
        vars: Vars,
        params: Vars,
        allow_duplicates: bool,
        at: &At,
        seen: &mut Seen,
    ) -> Result<Vec<Item>, SourceError> {
        let mut loaded = self.load_role(name, from, vars, params, at)?;
        // import_role's own `allow_duplicates` (default true) overrides the role's meta.
        loaded.allow_duplicates = allow_duplicates;
        Ok(loaded.blocks(seen, at.pos))
    }

    /// Reads role `name` with its dependencies.
    pub fn load_role(
        &self,
        name: &str,
        from: &From,
        vars: Vars,
        params: Vars,
        at: &At,
    ) -> Result<LoadedRole, SourceError> {
        let base = self.play_dir();
        let dir = roles::locate(name, &base, &self.loader.roles_path).map_err(|e| at.err(e))?;
        let role_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let read_vars = |part: &str, file: Option<&str>| -> Result<Vars, SourceError> {
            match roles::part_file(&dir, part, file) {
                Some(p) => self.loader.with_file(&p, at, parse_vars),
                None if file.is_some() => Err(at.err(format!(
                    "role {role_name}: no {part}/{} file",
                    file.unwrap_or("main")
                ))),
                None => Ok(Vars::new()),
            }
        };
        let defaults = read_vars("defaults", from.defaults.as_deref())?;
        let mut role_vars = read_vars("vars", from.vars.as_deref())?;
        role_vars.extend(vars);
        let role = Arc::new(Role {
            name: role_name.clone(),
            path: dir.clone(),
            defaults,
            vars: role_vars,
            params,
        });
        let (deps, allow_duplicates) = match roles::part_file(&dir, "meta", None) {
            Some(p) => self
                .loader
                .with_file(&p, at, |file, text| self.role_meta(file, text, &dir))?,
            None => (Vec::new(), false),
        };
        let origin_for = |path: &Path| {
            Arc::new(Origin {
                file: path.display().to_string(),
                dir: super::parent_dir(path),
                role: Some(role.clone()),
            })
        };
        let mut seen = Seen::default();
        let tasks = match roles::part_file(&dir, "tasks", from.tasks.as_deref()) {
            Some(p) => {
                let origin = origin_for(&p);
                self.loader.with_file(&p, at, |file, text| {
                    let root = yaml::load(file, text)?;
                    let fp = FileParser {
                        ctx: Ctx { file, text },
                        loader: self.loader,
                        origin,
                    };
                    fp.items(&root, "role tasks", &mut seen)
                })?
            }
            None if from.tasks.is_some() => {
                return Err(at.err(format!(
                    "role {role_name}: no tasks/{} file",
                    from.tasks.as_deref().unwrap_or("main")
                )))
            }
            None => Vec::new(),
        };
        let mut handlers = match roles::part_file(&dir, "handlers", from.handlers.as_deref()) {
            Some(p) => {
                let origin = origin_for(&p);
                self.loader.with_file(&p, at, |file, text| {
                    let root = yaml::load(file, text)?;
                    let fp = FileParser {
                        ctx: Ctx { file, text },
                        loader: self.loader,
                        origin,
                    };
                    if root.value == Value::Null {
                        return Ok(Vec::new());
                    }
                    fp.ctx
                        .seq(&root, "handlers")?
                        .iter()
                        .map(|n| fp.task(n, true))
                        .collect::<Result<Vec<_>, _>>()
                })?
            }
            None => Vec::new(),
        };
        let mut imported = Vec::new();
        for r in seen.take_new() {
            handlers.extend(r.all_handlers());
            imported.extend(r.all_roles());
        }
        Ok(LoadedRole {
            role,
            allow_duplicates,
            deps,
            tasks,
            handlers,
            imported,
        })
    }

    /// The directory roles are found from: the play's (the file's, outside roles).
    fn play_dir(&self) -> std::path::PathBuf {
        match &self.origin.role {
            // Inside a role, roles are still looked for beside the playbook: the role's
            // directory is `…/roles/NAME`, so its grandparent.
            Some(r) => r
                .path
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| self.origin.dir.clone(), Path::to_path_buf),
            None => self.origin.dir.clone(),
        }
    }

    /// `meta/main.yml`: dependencies and `allow_duplicates`.
    fn role_meta(
        &self,
        file: &str,
        text: &str,
        role_dir: &Path,
    ) -> Result<(Vec<(Scope, LoadedRole)>, bool), SourceError> {
        let root = yaml::load(file, text)?;
        if root.value == Value::Null {
            return Ok((Vec::new(), false));
        }
        let fp = FileParser {
            ctx: Ctx { file, text },
            loader: self.loader,
            origin: Arc::new(Origin {
                file: file.to_string(),
                dir: role_dir.join("meta"),
                role: None,
            }),
        };
        let mut deps = Vec::new();
        let mut allow_duplicates = false;
        for (k, v) in fp.ctx.map(&root, "role meta")? {
            match k {
                "dependencies" => {
                    if v.value == Value::Null {
                        continue;
                    }
                    for entry in fp.ctx.seq(v, "dependencies")? {
                        let (name, mut scope, params, name_node) = fp.role_entry_parts(entry)?;
                        let vars = std::mem::take(&mut scope.vars);
                        // Dependencies are found as the role itself was.
                        let finder = FileParser {
                            ctx: fp.ctx.clone(),
                            loader: self.loader,
                            origin: self.origin.clone(),
                        };
                        let dep = finder.load_role(&name, &From::default(), vars, params, &fp.at(name_node))?;
                        deps.push((scope, dep));
                    }
                }
                "allow_duplicates" => allow_duplicates = fp.ctx.bool(v, k)?,
                // Metadata for Galaxy and argument validation: nothing c1m runs.
                "galaxy_info" | "argument_specs" => {}
                "collections" => {
                    fp.string_list(v, k)?;
                }
                other => {
                    return Err(fp.ctx.err(
                        key_node(&root, other),
                        format!("role meta: unknown key `{other}`; expected dependencies, allow_duplicates, galaxy_info, argument_specs, collections"),
                    ))
                }
            }
        }
        Ok((deps, allow_duplicates))
    }
}
