//! The workspace's layers, checked: no crate depends on one above it, the binaries shipped to
//! hosts stay free of SSH and OpenSSL, and no two modules of a crate import each other, however
//! indirectly.
//!
//! Crate dependencies come from `cargo metadata`. Module imports are read from the sources:
//! every `crate::…`, `super::…` and `self::…` path (including those inside `use` groups) is
//! resolved to the module it names; an import between two modules counts as an edge between
//! their ancestors that are siblings (children of the same module), so a cycle anywhere shows
//! up as a cycle among siblings. A child's use of its parent's items, and a parent's use of its
//! children, are the normal shape of a module tree and are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's crates, lowest layer first. A crate may depend only on crates before it.
const LAYERS: &[&str] = &[
    "c1m-proto",
    "c1m-transport",
    "c1m-rundir",
    "c1m-ansible",
    "c1m-report",
    "c1m-lab",
    "c1m-orchestrator",
    "c1m-server",
    "c1m-client",
    "c1m",
];

/// Shipped to the hosts under test: none of these may be in their dependency tree.
const BINARIES: &[&str] = &["c1m-server", "c1m-client"];
const NOT_IN_BINARIES: &[&str] = &["ssh2", "libssh2-sys", "openssl-sys", "openssl"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let meta = metadata();
    let members: BTreeSet<String> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut wrong = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        if !members.contains(pkg["id"].as_str().unwrap()) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap();
        let Some(mine) = rank(name) else {
            wrong.push(format!("{name} is not in LAYERS: give it its place"));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            // Dev-dependencies of the top crate's tests may reach anything below it.
            if dep["kind"].as_str() == Some("dev") && name == "c1m" {
                continue;
            }
            if let Some(theirs) = rank(dep_name) {
                if theirs >= mine {
                    wrong.push(format!(
                        "{name} depends on {dep_name}, which is not below it"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layering broken:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_binaries_shipped_to_hosts_carry_no_ssh_or_openssl() {
    let meta = metadata();
    let packages: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let nodes: BTreeMap<String, Vec<(String, bool)>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let normal = d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null());
                    (d["pkg"].as_str().unwrap().to_string(), normal)
                })
                .collect();
            (n["id"].as_str().unwrap().to_string(), deps)
        })
        .collect();
    for bin in BINARIES {
        let root = packages
            .iter()
            .find(|(_, n)| n == bin)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{bin} is not in the workspace"));
        let mut seen = BTreeSet::new();
        let mut todo = vec![root];
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let name = &packages[&id];
            assert!(
                !NOT_IN_BINARIES.contains(&name.as_str()),
                "{bin} depends on {name}: the binaries shipped to hosts must stay free of SSH/OpenSSL"
            );
            for (dep, normal) in nodes.get(&id).into_iter().flatten() {
                if *normal {
                    todo.push(dep.clone());
                }
            }
        }
    }
}

/// A module's path inside its crate, e.g. `["run", "engine"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// Every module file of a crate's `src/`, by module path.
fn modules(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![src.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut parts: ModPath = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod") | Some("lib") | Some("main")
            ) {
                parts.pop();
            }
            // `src/bin/x.rs` is a crate of its own.
            if parts.first().map(String::as_str) == Some("bin") {
                continue;
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The source without comments and without its `#[cfg(test)]` tail (tests reach into their
/// parent with `super::*`, which says nothing of the layers).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names that starts with `crate`, `super` or `self`, with `use` groups
/// (`super::{a, b::{c, d}}`) expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|h| rest.starts_with(h));
        match head {
            Some(_) if starts_word => {
                let (tree, end) = read_tree(&bytes, i);
                expand(&tree, &mut Vec::new(), &mut out);
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// A path tree: segments, then optionally a `{…}` group of subtrees.
#[derive(Debug)]
struct Tree {
    segments: Vec<String>,
    group: Vec<Tree>,
}

fn read_tree(c: &[char], mut i: usize) -> (Tree, usize) {
    let mut t = Tree {
        segments: Vec::new(),
        group: Vec::new(),
    };
    loop {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        if i < c.len() && c[i] == '{' {
            i += 1;
            loop {
                while i < c.len() && (c[i].is_whitespace() || c[i] == ',') {
                    i += 1;
                }
                if i >= c.len() || c[i] == '}' {
                    return (t, i + 1);
                }
                let (sub, end) = read_tree(c, i);
                t.group.push(sub);
                i = end;
            }
        }
        let start = i;
        while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '*') {
            i += 1;
        }
        if i == start {
            return (t, i);
        }
        t.segments.push(c[start..i].iter().collect());
        if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (t, i);
        }
    }
}

fn expand(t: &Tree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let n = prefix.len();
    prefix.extend(t.segments.iter().cloned());
    if t.group.is_empty() {
        out.push(prefix.clone());
    } else {
        for g in &t.group {
            expand(g, prefix, out);
        }
    }
    prefix.truncate(n);
}

/// The module a path from `from` names: its longest prefix that is a module of the crate.
fn resolve(from: &ModPath, path: &[String], mods: &BTreeMap<ModPath, PathBuf>) -> Option<ModPath> {
    let mut base: ModPath = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("self") => {
            base = from.clone();
            rest = &path[1..];
        }
        Some("super") => {
            base = from.clone();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = None;
    let mut cur = base.clone();
    if mods.contains_key(&cur) {
        best = Some(cur.clone());
    }
    for seg in rest {
        cur.push(seg.clone());
        if mods.contains_key(&cur) {
            best = Some(cur.clone());
        } else {
            break;
        }
    }
    best
}

/// Cycles among the children of each module: `(parent, modules of one cycle)`.
fn module_cycles(src: &Path) -> Vec<(ModPath, Vec<String>)> {
    let mods = modules(src);
    // parent -> (child -> children it imports)
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, file) in &mods {
        for path in paths_in(&code_of(file)) {
            let Some(to) = resolve(from, &path, &mods) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            let (Some(a), Some(b)) = (from.get(common), to.get(common)) else {
                // One is the other's ancestor: a parent and its child.
                continue;
            };
            graphs
                .entry(from[..common].to_vec())
                .or_default()
                .entry(a.clone())
                .or_default()
                .insert(b.clone());
        }
    }
    let mut cycles = Vec::new();
    for (parent, g) in graphs {
        for scc in strongly_connected(&g) {
            if scc.len() > 1 {
                cycles.push((parent.clone(), scc));
            }
        }
    }
    cycles
}

/// Tarjan's strongly connected components.
fn strongly_connected(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.g.get(v) {
            for w in ws {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let l = s.low[w.as_str()].min(s.low[v]);
                    s.low.insert(v, l);
                } else if s.on.contains(w.as_str()) {
                    let l = s.index[w.as_str()].min(s.low[v]);
                    s.low.insert(v, l);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let meta = metadata();
    let mut found = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap());
        if !manifest.starts_with(workspace_root()) {
            continue;
        }
        let src = manifest.parent().unwrap().join("src");
        for (parent, cycle) in module_cycles(&src) {
            found.push(format!(
                "{}: in {}: {}",
                pkg["name"].as_str().unwrap(),
                if parent.is_empty() {
                    "the crate root".to_string()
                } else {
                    parent.join("::")
                },
                cycle.join(" <-> ")
            ));
        }
    }
    assert!(found.is_empty(), "module cycles:\n  {}", found.join("\n  "));
}

/// The checker itself finds a cycle it is shown, and none in a tree without one.
#[test]
fn the_cycle_checker_sees_a_cycle() {
    let dir = std::env::temp_dir().join(format!("c1m-layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod x;\nmod y;\nuse crate::b::B;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::{y::Y, *};\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "pub struct Y;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    assert!(module_cycles(&src).is_empty());
    std::fs::write(
        src.join("a/y.rs"),
        "pub struct Y;\nfn f() { crate::a::x::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "use crate::a::{self, x::X};\n").unwrap();
    let cycles = module_cycles(&src);
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = cycles
        .iter()
        .map(|(p, c)| format!("{}:{}", p.join("::"), c.join(",")))
        .collect();
    assert!(names.contains(&"a:x,y".to_string()), "{names:?}");
    assert!(names.contains(&":a,b".to_string()), "{names:?}");
}
