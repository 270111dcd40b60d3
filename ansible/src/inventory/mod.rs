//! Ansible inventories — YAML and INI files, directories of them, `group_vars/` and
//! `host_vars/` beside them — resolved into hosts with their merged variables.
//!
//! | module | responsibility |
//! | --- | --- |
//! | `build` | groups, children and hosts as every source adds them; connection-var checks |
//! | `yaml_src` | the YAML format |
//! | `ini` | the INI format |
//! | `pylit` | INI values typed as Python literals |
//! | `ranges` | host ranges (`cli[1:3]`) and `:port` in host patterns |
//! | [`vars_dirs`] | `group_vars/` and `host_vars/` directories |
//! | `limit` | host patterns (`hosts:`, `--limit`) |
//!
//! Variables are merged in Ansible's order (`VariableManager.get_vars`): `all`'s inventory vars,
//! the other groups' inventory vars by depth below `all` (then `ansible_group_priority`, then
//! name), `group_vars/all` beside the inventory then beside the playbook, the other groups'
//! `group_vars` (inventory then playbook, per group in the same order), the host's inventory
//! vars, its `host_vars` beside the inventory, then beside the playbook.

mod build;
mod checks;
mod ini;
mod limit;
mod pylit;
mod ranges;
pub mod vars_dirs;
mod yaml_src;

pub use limit::select;
pub use vars_dirs::VarsDirs;

use crate::template::Vars;
use crate::yaml::{self, SourceError};
use build::Builder;
use c1m_transport::Become;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `inventory/local.yml`, compiled in for commands run without `-i`.
const LOCAL_YML: &str = include_str!("../../../inventory/local.yml");

#[derive(Debug, Clone)]
pub struct Inventory {
    pub source: String,
    /// Hosts in the order they first appear in the files.
    pub hosts: Vec<Host>,
    pub groups: BTreeMap<String, Group>,
    /// `group_vars/` and `host_vars/` beside the inventory.
    pub adjacent: VarsDirs,
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub children: Vec<String>,
    /// Hosts listed directly under this group.
    pub hosts: Vec<String>,
    pub vars: Vars,
    /// Distance below `all` (longest path), which orders var precedence.
    pub depth: usize,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Every group the host is in, including ancestors and `all`, by precedence.
    pub groups: Vec<String>,
    /// Group vars and host vars merged (those beside the inventory included; those beside a
    /// playbook are added by [`Inventory::vars_for`]).
    pub vars: Vars,
    /// The host's own vars as the inventory files set them.
    pub own: Vars,
}

impl Group {
    /// `ansible_group_priority`: orders groups of the same depth (default 1).
    fn priority(&self) -> i64 {
        match self.vars.get("ansible_group_priority") {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(1),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(1),
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Local,
    Ssh,
}

impl Host {
    /// A var as text (`None` when unset or null).
    pub fn var_str(&self, name: &str) -> Option<String> {
        match self.vars.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    pub fn connection(&self) -> Connection {
        match self.var_str("ansible_connection").as_deref() {
            Some("local") => Connection::Local,
            _ => Connection::Ssh,
        }
    }

    /// `ansible_become` / `ansible_become_user` from the inventory.
    pub fn become_(&self) -> Become {
        let enabled = match self.vars.get("ansible_become") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => yaml::parse_bool(s).unwrap_or(false),
            _ => false,
        };
        Become {
            enabled,
            user: self.var_str("ansible_become_user"),
        }
    }
}

/// The default inventory: everything on this machine.
pub fn embedded_local() -> Inventory {
    // The embedded file is checked by a test; failing here would be a build defect.
    parse("inventory/local.yml (built in)", LOCAL_YML)
        .unwrap_or_else(|e| panic!("built-in inventory/local.yml is invalid: {e}"))
}

/// The formats an inventory file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Ini,
}

impl Format {
    /// As Ansible tells them apart: `.yml`, `.yaml` and `.json` files are YAML, anything else
    /// is INI, except that a file whose first line is `---`, ends in `:` or opens a `{` is
    /// YAML whatever its name (an INI host line cannot end in `:`).
    pub fn of(path: &Path, text: &str) -> Format {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yml" | "yaml" | "json") {
            return Format::Yaml;
        }
        let first = text
            .trim_start_matches('\u{feff}')
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(['#', ';']));
        match first {
            Some(l) if l == "---" || l.ends_with(':') || l.starts_with('{') => Format::Yaml,
            _ => Format::Ini,
        }
    }
}

/// Files in an inventory directory that Ansible skips (`INVENTORY_IGNORE_EXTS`, hidden files and
/// the vars directories).
fn ignored_in_dir(name: &str) -> bool {
    const EXTS: [&str; 13] = [
        "~", ".orig", ".ini", ".cfg", ".retry", ".pyc", ".pyo", ".swp", ".bak", ".rpm", ".md",
        ".txt", ".rst",
    ];
    name.starts_with('.')
        || matches!(name, "group_vars" | "host_vars" | "vars_plugins")
        || EXTS.iter().any(|e| name.ends_with(e))
}

/// Loads an inventory: a YAML or INI file, a directory of them (merged in name order), or a
/// comma-separated host list (`-i a,b,`); with `group_vars/` and `host_vars/` beside it.
pub fn load(path: &Path) -> anyhow::Result<Inventory> {
    let mut b = Builder::new();
    let shown = path.display().to_string();
    let base = if path.is_dir() {
        read_dir_into(&mut b, path, 0)?;
        path.to_path_buf()
    } else if !path.exists() && shown.contains(',') {
        // Ansible's host_list: `-i 10.0.0.1,10.0.0.2` (a trailing comma makes one host a list).
        for word in shown.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (hosts, port) = ranges::expand(word)
                .map_err(|e| anyhow::anyhow!("inventory host list {shown:?}: {e}"))?;
            let mut vars = Vars::new();
            if let Some(p) = port {
                vars.insert("ansible_port".into(), p.into());
            }
            for h in hosts {
                b.add_host(None, &h, vars.clone());
            }
        }
        PathBuf::from(".")
    } else {
        read_file_into(&mut b, path)?;
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    // The vars directories can only be read once the names they are for are known.
    let (groups, hosts) = b.names();
    let adjacent = VarsDirs::load(
        &base,
        groups.iter().map(String::as_str),
        hosts.iter().map(String::as_str),
    )?;
    Ok(b.finish(&shown, adjacent)?)
}

fn read_file_into(b: &mut Builder, path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read inventory {}: {e}", path.display()))?;
    if bytes.starts_with(b"#!") {
        anyhow::bail!(
            "{}:1:1: an inventory script; c1m reads YAML and INI inventories but runs no \
             inventory programs (write its output to a file)",
            path.display()
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))?;
    let source = path.display().to_string();
    match Format::of(path, &text) {
        Format::Yaml => yaml_src::read(b, &source, &text)?,
        Format::Ini => ini::read(b, &source, &text)?,
    }
    Ok(())
}

fn read_dir_into(b: &mut Builder, dir: &Path, depth: usize) -> anyhow::Result<()> {
    if depth > 16 {
        anyhow::bail!(
            "{}: inventory directories nested deeper than 16",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list inventory directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ignored_in_dir(&name) {
            continue;
        }
        if path.is_dir() {
            read_dir_into(b, &path, depth + 1)?;
        } else {
            read_file_into(b, &path)?;
        }
    }
    Ok(())
}

/// Parses a YAML inventory; `source` names it in errors.
pub fn parse(source: &str, text: &str) -> Result<Inventory, SourceError> {
    let mut b = Builder::new();
    yaml_src::read(&mut b, source, text)?;
    b.finish(source, VarsDirs::default())
}

/// Parses an INI inventory; `source` names it in errors.
pub fn parse_ini(source: &str, text: &str) -> Result<Inventory, SourceError> {
    let mut b = Builder::new();
    ini::read(&mut b, source, text)?;
    b.finish(source, VarsDirs::default())
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// `host`'s variables in Ansible's order (see the module docs), with `play` — the
    /// `group_vars/` and `host_vars/` beside a playbook — in their places.
    pub fn vars_for(&self, host: &Host, play: &VarsDirs) -> Vars {
        let mut v = Vars::new();
        let groups: Vec<&str> = host
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| *g != "all")
            .collect();
        let group_vars = |name: &str| self.groups.get(name).map(|g| g.vars.clone());
        v.extend(group_vars("all").unwrap_or_default());
        for g in &groups {
            v.extend(group_vars(g).unwrap_or_default());
        }
        for dirs in [&self.adjacent, play] {
            v.extend(dirs.groups.get("all").cloned().unwrap_or_default());
        }
        for g in &groups {
            for dirs in [&self.adjacent, play] {
                v.extend(dirs.groups.get(*g).cloned().unwrap_or_default());
            }
        }
        v.extend(host.own.clone());
        for dirs in [&self.adjacent, play] {
            v.extend(dirs.hosts.get(&host.name).cloned().unwrap_or_default());
        }
        v
    }

    /// Reads the `group_vars/` and `host_vars/` in `dir` (beside a playbook) for this
    /// inventory's groups and hosts.
    pub fn vars_dirs_at(&self, dir: &Path) -> anyhow::Result<VarsDirs> {
        VarsDirs::load(
            dir,
            self.groups.keys().map(String::as_str),
            self.hosts.iter().map(|h| h.name.as_str()),
        )
    }

    /// Host names of each group (with hosts of child groups), as Ansible's `groups` magic var.
    pub fn groups_var(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for g in self.groups.keys() {
            let members: Vec<serde_json::Value> = self
                .hosts
                .iter()
                .filter(|h| h.groups.iter().any(|x| x == g))
                .map(|h| serde_json::Value::String(h.name.clone()))
                .collect();
            out.insert(g.clone(), serde_json::Value::Array(members));
        }
        serde_json::Value::Object(out)
    }
}
