//! `ansible.builtin.template`: a Jinja2 file from the role's or play's `templates/`, rendered
//! with the task's variables (`trim_blocks` on, as in Ansible) and written as `copy` writes:
//! only when it differs, with `mode`/`owner`/`group`, in check mode and with a diff.

use super::util::{fix_attributes, read_regular, stat, write_if_changed, Stat};
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use minijinja::Value as JValue;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.template",
    short: "template",
    args: &[
        arg("src", Kind::Str),
        arg("dest", Kind::Str),
        arg("mode", Kind::Mode),
        arg("owner", Kind::Str),
        arg("group", Kind::Str),
        arg("force", Kind::Bool),
        arg("backup", Kind::Bool),
        arg("trim_blocks", Kind::Bool),
        arg("lstrip_blocks", Kind::Bool),
        arg("newline_sequence", Kind::Choice(&["\n", "\r", "\r\n"])),
        arg("output_encoding", Kind::Choice(&["utf-8", "utf8", "UTF-8"])),
        arg("follow", Kind::Bool),
    ],
    required: &["src", "dest"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let src = args.req_str("src")?;
    let mut dest = args.req_str("dest")?;
    let mode = args.mode("mode")?;
    let owner = args.str("owner")?;
    let group = args.str("group")?;
    let force = args.bool("force", true)?;
    if !args.bool("trim_blocks", true)? {
        return Err(TaskError::Failed(
            "template: trim_blocks: false is not supported (c1m renders as Ansible's default)"
                .into(),
        ));
    }
    let path = ctx
        .find_local("templates", &src)
        .map_err(|e| TaskError::Failed(format!("template: src {e}")))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TaskError::Failed(format!("template: {}: {e}", path.display())))?;
    if dest.ends_with('/') || stat(ctx.t, &dest)?.is_some_and(|s| s.is_dir) {
        let base = std::path::Path::new(&src)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = base.strip_suffix(".j2").unwrap_or(&base).to_string();
        dest = format!("{}/{base}", dest.trim_end_matches('/'));
    }
    let mut vars = ctx.vars.clone();
    let fullpath = path.display().to_string();
    for (k, v) in [
        ("template_path", fullpath.clone()),
        ("template_fullpath", fullpath.clone()),
        ("template_destpath", dest.clone()),
        ("template_host", ctx.t.host().to_string()),
    ] {
        vars.insert(k.into(), serde_json::Value::String(v));
    }
    vars.entry("ansible_managed".into())
        .or_insert_with(|| serde_json::Value::String("Ansible managed".into()));
    let mut content = ctx
        .templar
        .render_file(
            &fullpath,
            &text,
            &JValue::from_serialize(&vars),
            args.bool("lstrip_blocks", false)?,
        )
        .map_err(TaskError::Failed)?;
    let newline = args.str_or("newline_sequence", "\n")?;
    if newline != "\n" {
        content = content.replace('\n', &newline);
    }
    let mut out = Outcome::ok(dest.clone());
    let existing = read_regular(ctx.t, &dest)?;
    if args.bool("backup", false)? && existing.is_some() && !ctx.check {
        super::util::backup(
            ctx.t,
            &dest,
            existing.as_ref().map(|e| e.text.as_str()) != Some(content.as_str()),
        )?;
    }
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
    let wants_owner = owner.is_some() || group.is_some();
    let current = match existing {
        Some(_) if wants_owner => stat(ctx.t, &dest)?,
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
