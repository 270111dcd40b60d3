//! `ansible.builtin.copy`: a file's content from `content` or a local `src`, plus mode/owner.

use super::util::{fix_attributes, read_regular, stat, write_if_changed, Stat};
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.copy",
    short: "copy",
    args: &[
        arg("src", Kind::Str),
        arg("content", Kind::Str),
        arg("dest", Kind::Str),
        arg("mode", Kind::Mode),
        arg("owner", Kind::Str),
        arg("group", Kind::Str),
        arg("force", Kind::Bool),
    ],
    required: &["dest"],
    one_of: &["src", "content"],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let mut dest = args.req_str("dest")?;
    let mode = args.mode("mode")?;
    let owner = args.str("owner")?;
    let group = args.str("group")?;
    let force = args.bool("force", true)?;
    let content = match (args.str("content")?, args.str("src")?) {
        (Some(_), Some(_)) => {
            return Err(TaskError::Failed(
                "copy: src and content are mutually exclusive".into(),
            ))
        }
        (Some(c), None) => c,
        (None, Some(src)) => {
            let found = ctx
                .find_local("files", &src)
                .map_err(|e| TaskError::Failed(format!("copy: src {e}")))?;
            let text = std::fs::read(&found)
                .map_err(|e| TaskError::Failed(format!("copy: {}: {e}", found.display())))?;
            if dest.ends_with('/') || stat(ctx.t, &dest)?.is_some_and(|s| s.is_dir) {
                let base = std::path::Path::new(&src)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_default();
                dest = format!("{}/{base}", dest.trim_end_matches('/'));
            }
            String::from_utf8_lossy(&text).into_owned()
        }
        (None, None) => {
            return Err(TaskError::Failed(
                "copy: one of src, content is required".into(),
            ))
        }
    };
    let mut out = Outcome::ok(dest.clone());
    let existing = read_regular(ctx.t, &dest)?;
    let mut written = false;
    if existing.is_none() || force {
        if let Some(d) =
            write_if_changed(ctx.t, &dest, existing.as_ref(), &content, mode, ctx.check)?
        {
            out.changed = true;
            out.diffs.push(d);
            written = true;
        }
    }
    // What the file has now, without another round trip where we already know it: a write
    // set `mode`; owner/group (not read with the content) need a fresh look when asked for.
    let wants_owner = owner.is_some() || group.is_some();
    let current = match existing {
        Some(_) if wants_owner => stat(ctx.t, &dest)?.map(|s| Stat {
            mode: if written {
                mode.unwrap_or(s.mode)
            } else {
                s.mode
            },
            ..s
        }),
        // fix_attributes looks at owner/group only when asked for, so empty ones are never seen.
        Some(e) => Some(Stat {
            is_dir: false,
            is_file: true,
            mode: if written {
                mode.unwrap_or(e.mode)
            } else {
                e.mode
            },
            owner: String::new(),
            group: String::new(),
        }),
        None if !ctx.check && wants_owner => stat(ctx.t, &dest)?,
        None => None,
    };
    if let Some(current) = current {
        if let Some(d) = fix_attributes(
            ctx.t,
            &dest,
            &current,
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
