//! `c1m lab status` and `c1m lab ssh NAME`.

use super::layout::{Paths, Role};
use super::{netns, probe, qemu, state};
use anyhow::{bail, Result};
use std::process::Command;

pub fn status(paths: &Paths) -> Result<u8> {
    let Some(st) = state::load(&paths.state())? else {
        println!("lab: not up (no {})", paths.state().display());
        return Ok(1);
    };
    println!(
        "lab: {:?}, network namespace {} {}",
        st.accel,
        super::layout::NETNS,
        if netns::exists() {
            "present"
        } else {
            "MISSING"
        }
    );
    println!(
        "{:<6} {:<7} {:<13} {:>9} {:>9} {:>8}  SSH",
        "NAME", "ROLE", "ADDRESS", "MEMORY", "RSS", "PID"
    );
    let mut all_ok = netns::exists();
    for vm in &st.vms {
        let alive = qemu::is_lab_qemu(vm.pid, &paths.vms_dir());
        let rss = if alive { qemu::rss_mib(vm.pid) } else { None };
        let ssh = alive && probe::banner(&vm.spec);
        all_ok &= alive && ssh;
        println!(
            "{:<6} {:<7} {:<13} {:>5} MiB {:>9} {:>8}  {}",
            vm.spec.name,
            match vm.spec.role {
                Role::Server => "server",
                Role::Client => "client",
            },
            vm.spec.addr.to_string(),
            vm.spec.mem_mib,
            rss.map(|r| format!("{r} MiB"))
                .unwrap_or_else(|| "-".into()),
            if alive {
                vm.pid.to_string()
            } else {
                "dead".into()
            },
            if ssh { "up" } else { "down" }
        );
    }
    Ok(if all_ok { 0 } else { 1 })
}

pub fn ssh(paths: &Paths, name: &str, command: &[String]) -> Result<u8> {
    let Some(st) = state::load(&paths.state())? else {
        bail!(
            "the lab is not up (no {}); run `c1m lab up`",
            paths.state().display()
        );
    };
    let Some(vm) = st.vms.iter().find(|v| v.spec.name == name) else {
        let names: Vec<&str> = st.vms.iter().map(|v| v.spec.name.as_str()).collect();
        bail!(
            "no VM named {name:?} in the lab (it has {})",
            names.join(", ")
        );
    };
    let status = Command::new("ssh")
        .args(probe::ssh_args(
            &vm.spec,
            &paths.key(),
            &paths.known_hosts(),
        ))
        .args(command)
        .status()?;
    // ssh's own exit code (255 for its errors, else the remote command's).
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(255))
}
