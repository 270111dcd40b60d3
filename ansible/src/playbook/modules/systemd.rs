//! `ansible.builtin.systemd` (and `systemd_service`): `daemon_reload`, and a unit's `state` and
//! `enabled`, each changed only when it differs.

use super::util::run_ok;
use super::{arg, arg_alias, Args, Diff, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

const ARGS: &[super::ArgSpec] = &[
    arg_alias("name", Kind::Str, &["service", "unit"]),
    arg(
        "state",
        Kind::Choice(&["started", "stopped", "restarted", "reloaded"]),
    ),
    arg("enabled", Kind::Bool),
    arg_alias("daemon_reload", Kind::Bool, &["daemon-reload"]),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.systemd",
    short: "systemd",
    args: ARGS,
    required: &[],
    one_of: &["name", "daemon_reload"],
    free_form: false,
    any_args: false,
    run,
};

pub static SYSTEMD_SERVICE: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.systemd_service",
    short: "systemd_service",
    args: ARGS,
    required: &[],
    one_of: &["name", "daemon_reload"],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let mut out = Outcome::default();
    let mut notes = Vec::new();
    if args.bool("daemon_reload", false)? {
        if !ctx.check {
            run_ok(ctx.t, "systemctl daemon-reload", "systemctl daemon-reload")?;
        }
        // As ansible.builtin.systemd: a reload alone changes no state, so it reports ok and
        // the two engines' recaps agree.
        notes.push("daemon reloaded".to_string());
    }
    let Some(name) = args.str("name")? else {
        out.msg = Some(notes.join("; "));
        return Ok(out);
    };
    let unit = shell_quote(&name);
    if let Some(state) = args.str("state")? {
        let active = ctx
            .t
            .exec(&format!("systemctl is-active --quiet {unit}"), None)?
            .success();
        let verb = match (state.as_str(), active) {
            ("started", false) => Some("start"),
            ("stopped", true) => Some("stop"),
            ("restarted", _) => Some("restart"),
            ("reloaded", _) => Some(if active { "reload" } else { "start" }),
            _ => None,
        };
        if let Some(verb) = verb {
            out.changed = true;
            out.diffs.push(Diff {
                label: format!("{name} state"),
                before: format!("{}\n", if active { "active" } else { "inactive" }),
                after: format!("{state}\n"),
            });
            if !ctx.check {
                run_ok(
                    ctx.t,
                    &format!("systemctl {verb} {unit}"),
                    &format!("systemctl {verb} {name}"),
                )?;
            }
            notes.push(format!("{verb} {name}"));
        }
    }
    if args.has("enabled") {
        let want = args.bool("enabled", false)?;
        let is = ctx
            .t
            .exec(&format!("systemctl is-enabled --quiet {unit}"), None)?
            .success();
        if want != is {
            out.changed = true;
            let verb = if want { "enable" } else { "disable" };
            if !ctx.check {
                run_ok(
                    ctx.t,
                    &format!("systemctl {verb} {unit}"),
                    &format!("systemctl {verb} {name}"),
                )?;
            }
            notes.push(format!("{verb} {name}"));
        }
    }
    out.msg = Some(notes.join("; "));
    Ok(out)
}
