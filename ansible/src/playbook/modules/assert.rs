//! `ansible.builtin.assert`: conditions that must all hold (`that`), with Ansible's
//! `fail_msg`/`msg`, `success_msg` and `quiet`.

use super::{arg, arg_alias, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use minijinja::Value as JValue;
use serde_json::Value as Json;

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.assert",
    short: "assert",
    args: &[
        arg("that", Kind::Any),
        arg_alias("fail_msg", Kind::Str, &["msg"]),
        arg("success_msg", Kind::Str),
        arg("quiet", Kind::Bool),
    ],
    required: &["that"],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let conditions: Vec<String> = match args.map.get("that") {
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| match i {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Bool(b)) => vec![b.to_string()],
        other => {
            return Err(TaskError::Failed(format!(
                "assert: that: expected a condition or a list of them, got {}",
                other.map_or("nothing".into(), |o| o.to_string())
            )))
        }
    };
    let vars = JValue::from_serialize(ctx.vars);
    for cond in &conditions {
        let held = ctx
            .templar
            .eval_condition(cond, &vars)
            .map_err(TaskError::Failed)?;
        if !held {
            let mut out = Outcome {
                failed: Some(
                    args.str("fail_msg")?
                        .unwrap_or_else(|| "Assertion failed".to_string()),
                ),
                ..Outcome::default()
            };
            out.extra
                .insert("assertion".into(), Json::String(cond.clone()));
            out.extra.insert("evaluated_to".into(), Json::Bool(false));
            return Ok(out);
        }
    }
    Ok(Outcome::ok(
        args.str("success_msg")?
            .unwrap_or_else(|| "All assertions passed".to_string()),
    ))
}
