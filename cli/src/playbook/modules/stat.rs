//! `ansible.builtin.stat` (facts about a path, for `register` + `when`) and
//! `ansible.builtin.debug` (print a message or a variable). Neither changes anything.

use super::util::stat;
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use serde_json::json;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.stat",
    short: "stat",
    args: &[super::arg_alias("path", Kind::Str, &["dest", "name"])],
    required: &["path"],
    one_of: &[],
    free_form: false,
    run: run_stat,
};

pub static DEBUG: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.debug",
    short: "debug",
    args: &[arg("msg", Kind::Any), arg("var", Kind::Str)],
    required: &[],
    one_of: &[],
    free_form: false,
    run: run_debug,
};

fn run_stat(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let path = args.req_str("path")?;
    let st = stat(ctx.t, &path)?;
    let value = match &st {
        None => json!({"exists": false}),
        Some(s) => json!({
            "exists": true, "isdir": s.is_dir, "isreg": s.is_file,
            "mode": format!("{:04o}", s.mode), "pw_name": s.owner, "gr_name": s.group, "path": path,
        }),
    };
    let mut out = Outcome::ok(format!(
        "{path}: {}",
        if st.is_some() { "exists" } else { "absent" }
    ));
    out.extra.insert("stat".into(), value);
    Ok(out)
}

fn run_debug(args: &Args, _ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let msg = match (args.map.get("msg"), args.map.get("var")) {
        (Some(serde_json::Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(serde_json::Value::String(s))) => s.clone(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "Hello world!".into(),
    };
    Ok(Outcome::ok(msg))
}
