//! The facts a tuning playbook needs, gathered with one command (no Python on the host) and named
//! as Ansible names them, both as `ansible_facts.NAME` and as `ansible_NAME`. Nothing here may
//! touch the network (no `hostname -f`: a host without DNS would stall every run).

use c1m_transport::{Transport, TransportError};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

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

type Raw = BTreeMap<String, String>;

/// Gathers facts; a host that cannot run the probe at all is an error of the transport.
pub fn gather(t: &mut dyn Transport) -> Result<Map<String, Value>, TransportError> {
    let raw = match from_files(t) {
        Some(raw) => raw,
        None => probe(t)?,
    };
    Ok(facts(&raw))
}

fn probe(t: &mut dyn Transport) -> Result<Raw, TransportError> {
    let out = t.exec(PROBE, None)?;
    let mut raw = Raw::new();
    for line in out.stdout_str().lines() {
        if let Some((k, v)) = line.split_once('=') {
            raw.insert(k.to_string(), v.trim().to_string());
        }
    }
    Ok(raw)
}

/// What [`PROBE`] prints, read from the files its programs read, when the transport reads files
/// without starting a program (SFTP, this machine): on a slow host the probe's shell and its
/// subprocesses cost over a second. `None` (use the probe) when the transport cannot, when a
/// file is missing or unreadable, or when a value needs a program to be sure (a user only NSS
/// knows, an os-release that uses shell syntax beyond quoting).
fn from_files(t: &mut dyn Transport) -> Option<Raw> {
    // `lstat` answers exactly when file operations are cheap; it also is the probe's
    // `[ -d /run/systemd/system ]` (a symlink there is left to the shell to follow).
    let service_mgr = match t.lstat("/run/systemd/system")?.ok()? {
        Some(m) if m.is_dir => "systemd".to_string(),
        Some(m) if m.is_file => text(t, "/proc/1/comm")?,
        Some(_) => return None,
        None => text(t, "/proc/1/comm")?,
    };
    let mut raw = Raw::new();
    let mut put = |k: &str, v: &str| {
        raw.insert(k.to_string(), v.trim().to_string());
    };
    put("service_mgr", &service_mgr);
    put("kernel", &text(t, "/proc/sys/kernel/osrelease")?);
    // `uname -m`; a kernel without this file (older ones) takes the probe.
    put("arch", &text(t, "/proc/sys/kernel/arch")?);
    put("hostname", &text(t, "/proc/sys/kernel/hostname")?);
    // What glibc's getconf _NPROCESSORS_ONLN counts.
    put(
        "vcpus",
        &count_cpus(&text(t, "/sys/devices/system/cpu/online")?)?.to_string(),
    );
    let meminfo = c1m_proto::procfs::parse_meminfo(&text(t, "/proc/meminfo")?);
    let kb = |name: &str| meminfo.get(name).map(|b| (b / 1024).to_string());
    put("memtotal_kb", &kb("MemTotal")?);
    put("memfree_kb", &kb("MemAvailable")?);
    match t.read_file("/etc/os-release").ok()? {
        None => {}
        Some(bytes) => {
            let vars = os_release(&String::from_utf8_lossy(&bytes))?;
            let var = |k: &str| vars.get(k).cloned().unwrap_or_default();
            put("distribution", &var("NAME"));
            put("os_id", &var("ID"));
            put("distribution_version", &var("VERSION_ID"));
        }
    }
    put("user_id", &user_name(t)?);
    Some(raw)
}

/// A file's text; `None` when it is missing or cannot be read.
fn text(t: &mut dyn Transport, path: &str) -> Option<String> {
    let bytes = t.read_file(path).ok()??;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// CPUs in a kernel CPU list such as `0-3,6`.
fn count_cpus(list: &str) -> Option<u64> {
    let mut n = 0;
    for part in list.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u64>().ok()?.checked_sub(a.parse::<u64>().ok()?)? + 1,
            None => {
                part.parse::<u64>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// The variables of an os-release file as `. /etc/os-release` sets them; `None` when anything
/// needs a shell to be sure (expansions, escapes, other commands).
fn os_release(text: &str) -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=')?;
        let name_ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return None;
        }
        let value = if let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            if inner.contains(['"', '\\', '$', '`']) {
                return None;
            }
            inner
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            if inner.contains('\'') {
                return None;
            }
            inner
        } else {
            if v.contains(|c: char| !(c.is_ascii_alphanumeric() || "._-/:+,@%".contains(c))) {
                return None;
            }
            v
        };
        vars.insert(k.to_string(), value.to_string());
    }
    Some(vars)
}

/// `id -un`: the effective user of the process reading the files (SFTP's server runs as the
/// user commands run as whenever SFTP is used), named by /etc/passwd.
fn user_name(t: &mut dyn Transport) -> Option<String> {
    let status = text(t, "/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    let passwd = text(t, "/etc/passwd")?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
    })
}

fn facts(raw: &Raw) -> Map<String, Value> {
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
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use c1m_transport::local::LocalTransport;
    use c1m_transport::Become;

    #[test]
    fn cpu_lists_and_os_release_parse_as_the_shell_does() {
        assert_eq!(count_cpus("0-3,6\n"), Some(5));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("x"), None);
        let v = os_release("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\n")
            .expect("plain os-release");
        assert_eq!(v["NAME"], "Debian GNU/Linux");
        assert_eq!(v["ID"], "debian");
        assert_eq!(v["VERSION_ID"], "12");
        assert!(os_release("NAME=\"$(reboot)\"\n").is_none());
        assert!(os_release("NAME=a b\n").is_none());
    }

    #[test]
    fn facts_from_files_equal_the_probes() {
        let mut t = LocalTransport::new("localhost", &Become::default());
        let Some(files) = from_files(&mut t) else {
            // A kernel without /proc/sys/kernel/arch: only the probe applies.
            return;
        };
        let probe = probe(&mut t).expect("probe runs");
        let mut files = files;
        let mut probe = probe;
        // Free memory moves between the two reads.
        files.remove("memfree_kb");
        probe.remove("memfree_kb");
        assert_eq!(files, probe);
    }
}
