//! `ansible.builtin.command` and `ansible.builtin.shell`. `command` splits its line into words
//! and quotes each, so templated values cannot inject shell syntax; `shell` runs its script as
//! written (as Ansible does). Both honour `creates`/`removes`/`chdir` and are skipped in check
//! mode unless `creates`/`removes` already decide.

use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

pub static COMMAND: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.command",
    short: "command",
    args: &[
        arg("cmd", Kind::Str),
        arg("argv", Kind::StrOrList),
        arg("creates", Kind::Str),
        arg("removes", Kind::Str),
        arg("chdir", Kind::Str),
        arg("stdin", Kind::Str),
        arg("_raw_params", Kind::Str),
    ],
    required: &[],
    one_of: &["_raw_params", "cmd", "argv"],
    free_form: true,
    any_args: false,
    run: run_command,
};

pub static SHELL: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.shell",
    short: "shell",
    args: &[
        arg("cmd", Kind::Str),
        arg("creates", Kind::Str),
        arg("removes", Kind::Str),
        arg("chdir", Kind::Str),
        arg("stdin", Kind::Str),
        arg("executable", Kind::Str),
        arg("_raw_params", Kind::Str),
    ],
    required: &[],
    one_of: &["_raw_params", "cmd"],
    free_form: true,
    any_args: false,
    run: run_shell,
};

fn run_command(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let words: Vec<String> = match args.map.get("argv") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => {
            let line = match args.str("cmd")? {
                Some(c) => c,
                None => args.req_str("_raw_params")?,
            };
            shlex::split(&line).ok_or_else(|| {
                TaskError::Failed(format!(
                    "command: cannot split {line:?} into words (unbalanced quotes?)"
                ))
            })?
        }
    };
    if words.is_empty() {
        return Err(TaskError::Failed("command: no command given".into()));
    }
    let script = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    execute(args, ctx, &script)
}

fn run_shell(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let script = match args.str("cmd")? {
        Some(c) => c,
        None => args.req_str("_raw_params")?,
    };
    let script = match args.str("executable")? {
        Some(sh) => format!("{} -c {}", shell_quote(&sh), shell_quote(&script)),
        None => script,
    };
    execute(args, ctx, &script)
}

fn execute(args: &Args, ctx: &mut ModuleCtx, script: &str) -> Result<Outcome, TaskError> {
    if let Some(creates) = args.str("creates")? {
        if super::util::exists(ctx.t, &creates, false)? {
            return Ok(Outcome::ok(format!("skipped, since {creates} exists")));
        }
    }
    if let Some(removes) = args.str("removes")? {
        if !super::util::exists(ctx.t, &removes, false)? {
            return Ok(Outcome::ok(format!(
                "skipped, since {removes} does not exist"
            )));
        }
    }
    if ctx.check {
        // As Ansible: with creates/removes the task would run, so it counts as changed;
        // without them nothing can be known, so it is skipped.
        let guarded = args.has("creates") || args.has("removes");
        return Ok(Outcome {
            changed: guarded,
            skipped: !guarded,
            msg: Some("Command would have run if not in check mode".into()),
            ..Outcome::default()
        });
    }
    let full = match args.str("chdir")? {
        Some(dir) => format!("cd {} && {{\n{script}\n}}", shell_quote(&dir)),
        None => script.to_string(),
    };
    let stdin = args.str("stdin")?.map(|s| s + "\n");
    let res = ctx.t.exec(&full, stdin.as_deref().map(str::as_bytes))?;
    let mut out = Outcome {
        changed: true,
        rc: Some(res.status),
        stdout: res.stdout_str().trim_end_matches('\n').to_string(),
        stderr: res.stderr_str().trim_end_matches('\n').to_string(),
        msg: None,
        ..Outcome::default()
    };
    if !res.success() {
        // A result, not an error: `failed_when` may still accept it, and `register` keeps rc.
        out.failed = Some(format!(
            "non-zero return code {}{}",
            res.status,
            if out.stderr.is_empty() {
                String::new()
            } else {
                format!(": {}", out.stderr)
            }
        ));
    }
    Ok(out)
}
