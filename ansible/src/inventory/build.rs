//! What every inventory source adds to: groups with their children, hosts and vars, whatever
//! the format (YAML, INI) and however many files (an inventory directory).

use super::checks::At;
use super::vars_dirs::VarsDirs;
use super::{Group, Host, Inventory};
use crate::template::Vars;
use crate::yaml::{Pos, SourceError};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(super) struct Builder {
    groups: BTreeMap<String, Group>,
    /// Where each `parent → child` edge was written (to point at a cycle).
    edges: BTreeMap<(String, String), At>,
    host_order: Vec<String>,
    host_vars: BTreeMap<String, Vars>,
}

impl Builder {
    pub fn new() -> Self {
        let mut b = Builder::default();
        b.group("all");
        b.group("ungrouped");
        b
    }

    /// The group, created when new.
    pub fn group(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Group::default()
            })
    }

    /// Every group and host name so far.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        (self.group_names(), self.host_order.clone())
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    pub fn add_child(&mut self, parent: &str, child: &str, at: At) {
        self.group(child);
        let g = self.group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
        self.edges
            .entry((parent.to_string(), child.to_string()))
            .or_insert(at);
    }

    /// Adds `host` to `group` (when given) with `vars` merged over what it had.
    pub fn add_host(&mut self, group: Option<&str>, host: &str, vars: Vars) {
        if !self.host_vars.contains_key(host) {
            self.host_order.push(host.to_string());
        }
        self.host_vars
            .entry(host.to_string())
            .or_default()
            .extend(vars);
        if let Some(group) = group {
            let g = self.group(group);
            if !g.hosts.iter().any(|h| h == host) {
                g.hosts.push(host.to_string());
            }
        }
    }

    pub fn set_group_vars(&mut self, group: &str, vars: Vars) {
        self.group(group).vars.extend(vars);
    }

    /// The inventory, with `adjacent` (group_vars/ and host_vars/ beside it) merged in.
    pub fn finish(mut self, source: &str, adjacent: VarsDirs) -> Result<Inventory, SourceError> {
        self.check_cycles()?;
        // Top-level groups are children of `all`, as in Ansible.
        let tops: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != "all" && !self.groups.values().any(|p| p.children.contains(g)))
            .cloned()
            .collect();
        for g in tops {
            let all = self.group("all");
            if !all.children.contains(&g) {
                all.children.push(g);
            }
        }
        // A host in no group but `all` is in `ungrouped`, as Ansible's reconcile step makes it.
        let orphans: Vec<String> = self
            .host_order
            .iter()
            .filter(|h| {
                !self
                    .groups
                    .values()
                    .any(|g| g.name != "all" && g.hosts.contains(h))
            })
            .cloned()
            .collect();
        for h in orphans {
            self.group("ungrouped").hosts.push(h);
        }
        compute_depths(&mut self.groups);
        let mut inv = Inventory {
            source: source.to_string(),
            hosts: Vec::new(),
            groups: self.groups,
            adjacent,
        };
        inv.hosts = self
            .host_order
            .iter()
            .map(|name| {
                let mut ordered: Vec<&Group> = groups_of(&inv.groups, name)
                    .iter()
                    .filter_map(|g| inv.groups.get(g))
                    .collect();
                ordered.sort_by(|a, b| {
                    (a.depth, a.priority(), &a.name).cmp(&(b.depth, b.priority(), &b.name))
                });
                Host {
                    name: name.clone(),
                    groups: ordered.iter().map(|g| g.name.clone()).collect(),
                    own: self.host_vars.get(name).cloned().unwrap_or_default(),
                    vars: Vars::new(),
                }
            })
            .collect();
        let merged: Vec<Vars> = inv
            .hosts
            .iter()
            .map(|h| inv.vars_for(h, &VarsDirs::default()))
            .collect();
        for (h, vars) in inv.hosts.iter_mut().zip(merged) {
            h.vars = vars;
        }
        Ok(inv)
    }

    fn check_cycles(&self) -> Result<(), SourceError> {
        // Depth-first from every group; a child already on the path closes a cycle.
        fn visit(
            b: &Builder,
            name: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Result<(), SourceError> {
            if done.contains(name) {
                return Ok(());
            }
            path.push(name.to_string());
            if let Some(g) = b.groups.get(name) {
                for c in &g.children {
                    if path.iter().any(|p| p == c) {
                        let at = b
                            .edges
                            .get(&(name.to_string(), c.clone()))
                            .cloned()
                            .unwrap_or(At {
                                file: String::new(),
                                pos: Pos::default(),
                            });
                        let cycle = path
                            .iter()
                            .skip_while(|p| *p != c)
                            .cloned()
                            .chain([c.clone()])
                            .collect::<Vec<_>>()
                            .join(" → ");
                        return Err(at.err(format!("group {c} contains itself ({cycle})")));
                    }
                    visit(b, c, path, done)?;
                }
            }
            path.pop();
            done.insert(name.to_string());
            Ok(())
        }
        let mut done = BTreeSet::new();
        for name in self.groups.keys() {
            visit(self, name, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }
}

fn compute_depths(groups: &mut BTreeMap<String, Group>) {
    // Longest path from `all`; cycles were refused, so this terminates.
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
