//! The facts a tuning playbook needs, gathered with one command (no Python on the host) and named
//! as Ansible names them, both as `ansible_facts.NAME` and as `ansible_NAME`. Nothing here may
//! touch the network (no `hostname -f`: a host without DNS would stall every run).

use crate::transport::{Transport, TransportError};
use serde_json::{json, Map, Value};

const PROBE: &str = r#"echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
echo "vcpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
echo "memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "memfree_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "distribution=$NAME"; echo "os_id=$ID"; echo "distribution_version=$VERSION_ID"; fi
if [ -d /run/systemd/system ]; then echo service_mgr=systemd; else echo "service_mgr=$(cat /proc/1/comm 2>/dev/null)"; fi
echo "user_id=$(id -un)"
"#;

/// Gathers facts; a host that cannot run the probe at all is an error of the transport.
pub fn gather(t: &mut dyn Transport) -> Result<Map<String, Value>, TransportError> {
    let out = t.exec(PROBE, None)?;
    let mut raw = std::collections::BTreeMap::new();
    for line in out.stdout_str().lines() {
        if let Some((k, v)) = line.split_once('=') {
            raw.insert(k.to_string(), v.trim().to_string());
        }
    }
    let get = |k: &str| raw.get(k).cloned().unwrap_or_default();
    let num = |k: &str| raw.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let distribution = match get("os_id").as_str() {
        "debian" => "Debian".to_string(),
        "ubuntu" => "Ubuntu".to_string(),
        _ => get("distribution"),
    };
    let mut facts = Map::new();
    facts.insert("kernel".into(), json!(get("kernel")));
    facts.insert("architecture".into(), json!(get("arch")));
    facts.insert(
        "hostname".into(),
        json!(get("hostname").split('.').next().unwrap_or_default()),
    );
    facts.insert("nodename".into(), json!(get("hostname")));
    facts.insert("processor_vcpus".into(), json!(num("vcpus")));
    facts.insert("processor_nproc".into(), json!(num("vcpus")));
    facts.insert("memtotal_mb".into(), json!(num("memtotal_kb") / 1024));
    facts.insert("memfree_mb".into(), json!(num("memfree_kb") / 1024));
    facts.insert("distribution".into(), json!(distribution));
    facts.insert(
        "distribution_version".into(),
        json!(get("distribution_version")),
    );
    facts.insert(
        "os_family".into(),
        json!(if matches!(get("os_id").as_str(), "debian" | "ubuntu") {
            "Debian"
        } else {
            "Linux"
        }),
    );
    facts.insert("service_mgr".into(), json!(get("service_mgr")));
    facts.insert("user_id".into(), json!(get("user_id")));
    facts.insert("system".into(), json!("Linux"));
    Ok(facts)
}
