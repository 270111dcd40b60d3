//! `ansible.builtin.file`: directories, removal, and attributes of existing files.

use super::util::{fix_attributes, run_ok, stat_attrs, Stat};
use super::{arg, arg_alias, Args, Diff, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.file",
    short: "file",
    args: &[
        arg_alias("path", Kind::Str, &["dest", "name"]),
        arg(
            "state",
            Kind::Choice(&["file", "directory", "absent", "touch"]),
        ),
        arg("mode", Kind::Mode),
        arg("owner", Kind::Str),
        arg("group", Kind::Str),
    ],
    required: &["path"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let path = args.req_str("path")?;
    let owner = args.str("owner")?;
    let group = args.str("group")?;
    let need_owner = owner.is_some() || group.is_some();
    let existing = stat_attrs(ctx.t, &path, need_owner)?;
    let default_state = match &existing {
        Some(s) if s.is_dir => "directory",
        _ => "file",
    };
    let state = args.check_choice(
        "state",
        &["file", "directory", "absent", "touch"],
        default_state,
    )?;
    let mode = args.mode("mode")?;
    let q = shell_quote(&path);
    let mut out = Outcome::ok(format!("{path} {state}"));
    let kind = |s: &Option<Stat>| match s {
        None => "absent",
        Some(s) if s.is_dir => "directory",
        Some(_) => "file",
    };
    let mut current = existing.clone();
    match state.as_str() {
        "absent" => {
            if existing.is_some() {
                out.changed = true;
                out.diffs.push(Diff {
                    label: path.clone(),
                    before: format!("{}\n", kind(&existing)),
                    after: "absent\n".into(),
                });
                if !ctx.check {
                    run_ok(
                        ctx.t,
                        &format!("rm -rf -- {q}"),
                        &format!("removing {path}"),
                    )?;
                }
            }
            return Ok(out);
        }
        "directory" => match &existing {
            Some(s) if s.is_dir => {}
            Some(_) => {
                return Err(TaskError::Failed(format!(
                    "file: {path} exists and is not a directory"
                )))
            }
            None => {
                out.changed = true;
                out.diffs.push(Diff {
                    label: path.clone(),
                    before: "absent\n".into(),
                    after: "directory\n".into(),
                });
                if !ctx.check {
                    run_ok(ctx.t, &format!("mkdir -p -- {q}"), &format!("mkdir {path}"))?;
                    current = stat_attrs(ctx.t, &path, need_owner)?;
                }
            }
        },
        "touch" => {
            out.changed = true;
            if !ctx.check {
                run_ok(ctx.t, &format!("touch -- {q}"), &format!("touch {path}"))?;
                current = stat_attrs(ctx.t, &path, need_owner)?;
            }
        }
        _ => match &existing {
            None => {
                return Err(TaskError::Failed(format!(
                    "file ({path}) is absent, cannot continue"
                )))
            }
            Some(s) if s.is_dir => {
                return Err(TaskError::Failed(format!(
                    "file: {path} is a directory, not a file"
                )))
            }
            Some(_) => {}
        },
    }
    if let Some(cur) = current {
        if let Some(d) = fix_attributes(
            ctx.t,
            &path,
            &cur,
            mode,
            owner.as_deref(),
            group.as_deref(),
            ctx.check,
        )? {
            out.changed = true;
            out.diffs.push(d);
        }
    }
    Ok(out)
}
