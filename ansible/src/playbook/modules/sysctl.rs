//! `ansible.posix.sysctl`: one key in a sysctl file and, with `sysctl_set`, in the running
//! kernel. Follows ansible.posix's logic: the file line is `name=value`; values compare by
//! whitespace-separated words; `reload` runs `sysctl -p FILE` after a change.

use super::util::{read_staged, read_text, run_ok, stage_if_changed};
use super::{arg, Args, Diff, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.posix.sysctl",
    short: "sysctl",
    args: &[
        super::arg_alias("name", Kind::Str, &["key"]),
        super::arg_alias("value", Kind::Any, &["val"]),
        arg("state", Kind::Choice(&["present", "absent"])),
        arg("sysctl_file", Kind::Str),
        arg("reload", Kind::Bool),
        arg("sysctl_set", Kind::Bool),
        arg("ignoreerrors", Kind::Bool),
    ],
    required: &["name"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

/// ansible.posix's `_parse_value`: booleans become `1`/`0`, strings are trimmed.
fn parse_value(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::Bool(b)) => if *b { "1" } else { "0" }.into(),
        Some(serde_json::Value::String(s)) => match crate::yaml::parse_bool(s) {
            Some(b) if !s.trim().chars().all(|c| c.is_ascii_digit()) => {
                if b { "1" } else { "0" }.into()
            }
            _ => s.trim().to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn same_words(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

fn proc_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// The file with `name` set to `value` (or removed), and the value the file had.
fn fix_lines(text: &str, name: &str, value: &str, present: bool) -> (String, Option<String>) {
    let mut old = None;
    let mut out = String::new();
    let mut written = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (k, v) = trimmed.split_once('=').unwrap_or((trimmed, ""));
        if k.trim() == name {
            old = Some(v.trim().to_string());
            if present && !written {
                out.push_str(&format!("{name}={value}\n"));
                written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if present && !written {
        out.push_str(&format!("{name}={value}\n"));
    }
    (out, old)
}

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let name = args.req_str("name")?.trim().to_string();
    let present = args.check_choice("state", &["present", "absent"], "present")? == "present";
    let value = parse_value(args.map.get("value"));
    if present && value.is_empty() {
        return Err(TaskError::Failed(format!(
            "sysctl {name}: state=present needs a value"
        )));
    }
    let file = args.str_or("sysctl_file", "/etc/sysctl.conf")?;
    let reload = args.bool("reload", true)?;
    let sysctl_set = args.bool("sysctl_set", false)?;
    let ignoreerrors = args.bool("ignoreerrors", false)?;

    let proc_value = read_text(ctx.t, &proc_path(&name))?.map(|s| s.trim().to_string());
    let existing = read_staged(ctx.t, ctx.staged, &file)?;
    let before_file = existing
        .as_ref()
        .map(|e| e.text.clone())
        .unwrap_or_default();
    let (after_file, file_value) = fix_lines(&before_file, &name, &value, present);

    let mut changed = false;
    let mut write_file = false;
    let mut set_proc = false;
    match (&file_value, present) {
        (None, true) | (Some(_), false) => {
            changed = true;
            write_file = true;
        }
        (None, false) => {}
        (Some(v), true) if *v != value => {
            changed = true;
            write_file = true;
        }
        (Some(_), true) => {
            if reload && !proc_value.as_deref().is_some_and(|p| same_words(p, &value)) {
                changed = true;
            }
        }
    }
    if sysctl_set && present {
        match &proc_value {
            // Under --check a key may not exist yet because an earlier task (modprobe) was
            // only simulated; report the change instead of failing.
            None if ctx.check => {
                changed = true;
            }
            None => {
                return Err(TaskError::Failed(format!(
                    "sysctl {name}: no such key ({} does not exist)",
                    proc_path(&name)
                )))
            }
            Some(p) if !same_words(p, &value) => {
                changed = true;
                set_proc = true;
            }
            Some(_) => {}
        }
    }

    let mut out = Outcome::default();
    if write_file {
        out.diffs.push(Diff {
            label: file.clone(),
            before: before_file.clone(),
            after: after_file.clone(),
        });
    }
    if set_proc {
        out.diffs.push(Diff {
            label: proc_path(&name),
            before: format!("{}\n", proc_value.clone().unwrap_or_default()),
            after: format!("{value}\n"),
        });
    }
    if !ctx.check {
        if set_proc {
            set_kernel_value(ctx, &name, &value)?;
        }
        if write_file {
            // Written when the task ends, once for all its loop items (each item rewrote the
            // whole file, an exec apiece on a slow host).
            stage_if_changed(
                ctx.staged,
                &file,
                existing.as_ref(),
                &after_file,
                None,
                false,
            );
        }
        if changed && reload {
            // `sysctl -p` reads the file: it must hold what this item staged.
            ctx.staged.flush(ctx.t, Some(&file)).map_err(|(_, e)| e)?;
            let e = if ignoreerrors { "-e " } else { "" };
            run_ok(
                ctx.t,
                &format!("sysctl {e}-p {}", shell_quote(&file)),
                &format!("reloading {file}"),
            )?;
        }
    }
    out.changed = changed;
    out.msg = Some(match (changed, proc_value) {
        (false, _) => format!("{name} = {value}"),
        (true, Some(p)) => format!(
            "{name}: {} -> {value}",
            p.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        (true, None) => format!("{name} -> {value}"),
    });
    if !present {
        out.msg = Some(format!("{name} removed from {file}"));
    }
    Ok(out)
}

/// Sets the running kernel's value by writing its `/proc/sys` file directly when the transport
/// can without a program (SFTP, this machine): on a slow host `sysctl -w` costs a shell's fork.
/// Any failure there (a value the kernel refuses, no permission) runs `sysctl -w` after all, so
/// the task fails with sysctl's own message and exit status, as it always did.
fn set_kernel_value(ctx: &mut ModuleCtx, name: &str, value: &str) -> Result<(), TaskError> {
    let data = format!("{value}\n");
    if let Some(Ok(())) = ctx.t.write_in_place(&proc_path(name), data.as_bytes()) {
        return Ok(());
    }
    run_ok(
        ctx.t,
        &format!("sysctl -w {}", shell_quote(&format!("{name}={value}"))),
        &format!("sysctl -w {name}"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_lines_replaces_appends_and_removes() {
        let (t, old) = fix_lines("# c\na = 1\nb=2\n", "a", "5", true);
        assert_eq!(t, "# c\na=5\nb=2\n");
        assert_eq!(old.as_deref(), Some("1"));
        let (t, old) = fix_lines("b=2\n", "a", "5", true);
        assert_eq!(t, "b=2\na=5\n");
        assert_eq!(old, None);
        let (t, _) = fix_lines("a=1\nb=2\n", "a", "", false);
        assert_eq!(t, "b=2\n");
        assert!(same_words("4096\t4096\t16384", "4096 4096 16384"));
        assert_eq!(parse_value(Some(&serde_json::json!(true))), "1");
        assert_eq!(parse_value(Some(&serde_json::json!(" 10 "))), "10");
    }
}
