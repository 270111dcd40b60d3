//! Ansible YAML inventories (`all`/`children`/`hosts`/`vars`), resolved into hosts with their
//! merged variables.
//!
//! Variables are merged as Ansible does: groups ordered by depth below `all` (then by name), so
//! `all` < parent group < child group, and host vars last.

mod limit;

pub use limit::select;

use crate::template::Vars;
use crate::yaml::{self, Ctx, Node, SourceError, Value};
use c1m_transport::ssh::SshConfig;
use c1m_transport::Become;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `inventory/local.yml`, compiled in for commands run without `-i`.
const LOCAL_YML: &str = include_str!("../../../inventory/local.yml");

#[derive(Debug, Clone)]
pub struct Inventory {
    pub source: String,
    /// Hosts in the order they first appear in the file.
    pub hosts: Vec<Host>,
    pub groups: BTreeMap<String, Group>,
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
    /// Group vars and host vars merged.
    pub vars: Vars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Local,
    Ssh,
}

impl Host {
    fn var_str(&self, name: &str) -> Option<String> {
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

    /// `c1m_known_hosts` (inventory/lab.yml pins the lab's host keys there), else
    /// ~/.ssh/known_hosts.
    pub fn known_hosts(&self) -> PathBuf {
        self.var_str("c1m_known_hosts")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".ssh/known_hosts")
            })
    }

    /// The SSH settings for this host from its `ansible_*` vars.
    pub fn ssh_config(
        &self,
        known_hosts: &Path,
        accept_new_host_keys: bool,
        become_: Become,
    ) -> SshConfig {
        let port = match self.vars.get("ansible_port") {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        SshConfig {
            name: self.name.clone(),
            address: self
                .var_str("ansible_host")
                .unwrap_or_else(|| self.name.clone()),
            port: port.unwrap_or(22),
            user: self
                .var_str("ansible_user")
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into()),
            key_file: self
                .var_str("ansible_ssh_private_key_file")
                .map(PathBuf::from),
            known_hosts: known_hosts.to_path_buf(),
            accept_new_host_keys,
            become_,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The default inventory: everything on this machine.
pub fn embedded_local() -> Inventory {
    // The embedded file is checked by a test; failing here would be a build defect.
    parse("inventory/local.yml (built in)", LOCAL_YML)
        .unwrap_or_else(|e| panic!("built-in inventory/local.yml is invalid: {e}"))
}

pub fn load(path: &Path) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read inventory {}: {e}", path.display()))?;
    Ok(parse(&path.display().to_string(), &text)?)
}

/// Connection vars whose values are checked when the inventory is read, so a typo is reported
/// with its position rather than as an odd failure on the host.
fn check_connection_var(ctx: &Ctx, name: &str, value: &Node) -> Result<(), SourceError> {
    let templated = value.as_str().is_some_and(crate::template::is_template);
    if templated {
        return Ok(());
    }
    match name {
        "ansible_connection" => match value.as_str() {
            Some("ssh" | "local") => Ok(()),
            _ => Err(ctx.err(
                value,
                format!(
                    "ansible_connection: expected `ssh` or `local`, found {}",
                    value
                        .scalar_text()
                        .map_or(value.kind().to_string(), |s| format!("{s:?}"))
                ),
            )),
        },
        "ansible_port" => match value.value {
            Value::Int(p) if (1..=65535).contains(&p) => Ok(()),
            _ => Err(ctx.err(
                value,
                format!(
                    "ansible_port: expected a port number 1-65535, found {}",
                    value.scalar_text().unwrap_or_else(|| value.kind().into())
                ),
            )),
        },
        "ansible_become" => ctx.bool(value, "ansible_become").map(|_| ()),
        "ansible_host"
        | "ansible_user"
        | "ansible_ssh_private_key_file"
        | "ansible_become_user" => ctx.string(value, name).map(|_| ()),
        _ => Ok(()),
    }
}

struct Loader<'a> {
    ctx: Ctx<'a>,
    groups: BTreeMap<String, Group>,
    host_order: Vec<String>,
    host_vars: BTreeMap<String, Vars>,
}

impl Loader<'_> {
    fn vars(&self, node: &Node, what: &str) -> Result<Vars, SourceError> {
        if node.value == Value::Null {
            return Ok(Vars::new());
        }
        let mut vars = Vars::new();
        for (name, value) in self.ctx.map(node, what)? {
            check_connection_var(&self.ctx, name, value)?;
            vars.insert(name.to_string(), value.to_json());
        }
        Ok(vars)
    }

    fn group(&mut self, name: &str, node: &Node, parents: &[String]) -> Result<(), SourceError> {
        if parents.iter().any(|p| p == name) {
            return Err(self.ctx.err(node, format!("group {name} contains itself")));
        }
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Group::default()
            });
        if node.value == Value::Null {
            return Ok(());
        }
        let what = format!("group {name}");
        for (key, value) in self.ctx.map(node, &what)? {
            match key {
                "vars" => {
                    let vars = self.vars(value, &format!("{what} vars"))?;
                    if let Some(g) = self.groups.get_mut(name) {
                        g.vars.extend(vars);
                    }
                }
                "hosts" => {
                    if value.value == Value::Null {
                        continue;
                    }
                    for (host, hvars) in self.ctx.map(value, &format!("{what} hosts"))? {
                        let vars = self.vars(hvars, &format!("host {host} vars"))?;
                        if !self.host_vars.contains_key(host) {
                            self.host_order.push(host.to_string());
                        }
                        self.host_vars
                            .entry(host.to_string())
                            .or_default()
                            .extend(vars);
                        if let Some(g) = self.groups.get_mut(name) {
                            if !g.hosts.iter().any(|h| h == host) {
                                g.hosts.push(host.to_string());
                            }
                        }
                    }
                }
                "children" => {
                    if value.value == Value::Null {
                        continue;
                    }
                    let mut path = parents.to_vec();
                    path.push(name.to_string());
                    for (child, body) in self.ctx.map(value, &format!("{what} children"))? {
                        if let Some(g) = self.groups.get_mut(name) {
                            if !g.children.iter().any(|c| c == child) {
                                g.children.push(child.to_string());
                            }
                        }
                        self.group(child, body, &path)?;
                    }
                }
                other => {
                    let hint = if other.contains('.') || other.contains("ansible_") {
                        " (a host? put it under `hosts:`; a variable? under `vars:`)"
                    } else {
                        ""
                    };
                    return Err(self.ctx.err(
                        node_of_key(node, other).unwrap_or(value),
                        format!("{what}: unknown key `{other}`, expected one of `hosts`, `children`, `vars`{hint}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn node_of_key<'n>(map: &'n Node, key: &str) -> Option<&'n Node> {
    match &map.value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k),
        _ => None,
    }
}

/// Parses an inventory; `source` names it in errors.
pub fn parse(source: &str, text: &str) -> Result<Inventory, SourceError> {
    let root = yaml::load(source, text)?;
    let ctx = Ctx { file: source, text };
    let mut loader = Loader {
        ctx: ctx.clone(),
        groups: BTreeMap::new(),
        host_order: Vec::new(),
        host_vars: BTreeMap::new(),
    };
    loader.groups.insert(
        "all".into(),
        Group {
            name: "all".into(),
            ..Group::default()
        },
    );
    if root.value == Value::Null {
        return Err(ctx.err(&root, "empty inventory: expected a mapping with `all:`"));
    }
    for (name, body) in ctx.map(&root, "inventory")? {
        loader.group(name, body, &[])?;
        if name != "all" {
            // Top-level groups other than `all` are its children, as in Ansible.
            if let Some(all) = loader.groups.get_mut("all") {
                if !all.children.iter().any(|c| c == name) {
                    all.children.push(name.to_string());
                }
            }
        }
    }
    let Loader {
        mut groups,
        host_order,
        host_vars,
        ..
    } = loader;
    compute_depths(&mut groups);
    let hosts = host_order
        .iter()
        .map(|name| {
            let member_of = groups_of(&groups, name);
            let mut ordered: Vec<&Group> = member_of.iter().filter_map(|g| groups.get(g)).collect();
            ordered.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.name.cmp(&b.name)));
            let mut vars = Vars::new();
            for g in &ordered {
                vars.extend(g.vars.clone());
            }
            vars.extend(host_vars.get(name).cloned().unwrap_or_default());
            Host {
                name: name.clone(),
                groups: ordered.iter().map(|g| g.name.clone()).collect(),
                vars,
            }
        })
        .collect();
    Ok(Inventory {
        source: source.to_string(),
        hosts,
        groups,
    })
}

fn compute_depths(groups: &mut BTreeMap<String, Group>) {
    // Longest path from `all`; cycles were rejected while loading, so this terminates.
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut stack = vec![("all".to_string(), 0usize)];
    while let Some((name, d)) = stack.pop() {
        if depth.get(&name).is_some_and(|&old| old >= d) && name != "all" {
            continue;
        }
        depth.insert(name.clone(), d);
        if let Some(g) = groups.get(&name) {
            for c in &g.children {
                stack.push((c.clone(), d + 1));
            }
        }
    }
    for (name, g) in groups.iter_mut() {
        g.depth = depth.get(name).copied().unwrap_or(1);
    }
}

/// Every group `host` belongs to, directly or through children, plus `all`.
fn groups_of(groups: &BTreeMap<String, Group>, host: &str) -> BTreeSet<String> {
    let mut member: BTreeSet<String> = groups
        .values()
        .filter(|g| g.hosts.iter().any(|h| h == host))
        .map(|g| g.name.clone())
        .collect();
    loop {
        let parents: Vec<String> = groups
            .values()
            .filter(|g| !member.contains(&g.name) && g.children.iter().any(|c| member.contains(c)))
            .map(|g| g.name.clone())
            .collect();
        if parents.is_empty() {
            break;
        }
        member.extend(parents);
    }
    member.insert("all".into());
    member
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
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
        out.insert(
            "ungrouped".into(),
            serde_json::Value::Array(
                self.hosts
                    .iter()
                    .filter(|h| h.groups.len() == 1)
                    .map(|h| serde_json::Value::String(h.name.clone()))
                    .collect(),
            ),
        );
        serde_json::Value::Object(out)
    }
}
