//! `ansible.builtin.fail`: fails the task with `msg`.

use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.fail",
    short: "fail",
    args: &[arg("msg", Kind::Str)],
    required: &[],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn run(args: &Args, _ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    Ok(Outcome {
        failed: Some(
            args.str("msg")?
                .unwrap_or_else(|| "Failed as requested from task".into()),
        ),
        ..Outcome::default()
    })
}
