//! `ansible.builtin.service`: a service's `state` and `enabled`. On systemd hosts it is
//! `ansible.builtin.systemd` (as Ansible's service module picks the systemd backend there);
//! elsewhere `state` goes through the `service` command and `enabled` is refused.

use super::util::run_ok;
use super::{arg, arg_alias, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use c1m_transport::shell_quote;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.service",
    short: "service",
    args: &[
        arg("name", Kind::Str),
        arg(
            "state",
            Kind::Choice(&["started", "stopped", "restarted", "reloaded"]),
        ),
        arg("enabled", Kind::Bool),
        arg("sleep", Kind::Int),
        arg("pattern", Kind::Str),
        arg("runlevel", Kind::Str),
        arg_alias("arguments", Kind::Str, &["args"]),
        arg("use", Kind::Str),
    ],
    required: &["name"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    for unsupported in ["pattern", "runlevel", "arguments"] {
        if args.has(unsupported) {
            return Err(TaskError::Failed(format!(
                "service: c1m does not support `{unsupported}`"
            )));
        }
    }
    let backend = args.str_or("use", "auto")?;
    let systemd = match backend.as_str() {
        "systemd" => true,
        "auto" => super::util::exists(ctx.t, "/run/systemd/system", true)?,
        "service" | "sysvinit" => false,
        other => {
            return Err(TaskError::Failed(format!(
                "service: use={other} is not a backend c1m has"
            )))
        }
    };
    if systemd {
        let mut a = args.clone();
        a.map
            .retain(|k, _| matches!(k.as_str(), "name" | "state" | "enabled"));
        return (super::systemd::SPEC.run)(&a, ctx);
    }
    if args.has("enabled") {
        return Err(TaskError::Failed(
            "service: `enabled` needs systemd on the host (c1m manages no init-script links)"
                .into(),
        ));
    }
    let name = args.req_str("name")?;
    let q = shell_quote(&name);
    let mut out = Outcome::ok(name.clone());
    if let Some(state) = args.str("state")? {
        let running = ctx.t.exec(&format!("service {q} status"), None)?.success();
        let verb = match (state.as_str(), running) {
            ("started", false) => Some("start"),
            ("stopped", true) => Some("stop"),
            ("restarted", _) => Some("restart"),
            ("reloaded", _) => Some("reload"),
            _ => None,
        };
        if let Some(verb) = verb {
            out.changed = true;
            if !ctx.check {
                run_ok(
                    ctx.t,
                    &format!("service {q} {verb}"),
                    &format!("service {name} {verb}"),
                )?;
            }
            out.msg = Some(format!("{verb} {name}"));
        }
    }
    Ok(out)
}
