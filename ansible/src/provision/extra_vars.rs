//! `-e`/`--extra-vars` as `ansible-playbook` reads them: `key=value` words (values are
//! strings), a YAML or JSON mapping (`-e '{"n": 5}'`), or `@FILE` holding one. Later ones win.

use crate::template::{self, Vars};
use crate::yaml::{self, Ctx, Value};
use anyhow::bail;
use std::path::Path;

/// All `-e` values merged, in order.
pub fn parse(items: &[String]) -> anyhow::Result<Vars> {
    let mut vars = Vars::new();
    for item in items {
        vars.extend(one(item)?);
    }
    Ok(vars)
}

fn one(item: &str) -> anyhow::Result<Vars> {
    if let Some(file) = item.strip_prefix('@') {
        let text = std::fs::read_to_string(Path::new(file))
            .map_err(|e| anyhow::anyhow!("-e @{file}: cannot read it: {e}"))?;
        return Ok(mapping(file, &text)?);
    }
    let trimmed = item.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with("---") {
        return Ok(mapping("-e", item)?);
    }
    let words = shlex::split(item).ok_or_else(|| {
        anyhow::anyhow!("-e {item:?}: cannot split into words (unbalanced quotes?)")
    })?;
    let mut vars = Vars::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            bail!("-e {item:?}: expected KEY=VALUE, a YAML/JSON mapping, or @FILE; found `{w}`");
        };
        if !template::is_var_name(k) {
            bail!("-e {item:?}: {k:?} is not a variable name");
        }
        vars.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    Ok(vars)
}

/// A YAML/JSON mapping of variables; `name` names it in errors.
fn mapping(name: &str, text: &str) -> Result<Vars, crate::yaml::SourceError> {
    let root = yaml::load(name, text)?;
    if root.value == Value::Null {
        return Ok(Vars::new());
    }
    let ctx = Ctx { file: name, text };
    let mut vars = Vars::new();
    for (k, v) in ctx.map(&root, "extra vars")? {
        if !template::is_var_name(k) {
            return Err(ctx.err(
                yaml::key_node(&root, k),
                format!("extra vars: {k:?} is not a variable name"),
            ));
        }
        vars.insert(k.to_string(), v.to_json());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_ansible_takes() {
        let dir = std::env::temp_dir().join(format!("c1m-extra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vars.yml");
        std::fs::write(&file, "n: 5\nlist: [1, 2]\n").unwrap();
        let v = parse(&[
            "a=1 b='x y'".to_string(),
            r#"{"c": true, "a": 2}"#.to_string(),
            format!("@{}", file.display()),
        ])
        .unwrap();
        assert_eq!(v["a"], json!(2));
        assert_eq!(v["b"], json!("x y"));
        assert_eq!(v["c"], json!(true));
        assert_eq!(v["n"], json!(5));
        assert_eq!(v["list"], json!([1, 2]));
        assert!(parse(&["novalue".into()]).is_err());
        assert!(parse(&["1a=x".into()]).is_err());
        let e = parse(&["{a: [1, 2}".into()]).unwrap_err().to_string();
        assert!(e.starts_with("-e:1:"), "{e}");
        let bad = dir.join("bad.yml");
        std::fs::write(&bad, "- 1\n").unwrap();
        let e = parse(&[format!("@{}", bad.display())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.yml:1:1:") && e.contains("expected a mapping"),
            "{e}"
        );
        assert!(parse(&["@/nonexistent/x.yml".into()]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
