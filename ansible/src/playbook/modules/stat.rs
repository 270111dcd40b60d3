//! `ansible.builtin.stat` (facts about a path, for `register` + `when`) and
//! `ansible.builtin.debug` (print a message or a variable). Neither changes anything.

use super::util::{stat, Stat};
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::Transport;
use serde_json::json;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.stat",
    short: "stat",
    args: &[super::arg_alias("path", Kind::Str, &["dest", "name"])],
    required: &["path"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run: run_stat,
};

pub static DEBUG: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.debug",
    short: "debug",
    args: &[
        arg("msg", Kind::Any),
        arg("var", Kind::Str),
        arg("verbosity", Kind::Int),
    ],
    required: &[],
    one_of: &[],
    free_form: false,
    any_args: false,
    run: run_debug,
};

fn run_stat(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let path = args.req_str("path")?;
    let st = match stat_from_files(ctx.t, &path) {
        Some(st) => st,
        None => stat(ctx.t, &path)?,
    };
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

/// The module's answer without an exec where the transport can tell (see `Transport::lstat`):
/// a plain file or directory, or nothing at all, with owner and group named by /etc/passwd and
/// /etc/group. A symlink (the shell's stat follows it), an id those files do not name (NSS may)
/// or any failure: `None`, ask the shell as before.
fn stat_from_files(t: &mut dyn Transport, path: &str) -> Option<Option<Stat>> {
    let meta = match t.lstat(path)? {
        Ok(None) => return Some(None),
        Ok(Some(m)) if m.is_dir || m.is_file => m,
        _ => return None,
    };
    let owner = name_of(t, "/etc/passwd", meta.uid?)?;
    let group = name_of(t, "/etc/group", meta.gid?)?;
    Some(Some(Stat {
        is_dir: meta.is_dir,
        is_file: meta.is_file,
        mode: meta.mode,
        owner,
        group,
    }))
}

/// The name of `id` in a passwd-format file (`name:x:id:...`).
fn name_of(t: &mut dyn Transport, db: &str, id: u32) -> Option<String> {
    let bytes = t.read_file(db).ok()??;
    let id = id.to_string();
    String::from_utf8_lossy(&bytes).lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == id).then(|| f[0].to_string())
    })
}

fn run_debug(args: &Args, _ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    // c1m has no -v: a message for a higher verbosity is skipped, as Ansible skips it.
    if args
        .map
        .get("verbosity")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        > 0
    {
        return Ok(Outcome {
            skipped: true,
            msg: Some("Verbosity threshold not met.".into()),
            ..Outcome::default()
        });
    }
    let msg = match (args.map.get("msg"), args.map.get("var")) {
        (Some(serde_json::Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(serde_json::Value::String(s))) => s.clone(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "Hello world!".into(),
    };
    Ok(Outcome::ok(msg))
}
