//! Ansible's YAML inventory format (`all`/`children`/`hosts`/`vars`, host ranges in names) into
//! the inventory [`Builder`].

use super::build::Builder;
use super::checks::{check_connection_var, At};
use super::ranges;
use crate::template::Vars;
use crate::yaml::{self, key_node, Ctx, Node, SourceError, Value};

/// Adds the YAML inventory `text` (named `source`) to `b`.
pub(super) fn read(b: &mut Builder, source: &str, text: &str) -> Result<(), SourceError> {
    let root = yaml::load(source, text)?;
    let ctx = Ctx { file: source, text };
    if root.value == Value::Null {
        return Err(ctx.err(&root, "empty inventory: expected a mapping with `all:`"));
    }
    let r = Reader { ctx: ctx.clone() };
    for (name, body) in ctx.map(&root, "inventory")? {
        r.group(b, name, body, &[])?;
    }
    Ok(())
}

struct Reader<'a> {
    ctx: Ctx<'a>,
}

impl Reader<'_> {
    fn vars(&self, node: &Node, what: &str) -> Result<Vars, SourceError> {
        if node.value == Value::Null {
            return Ok(Vars::new());
        }
        let mut vars = Vars::new();
        for (name, value) in self.ctx.map(node, what)? {
            let json = value.to_json();
            check_connection_var(
                &At {
                    file: self.ctx.file.to_string(),
                    pos: value.pos,
                },
                name,
                &json,
            )?;
            vars.insert(name.to_string(), json);
        }
        Ok(vars)
    }

    fn group(
        &self,
        b: &mut Builder,
        name: &str,
        node: &Node,
        parents: &[String],
    ) -> Result<(), SourceError> {
        if parents.iter().any(|p| p == name) {
            return Err(self.ctx.err(node, format!("group {name} contains itself")));
        }
        b.group(name);
        if node.value == Value::Null {
            return Ok(());
        }
        let what = format!("group {name}");
        for (key, value) in self.ctx.map(node, &what)? {
            match key {
                "vars" => {
                    let vars = self.vars(value, &format!("{what} vars"))?;
                    b.set_group_vars(name, vars);
                }
                "hosts" => {
                    if value.value == Value::Null {
                        continue;
                    }
                    for (pattern, hvars) in self.ctx.map(value, &format!("{what} hosts"))? {
                        let at = key_node(value, pattern);
                        let (hosts, port) =
                            ranges::expand(pattern).map_err(|e| self.ctx.err(at, e))?;
                        let mut vars = self.vars(hvars, &format!("host {pattern} vars"))?;
                        if let Some(p) = port {
                            vars.entry("ansible_port".into()).or_insert(p.into());
                        }
                        let group = (name != "all").then_some(name);
                        for host in hosts {
                            b.add_host(group, &host, vars.clone());
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
                        b.add_child(
                            name,
                            child,
                            At {
                                file: self.ctx.file.to_string(),
                                pos: key_node(value, child).pos,
                            },
                        );
                        self.group(b, child, body, &path)?;
                    }
                }
                other => {
                    let hint = if other.contains('.') || other.contains("ansible_") {
                        " (a host? put it under `hosts:`; a variable? under `vars:`)"
                    } else {
                        ""
                    };
                    return Err(self.ctx.err(
                        key_node(node, other),
                        format!("{what}: unknown key `{other}`, expected one of `hosts`, `children`, `vars`{hint}"),
                    ));
                }
            }
        }
        Ok(())
    }
}
