//! `ansible.builtin.set_fact`: variables for the host's later tasks (and plays), above play
//! vars as in Ansible. Any variable name is an argument; `cacheable` is accepted (c1m keeps no
//! fact cache between runs).

use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.set_fact",
    short: "set_fact",
    args: &[arg("cacheable", Kind::Bool)],
    required: &[],
    one_of: &[],
    free_form: false,
    any_args: true,
    run,
};

fn run(args: &Args, _ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let mut out = Outcome::default();
    for (k, v) in &args.map {
        if k != "cacheable" {
            out.facts.insert(k.clone(), v.clone());
        }
    }
    if out.facts.is_empty() {
        return Err(TaskError::Failed(
            "set_fact: no variables given (key=value or a mapping)".into(),
        ));
    }
    Ok(out)
}
