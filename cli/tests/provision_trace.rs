//! Round trips of `c1m provision --check playbooks/tune.yml` on four real sshd hosts, counted with
//! `C1M_TRACE`. A measurement, not a check: `cargo test --release --test provision_trace --
//! --ignored --nocapture`. `--check` because the lab hosts share this machine's files and kernel.

mod support;

use std::process::Command;
use std::time::Instant;
use support::Lab;

#[test]
#[ignore = "measurement: prints round trips per host"]
fn tune_check_round_trips_over_ssh() {
    let Some(lab) = Lab::start("provision_trace", 4) else {
        return;
    };
    let inv = lab.dir.join("inventory.yml");
    std::fs::write(
        &inv,
        lab.inventory_yaml(&[("server", &[0]), ("clients", &[1, 2, 3])]),
    )
    .expect("inventory");
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/tune.yml");
    for pass in 1..=2 {
        let trace = lab.dir.join(format!("trace{pass}.log"));
        let t0 = Instant::now();
        // C1M_TRACE_BIN: another build of c1m to compare with this one.
        let bin =
            std::env::var_os("C1M_TRACE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_c1m").into());
        let out = Command::new(bin)
            .env("C1M_TRACE", &trace)
            .arg("provision")
            .arg("-i")
            .arg(&inv)
            .arg("--known-hosts")
            .arg(&lab.known_hosts)
            .arg("--check")
            .arg(&book)
            .output()
            .expect("c1m runs");
        let secs = t0.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        println!("pass {pass}: {secs:.2} s, exit {:?}", out.status.code());
        for l in text.lines().filter(|l| l.contains(" TOTAL ")) {
            println!("  {l}");
        }
        if pass == 1 {
            println!("{}", String::from_utf8_lossy(&out.stdout));
            let first = format!("{} ", lab.hosts[0].name);
            for l in text.lines().filter(|l| l.starts_with(&first)) {
                println!("    {l}");
            }
        }
    }
}
