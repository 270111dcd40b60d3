//! `c1m check` against this machine and against real sshd hosts in network namespaces.

mod support;

use serde_json::Value;
use std::process::Command;
use support::Lab;

fn c1m() -> Command {
    Command::new(env!("CARGO_BIN_EXE_c1m"))
}

fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let out = c1m()
        .arg("check")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn blocking(plan: &Value) -> Vec<(String, String, String)> {
    plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| {
            h["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["blocks"] == true)
                .map(move |f| {
                    (
                        h["name"].as_str().unwrap().to_string(),
                        f["setting"].as_str().unwrap().to_string(),
                        f["fix"].as_str().unwrap().to_string(),
                    )
                })
        })
        .collect()
}

#[test]
fn this_machine_fits_a_modest_run_and_not_an_impossible_one() {
    let (code, plan) = check_json(&["-n", "100000"]);
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(plan["fits"], true);
    let h = &plan["hosts"][0];
    assert_eq!(h["role"], "server+client");
    assert_eq!(h["sockets"], 200000);

    // 2.5M connections: 5M sockets need a larger fs.file-max than Debian's default.
    let (code, plan) = check_json(&["-n", "2500000"]);
    assert_eq!(code, Some(3));
    let b = blocking(&plan);
    let fm = b
        .iter()
        .find(|(_, s, _)| s == "fs.file-max")
        .expect("fs.file-max blocks");
    assert_eq!(
        fm.2,
        "run `c1m provision` (or: sysctl -w fs.file-max=5108192)"
    );
}

#[test]
fn sshd_hosts_get_a_plan_per_host_with_fixes() {
    let Some(mut lab) = Lab::start("check_sshd_hosts", 4) else {
        return;
    };
    let dir = lab.dir.clone();
    let inv = dir.join("inventory.yml");
    std::fs::write(
        &inv,
        lab.inventory_yaml(&[("server", &[0]), ("clients", &[1, 2, 3])]),
    )
    .unwrap();
    let inv_s = inv.to_str().unwrap();
    let kh = lab.known_hosts.to_str().unwrap().to_string();

    // A modest run fits; the connections are split over the three clients.
    let (code, plan) = check_json(&["-i", inv_s, "--known-hosts", &kh, "-n", "30000"]);
    assert_eq!(code, Some(0), "{plan:#}");
    let hosts = plan["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert_eq!(hosts[0]["role"], "server");
    assert_eq!(hosts[0]["sockets"], 30000);
    let shares: Vec<u64> = hosts[1..]
        .iter()
        .map(|h| h["client_share"].as_u64().unwrap())
        .collect();
    assert_eq!(shares, vec![10000, 10000, 10000]);
    assert_eq!(hosts[1]["source_ips"][0], lab.hosts[1].address.as_str());
    // Facts come from inside each host's own network namespace.
    assert!(hosts[2]["facts"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == lab.hosts[2].address.as_str()));

    // 1.8M over three clients of one source IP each: each needs 2 IPs for 600,000 connections.
    let (code, plan) = check_json(&[
        "-i",
        inv_s,
        "--known-hosts",
        &kh,
        "-n",
        "1800000",
        "--ports",
        "20",
    ]);
    assert_eq!(code, Some(3));
    let b = blocking(&plan);
    for c in lab.hosts[1..].iter().map(|h| h.name.clone()) {
        let t = b
            .iter()
            .find(|(h, s, _)| *h == c && s.starts_with("4-tuples"))
            .unwrap_or_else(|| panic!("no 4-tuple finding for {c}: {b:?}"));
        let per_ip = 20 * local_ports_in(&lab, 1);
        let need = 600_000u64.div_ceil(per_ip);
        assert!(
            t.2.contains(&format!("at least {need} source IPs")),
            "{t:?}"
        );
    }
    // …and with enough source addresses given, that limit is gone.
    let extra = lab.add_addresses(1, 2);
    let with_ips = lab
        .inventory_yaml(&[("server", &[0]), ("clients", &[1])])
        .replace(
            &format!("ansible_host: {}\n", lab.hosts[1].address),
            &format!(
                "ansible_host: {}\n          c1m_source_ips: [{}]\n",
                lab.hosts[1].address,
                extra.join(", ")
            ),
        );
    std::fs::write(&inv, with_ips).unwrap();
    let (_, plan) = check_json(&["-i", inv_s, "--known-hosts", &kh, "-n", "600000"]);
    assert!(
        !blocking(&plan)
            .iter()
            .any(|(_, s, _)| s.starts_with("4-tuples")),
        "{plan:#}"
    );

    // An unreachable host is a blocking line of its own; the others are still checked.
    lab.hosts[3].stop();
    std::fs::write(
        &inv,
        lab.inventory_yaml(&[("server", &[0]), ("clients", &[1, 2, 3])]),
    )
    .unwrap();
    let (code, plan) = check_json(&["-i", inv_s, "--known-hosts", &kh, "-n", "30000"]);
    assert_eq!(code, Some(4));
    let b = blocking(&plan);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].0, lab.hosts[3].name);
    assert_eq!(b[0].1, "reachable");
    assert!(plan["hosts"][1]["facts"].is_object());
}

/// Source ports per (address, destination) inside a lab host's namespace.
fn local_ports_in(lab: &Lab, host: usize) -> u64 {
    let out = lab.hosts[host]
        .netns_cmd("cat")
        .arg("/proc/sys/net/ipv4/ip_local_port_range")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    v[1] - v[0] + 1
}
