//! `ansible.builtin.wait_for_connection`: waits until the host answers over a fresh
//! connection (after a reboot or an sshd restart), with Ansible's `timeout`, `delay`, `sleep`
//! and `connect_timeout`. The host keeps the connection that answered.

use super::{arg, Args, Kind, ModuleCtx, ModuleSpec, Outcome, TaskError};
use std::time::{Duration, Instant};

pub static SPEC: ModuleSpec = ModuleSpec {
    fqcn: "ansible.builtin.wait_for_connection",
    short: "wait_for_connection",
    args: &[
        arg("timeout", Kind::Int),
        arg("delay", Kind::Int),
        arg("sleep", Kind::Int),
        arg("connect_timeout", Kind::Int),
    ],
    required: &[],
    one_of: &[],
    free_form: false,
    any_args: false,
    run,
};

fn secs(args: &Args, name: &str, default: u64) -> Result<Duration, TaskError> {
    let v = match args.map.get(name) {
        None | Some(serde_json::Value::Null) => default,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                TaskError::Failed(format!("wait_for_connection: {name}: expected seconds"))
            })?,
    };
    Ok(Duration::from_secs(v))
}

fn run(args: &Args, ctx: &mut ModuleCtx) -> Result<Outcome, TaskError> {
    let timeout = secs(args, "timeout", 600)?;
    let delay = secs(args, "delay", 0)?;
    let sleep = secs(args, "sleep", 1)?.max(Duration::from_millis(100));
    if ctx.check {
        return Ok(Outcome::ok("would wait for the connection"));
    }
    let start = Instant::now();
    std::thread::sleep(delay);
    // The connection the task has may still work (nothing restarted).
    if ctx.t.exec("true", None).is_ok_and(|o| o.success()) {
        return Ok(answered(start));
    }
    let Some(connect) = ctx.connect else {
        return Err(TaskError::Failed(
            "wait_for_connection: cannot reconnect here".into(),
        ));
    };
    let mut last = String::from("no attempt");
    while start.elapsed() < timeout {
        match connect() {
            Ok(mut fresh) => match fresh.exec("true", None) {
                Ok(o) if o.success() => {
                    *ctx.replacement = Some(fresh);
                    return Ok(answered(start));
                }
                Ok(o) => last = format!("exit status {}", o.status),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(sleep);
    }
    Err(TaskError::Failed(format!(
        "timed out waiting for connection after {}s: {last}",
        timeout.as_secs()
    )))
}

fn answered(start: Instant) -> Outcome {
    let mut o = Outcome::ok(format!(
        "connected after {:.0}s",
        start.elapsed().as_secs_f64()
    ));
    o.extra.insert(
        "elapsed".into(),
        serde_json::json!(start.elapsed().as_secs()),
    );
    o
}
