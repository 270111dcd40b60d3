//! The lab network: a bridge inside a namespace of its own (no uplink, so nothing leaves the lab
//! subnet), one tap per VM on it, and a veth from the root namespace so the controller reaches
//! the VMs at their addresses from its own namespace.

use super::exec::{run, succeeds};
use super::layout::{VmSpec, BRIDGE, HOST_ADDR, NETNS, PREFIX_LEN, VETH_HOST, VETH_LAB};
use anyhow::{Context, Result};
use std::process::Command;

fn ip() -> Command {
    Command::new("ip")
}

/// Whether the lab namespace exists.
pub fn exists() -> bool {
    std::path::Path::new("/run/netns").join(NETNS).exists()
}

/// Creates the namespace, bridge, veth and taps. Expects none of them to exist.
pub fn create(vms: &[VmSpec]) -> Result<()> {
    run(ip().args(["netns", "add", NETNS]))?;
    let steps: Vec<Vec<String>> = {
        let mut s: Vec<Vec<String>> = vec![
            vec!["-n", NETNS, "link", "set", "lo", "up"],
            vec!["-n", NETNS, "link", "add", BRIDGE, "type", "bridge"],
            vec!["-n", NETNS, "link", "set", BRIDGE, "up"],
            vec![
                "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_LAB, "netns", NETNS,
            ],
            vec!["-n", NETNS, "link", "set", VETH_LAB, "master", BRIDGE, "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        s.push(vec![
            "addr".into(),
            "add".into(),
            format!("{HOST_ADDR}/{PREFIX_LEN}"),
            "dev".into(),
            VETH_HOST.into(),
        ]);
        s.push(["link", "set", VETH_HOST, "up"].map(String::from).to_vec());
        for vm in vms {
            let tap = vm.tap();
            s.push(
                ["-n", NETNS, "tuntap", "add", "dev", &tap, "mode", "tap"]
                    .map(String::from)
                    .to_vec(),
            );
            s.push(
                ["-n", NETNS, "link", "set", &tap, "master", BRIDGE, "up"]
                    .map(String::from)
                    .to_vec(),
            );
        }
        s
    };
    for step in steps {
        run(ip().args(&step)).context("setting up the lab network")?;
    }
    Ok(())
}

/// Deletes the namespace (and with it the bridge, taps and the veth pair). Idempotent.
pub fn destroy() -> Result<()> {
    if exists() {
        run(ip().args(["netns", "del", NETNS]))?;
    }
    // The root-side veth normally dies with its peer; after a half-finished `up` it may not.
    if succeeds(ip().args(["link", "show", VETH_HOST])) {
        run(ip().args(["link", "del", VETH_HOST]))?;
    }
    Ok(())
}
