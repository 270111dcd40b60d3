//! `group_vars/` and `host_vars/` beside an inventory or a playbook, found as Ansible's
//! `host_group_vars` plugin finds them: for a group or host NAME the first of `NAME` (a file, or a
//! directory whose files are read in sorted order, recursively), `NAME.yml`, `NAME.yaml`,
//! `NAME.json`; hidden files, backups (`~`) and other extensions are skipped. Only names the
//! inventory has are read.

use super::checks::{check_connection_var, At};
use crate::template::Vars;
use crate::yaml::{self, Ctx, SourceError, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Vars from one `group_vars/` + `host_vars/` pair, by group and by host.
#[derive(Debug, Clone, Default)]
pub struct VarsDirs {
    pub groups: BTreeMap<String, Vars>,
    pub hosts: BTreeMap<String, Vars>,
}

const EXTENSIONS: [&str; 3] = [".yml", ".yaml", ".json"];

impl VarsDirs {
    /// Reads `base/group_vars/` for `groups` and `base/host_vars/` for `hosts`.
    pub fn load<'a>(
        base: &Path,
        groups: impl IntoIterator<Item = &'a str>,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<VarsDirs> {
        let mut out = VarsDirs::default();
        for (kind, names, into) in [
            (
                "group_vars",
                groups.into_iter().collect::<Vec<_>>(),
                &mut out.groups,
            ),
            (
                "host_vars",
                hosts.into_iter().collect::<Vec<_>>(),
                &mut out.hosts,
            ),
        ] {
            let dir = base.join(kind);
            if !dir.is_dir() {
                continue;
            }
            for name in names {
                let mut vars = Vars::new();
                for file in files_for(&dir, name)? {
                    vars.extend(load_file(&file)?);
                }
                if !vars.is_empty() {
                    into.insert(name.to_string(), vars);
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.hosts.is_empty()
    }
}

/// The files holding NAME's vars in `dir`, in the order they apply.
fn files_for(dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    for ext in std::iter::once("").chain(EXTENSIONS) {
        let path = dir.join(format!("{name}{ext}"));
        if path.is_dir() {
            let mut found = Vec::new();
            dir_files(&path, &mut found, 0)?;
            return Ok(found);
        }
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    Ok(Vec::new())
}

fn dir_files(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) -> anyhow::Result<()> {
    if depth > 16 {
        anyhow::bail!("{}: vars directories nested deeper than 16", dir.display());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        if path.is_dir() && ext.is_empty() {
            dir_files(&path, found, depth + 1)?;
        } else if path.is_file() && (ext.is_empty() || EXTENSIONS.contains(&ext.as_str())) {
            found.push(path);
        }
    }
    Ok(())
}

/// One vars file: a mapping of names to values (an empty file is no vars).
pub fn load_file(path: &Path) -> anyhow::Result<Vars> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read vars file {}: {e}", path.display()))?;
    Ok(parse_vars(&path.display().to_string(), &text)?)
}

/// Vars file text: a mapping of variable names to values.
pub fn parse_vars(file: &str, text: &str) -> Result<Vars, SourceError> {
    let root = yaml::load(file, text)?;
    if root.value == Value::Null {
        return Ok(Vars::new());
    }
    let ctx = Ctx { file, text };
    let mut vars = Vars::new();
    for (name, value) in ctx.map(&root, "vars file")? {
        if !crate::template::is_var_name(name) {
            return Err(ctx.err(
                yaml::key_node(&root, name),
                format!("vars file: {name:?} is not a valid variable name"),
            ));
        }
        let json = value.to_json();
        check_connection_var(
            &At {
                file: file.to_string(),
                pos: value.pos,
            },
            name,
            &json,
        )?;
        vars.insert(name.to_string(), json);
    }
    Ok(vars)
}
