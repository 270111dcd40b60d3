//! `community.general.modprobe`: load or unload a kernel module and make that persistent in
//! `/etc/modules-load.d/NAME.conf` (parameters in `/etc/modprobe.d/NAME.conf`), as
//! community.general does. A module built into the kernel counts as loaded: c1m says so and
//! goes on.

use super::util::{ensure_content, read_text, run_ok};
use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "community.general.modprobe",
    short: "modprobe",
    args: &[
        arg("name", Kind::Str),
        arg("state", Kind::Choice(&["present", "absent"])),
        arg("params", Kind::Str),
        arg(
            "persistent",
            Kind::Choice(&["disabled", "present", "absent"]),
        ),
    ],
    required: &["name"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

#[derive(Debug, PartialEq, Eq)]
enum Loaded {
    No,
    Module,
    BuiltIn(&'static str),
}

fn loaded(ctx: &mut ModuleCtx, name: &str) -> Result<Loaded, TaskError> {
    let proc_name = format!("{} ", name.replace('-', "_"));
    if read_text(ctx.t, "/proc/modules")?
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&proc_name))
    {
        return Ok(Loaded::Module);
    }
    if listed_builtin(ctx, name)? {
        return Ok(Loaded::BuiltIn(
            "listed in /lib/modules/$(uname -r)/modules.builtin",
        ));
    }
    // Without a modules.builtin list (minimal kernels), a /sys/module entry that is not in
    // /proc/modules is a built-in module.
    let sys = format!("/sys/module/{}", name.replace('-', "_"));
    if super::util::exists(ctx.t, &sys, true)? {
        return Ok(Loaded::BuiltIn(
            "built into the kernel (/sys/module entry, not in /proc/modules)",
        ));
    }
    Ok(Loaded::No)
}

/// Whether `modules.builtin` of the running kernel lists `name`. Read as a file where the
/// transport reads files without a program (the kernel release from /proc too): on a slow host
/// the shell's `uname` and `grep` cost two forks. Otherwise, or when the read fails, the shell.
fn listed_builtin(ctx: &mut ModuleCtx, name: &str) -> Result<bool, TaskError> {
    let suffix = format!("/{name}.ko");
    if ctx.t.lstat("/proc/sys/kernel/osrelease").is_some() {
        if let Ok(Some(release)) = ctx.t.read_file("/proc/sys/kernel/osrelease") {
            let release = String::from_utf8_lossy(&release).trim().to_string();
            let list = format!("/lib/modules/{release}/modules.builtin");
            match ctx.t.read_file(&list) {
                // As `[ -r "$f" ]`: no list, not listed.
                Ok(None) => return Ok(false),
                Ok(Some(bytes)) => {
                    return Ok(String::from_utf8_lossy(&bytes)
                        .lines()
                        .any(|l| l.ends_with(&suffix)))
                }
                Err(_) => {}
            }
        }
    }
    let q = shell_quote(&suffix);
    Ok(ctx
        .t
        .exec(
            &format!(
                "f=/lib/modules/$(uname -r)/modules.builtin; [ -r \"$f\" ] && grep -q -- {q}'$' \"$f\""
            ),
            None,
        )?
        .success())
}

/// Text of every regular file ending in `.conf` in each of `dirs`, with its path: one listing
/// for all of them, as each exec costs a fork of a shell on a slow host.
fn conf_files(ctx: &mut ModuleCtx, dirs: &[&str]) -> Result<Vec<Vec<(String, String)>>, TaskError> {
    let script: String = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            format!(
                "for f in {}/*.conf; do [ -f \"$f\" ] && printf '{i} %s\\n' \"$f\"; done; ",
                shell_quote(dir)
            )
        })
        .collect();
    let out = ctx.t.exec(&format!("{script}true"), None)?;
    let mut files = vec![Vec::new(); dirs.len()];
    for line in out.stdout_str().lines() {
        let Some((i, path)) = line.split_once(' ') else {
            continue;
        };
        let Some(list) = i.parse::<usize>().ok().and_then(|i| files.get_mut(i)) else {
            continue;
        };
        if let Some(text) = read_text(ctx.t, path)? {
            list.push((path.to_string(), text));
        }
    }
    Ok(files)
}

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let name = args.req_str("name")?;
    let present = args.check_choice("state", &["present", "absent"], "present")? == "present";
    let params = args.str_or("params", "")?;
    let persistent =
        args.check_choice("persistent", &["disabled", "present", "absent"], "disabled")?;
    let mut out = Outcome::default();
    let mut notes = Vec::new();

    let state = loaded(ctx, &name)?;
    match (&state, present) {
        (Loaded::BuiltIn(how), true) => notes.push(format!("{name} is {how}; nothing to load")),
        (Loaded::Module, true) => notes.push(format!("{name} is loaded")),
        (Loaded::No, true) => {
            out.changed = true;
            notes.push(format!("loading {name}"));
            let mut cmd = format!("modprobe {}", shell_quote(&name));
            for p in shlex::split(&params).unwrap_or_default() {
                cmd.push(' ');
                cmd.push_str(&shell_quote(&p));
            }
            if ctx.check {
                cmd = cmd.replacen("modprobe ", "modprobe -n ", 1);
            }
            run_ok(ctx.t, &cmd, &format!("modprobe {name}"))?;
        }
        (Loaded::Module, false) => {
            out.changed = true;
            notes.push(format!("unloading {name}"));
            if !ctx.check {
                run_ok(
                    ctx.t,
                    &format!("modprobe -r {}", shell_quote(&name)),
                    &format!("modprobe -r {name}"),
                )?;
            }
        }
        (Loaded::BuiltIn(how), false) => {
            return Err(TaskError::Failed(format!(
                "{name} is {how}; it cannot be unloaded"
            )))
        }
        (Loaded::No, false) => notes.push(format!("{name} is not loaded")),
    }

    let listed = |text: &str| {
        text.lines().any(|l| {
            let body = l.split(['#', ';']).next().unwrap_or("").trim();
            body == name
        })
    };
    match persistent.as_str() {
        "present" => {
            let mut lists = conf_files(ctx, &["/etc/modules-load.d", "/etc/modprobe.d"])?;
            let opts = lists.pop().unwrap_or_default();
            let files = lists.pop().unwrap_or_default();
            if !files.iter().any(|(_, t)| listed(t)) {
                let path = format!("/etc/modules-load.d/{name}.conf");
                if let Some(d) =
                    ensure_content(ctx.t, &path, &format!("{name}\n"), Some(0o644), ctx.check)?
                {
                    out.diffs.push(d);
                }
                out.changed = true;
                notes.push(format!("persisted in {path}"));
            }
            let wanted: std::collections::BTreeSet<&str> = params.split_whitespace().collect();
            let prefix = format!("options {name} ");
            let have: std::collections::BTreeSet<String> = opts
                .iter()
                .flat_map(|(_, t)| {
                    t.lines()
                        .filter_map(|l| l.strip_prefix(&prefix))
                        .map(|r| r.trim().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            let have_ref: std::collections::BTreeSet<&str> =
                have.iter().map(String::as_str).collect();
            if wanted != have_ref {
                let path = format!("/etc/modprobe.d/{name}.conf");
                let content: String = wanted
                    .iter()
                    .map(|p| format!("options {name} {p}\n"))
                    .collect();
                if let Some(d) = ensure_content(ctx.t, &path, &content, Some(0o644), ctx.check)? {
                    out.diffs.push(d);
                    out.changed = true;
                }
            }
        }
        "absent" => {
            let files = conf_files(ctx, &["/etc/modules-load.d"])?
                .pop()
                .unwrap_or_default();
            for (path, text) in files {
                if listed(&text) {
                    let after: String = text
                        .lines()
                        .map(|l| {
                            if l.split(['#', ';']).next().unwrap_or("").trim() == name {
                                format!("#{l}\n")
                            } else {
                                format!("{l}\n")
                            }
                        })
                        .collect();
                    if let Some(d) = ensure_content(ctx.t, &path, &after, None, ctx.check)? {
                        out.diffs.push(d);
                    }
                    out.changed = true;
                }
            }
        }
        _ => {}
    }
    out.msg = Some(notes.join("; "));
    Ok(out)
}
