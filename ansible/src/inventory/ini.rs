//! Ansible's INI inventory format into the inventory [`Builder`], with Ansible's rules:
//! hosts before any section are `ungrouped`; `[g]` lists hosts (`name[:port] key=value…`, ranges
//! allowed), `[g:vars]` sets `key = value` group vars, `[g:children]` names child groups, which
//! must be declared by a section of their own somewhere in the file; `[g:vars]` of a group
//! declared nowhere is an error; values are typed as Python literals (see [`pylit`]).

use super::build::Builder;
use super::checks::{check_connection_var, At};
use super::{pylit, ranges};
use crate::template::Vars;
use crate::yaml::{Pos, SourceError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Vars,
    Children,
}

/// A reference to a group not declared (yet), and where it was made.
struct Pending {
    at: At,
    kind: Section,
    /// For a child group: the groups that named it.
    parents: Vec<String>,
}

/// Adds the INI inventory `text` (named `source`) to `b`.
pub(super) fn read(b: &mut Builder, source: &str, text: &str) -> Result<(), SourceError> {
    let mut group = "ungrouped".to_string();
    let mut section = Section::Hosts;
    // Declared by a `[g]` or `[g:children]` header in this file.
    // (Groups of files read before this one count, as they do for Ansible.)
    let mut declared: Vec<String> = b.group_names();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, raw) in text.lines().enumerate() {
        let lead = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        let at = |col: usize| At {
            file: source.to_string(),
            pos: Pos {
                line: n + 1,
                col: raw[..col.min(raw.len())].chars().count() + 1,
            },
        };
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            let (name, kind) = header(line).map_err(|msg| at(lead).err(msg))?;
            group = name.to_string();
            section = kind;
            b.group(&group);
            if kind != Section::Vars && !declared.contains(&group) {
                declared.push(group.clone());
            }
            if kind == Section::Vars && !declared.contains(&group) {
                pending.entry(group.clone()).or_insert(Pending {
                    at: at(lead),
                    kind,
                    parents: Vec::new(),
                });
            }
            continue;
        }
        match section {
            Section::Hosts => {
                let words = shlex::split(line).ok_or_else(|| {
                    at(lead).err(format!(
                        "cannot split host line {line:?} (unbalanced quotes?)"
                    ))
                })?;
                // shlex::split keeps `#` words; a comment starts at the first word beginning
                // with `#`, as Python's shlex with comments=True reads it.
                let words: Vec<String> = words
                    .into_iter()
                    .take_while(|w| !w.starts_with('#'))
                    .collect();
                let Some(pattern) = words.first() else {
                    continue;
                };
                let (hosts, port) = ranges::expand(pattern).map_err(|e| at(lead).err(e))?;
                if pattern == "---" {
                    return Err(at(lead)
                        .err("`---` is not a host: this looks like a YAML file; name it .yml"));
                }
                let mut vars = Vars::new();
                for word in &words[1..] {
                    let col = lead + line.find(word.as_str()).unwrap_or(0);
                    let Some((k, v)) = word.split_once('=') else {
                        return Err(at(col)
                            .err(format!("expected key=value host variable, found `{word}`")));
                    };
                    let value = pylit::value(v);
                    check_connection_var(&at(col + k.len() + 1), k, &value)?;
                    vars.insert(k.to_string(), value);
                }
                if let Some(p) = port {
                    vars.entry("ansible_port".into()).or_insert(p.into());
                }
                let into = (group != "all").then_some(group.as_str());
                for host in hosts {
                    b.add_host(into, &host, vars.clone());
                }
            }
            Section::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(at(lead).err(format!(
                        "expected key=value in [{group}:vars], found `{line}`"
                    )));
                };
                let k = k.trim();
                if !crate::template::is_var_name(k) {
                    return Err(at(lead).err(format!("{k:?} is not a valid variable name")));
                }
                let value = pylit::value(v);
                let value_col =
                    lead + line.find('=').unwrap_or(0) + 1 + (v.len() - v.trim_start().len());
                check_connection_var(&at(value_col), k, &value)?;
                let mut vars = Vars::new();
                vars.insert(k.to_string(), value);
                b.set_group_vars(&group, vars);
            }
            Section::Children => {
                let child = line.split('#').next().unwrap_or("").trim();
                if child.is_empty() || child.contains([':', ']', ' ', '\t', '[']) {
                    return Err(at(lead).err(format!(
                        "expected a group name in [{group}:children], found `{line}`"
                    )));
                }
                if declared.iter().any(|d| d == child) {
                    b.add_child(&group, child, at(lead));
                } else {
                    let p = pending.entry(child.to_string()).or_insert(Pending {
                        at: at(lead),
                        kind: Section::Children,
                        parents: Vec::new(),
                    });
                    p.kind = Section::Children;
                    p.parents.push(group.clone());
                }
            }
        }
        // A group declared after it was named as a child: the link is made now.
        let newly: Vec<String> = pending
            .iter()
            .filter(|(g, p)| p.kind == Section::Children && declared.contains(g))
            .map(|(g, _)| g.clone())
            .collect();
        for g in newly {
            if let Some(p) = pending.remove(&g) {
                for parent in p.parents {
                    b.add_child(&parent, &g, p.at.clone());
                }
            }
        }
        pending.retain(|g, p| !(p.kind == Section::Vars && declared.contains(g)));
    }
    if let Some((g, p)) = pending.iter().next() {
        return Err(p.at.err(match p.kind {
            Section::Vars => {
                format!("section [{g}:vars] is for a group declared nowhere: add a [{g}] section")
            }
            _ => format!(
                "[{}:children] names group {g}, which is declared nowhere: add a [{g}] section",
                p.parents.last().map(String::as_str).unwrap_or("?")
            ),
        }));
    }
    Ok(())
}

/// `[name]`, `[name:vars]`, `[name:children]` (a trailing comment allowed).
fn header(line: &str) -> Result<(&str, Section), String> {
    let body = line.split('#').next().unwrap_or(line).trim_end();
    let inner = body
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| {
            format!(
                "bad section header `{line}`: expected [group], [group:vars] or [group:children]"
            )
        })?;
    let (name, kind) = match inner.split_once(':') {
        None => (inner, Section::Hosts),
        Some((n, "vars")) => (n, Section::Vars),
        Some((n, "children")) => (n, Section::Children),
        Some((n, "hosts")) => (n, Section::Hosts),
        Some((_, other)) => {
            return Err(format!(
                "section [{inner}] has unknown type `{other}`: expected vars or children"
            ))
        }
    };
    if name.is_empty()
        || name.contains(|c: char| c.is_whitespace() || c == ']' || c == '[' || c == ':')
    {
        return Err(format!(
            "bad section header `{line}`: a group name has no spaces, `:`, `[` or `]`"
        ));
    }
    Ok((name, kind))
}

#[cfg(test)]
mod tests {
    use super::super::parse_ini;
    use serde_json::json;

    const INV: &str = "\
# comment
loose.example ansible_host=10.0.0.9
[server]
srv ansible_host=10.0.0.1 ansible_port=2222   # the server
[clients]
cli[1:3].example ansible_user=admin c1m_window=256 flag=True
[clients:vars]
c1m_source_ips = ['10.0.0.5', '10.0.0.6']
greeting = hello world
[lab:children]
server
clients
[lab:vars]
ansible_user=root
";

    #[test]
    fn groups_ranges_children_and_typed_vars() {
        let inv = parse_ini("hosts", INV).unwrap();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "loose.example",
                "srv",
                "cli1.example",
                "cli2.example",
                "cli3.example"
            ]
        );
        let srv = inv.host("srv").unwrap();
        assert_eq!(srv.vars["ansible_port"], json!(2222));
        assert_eq!(srv.vars["ansible_user"], json!("root"));
        assert_eq!(srv.groups, ["all", "lab", "server"]);
        let cli = inv.host("cli2.example").unwrap();
        // Host vars win over the group's.
        assert_eq!(cli.vars["ansible_user"], json!("admin"));
        assert_eq!(cli.vars["c1m_window"], json!(256));
        assert_eq!(cli.vars["flag"], json!(true));
        assert_eq!(cli.vars["c1m_source_ips"], json!(["10.0.0.5", "10.0.0.6"]));
        assert_eq!(cli.vars["greeting"], json!("hello world"));
        let loose = inv.host("loose.example").unwrap();
        assert_eq!(loose.groups, ["all", "ungrouped"]);
        assert_eq!(inv.groups_var()["ungrouped"], json!(["loose.example"]));
    }

    #[test]
    fn children_may_come_before_their_section() {
        let inv = parse_ini("h", "[top:children]\nlate\n[late]\nh1\n").unwrap();
        assert_eq!(inv.host("h1").unwrap().groups, ["all", "top", "late"]);
    }

    #[test]
    fn malformed_ini_names_file_line_col() {
        for (text, at, needle) in [
            ("[web\nh1\n", "h:1:1:", "bad section header"),
            ("[web:hostz]\n", "h:1:1:", "unknown type `hostz`"),
            ("[web]\nh1 ansible_port=http\n", "h:2:17:", "ansible_port"),
            ("[web]\nh1 novalue\n", "h:2:4:", "expected key=value"),
            ("[web:vars]\nx=1\n", "h:1:1:", "declared nowhere"),
            ("[a:children]\nb\n", "h:2:1:", "declared nowhere"),
            ("[web]\nh[1:x]\n", "h:2:1:", "not a number"),
            (
                "[web:vars]\n  just words\n[web]\n",
                "h:2:3:",
                "expected key=value",
            ),
            (
                "[a:children]\nb\n[b:children]\na\n",
                "h:",
                "contains itself",
            ),
            (
                "[web]\nh1 ansible_connection=winrm\n",
                "h:2:23:",
                "expected `ssh` or `local`",
            ),
        ] {
            let e = parse_ini("h", text).unwrap_err().to_string();
            assert!(e.starts_with(at), "{text:?}: expected {at}, got {e}");
            assert!(e.contains(needle), "{text:?}: expected {needle:?} in {e}");
        }
    }
}
