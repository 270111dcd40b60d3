//! Readings from /proc that the binaries and the orchestrator both take: RSS, /proc/meminfo,
//! /proc/net/sockstat, and what a process is (its children, its arguments, whether it still
//! runs). Parsers take text so the orchestrator can parse a remote host's files.

use std::collections::BTreeMap;

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

/// Threads of this process (`Threads:` of /proc/self/status).
pub fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// `/proc/meminfo` as bytes by key (`MemFree`, `Slab`, …).
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut it = rest.split_whitespace();
            let v: u64 = it.next()?.parse().ok()?;
            let mult = if it.next() == Some("kB") { 1024 } else { 1 };
            Some((key.trim().to_string(), v * mult))
        })
        .collect()
}

/// `/proc/net/sockstat` as `PROTO.field` → value, e.g. `TCP.inuse`, `TCP.mem` (pages),
/// `sockets.used`.
pub fn parse_sockstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.chunks(2) {
            if let [k, v] = pair {
                if let Ok(v) = v.parse() {
                    out.insert(format!("{proto}.{k}"), v);
                }
            }
        }
    }
    out
}

/// Reads and parses a local /proc file with one of the parsers above; empty on failure.
pub fn read_with(path: &str, parse: fn(&str) -> BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The children of `pid` not yet reaped, whichever of its threads started them (each thread's
/// `/proc/PID/task/TID/children` lists its own).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            let pids: Vec<u32> = text
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            pids
        })
        .collect()
}

/// The arguments `pid` was started with, without the program name.
pub fn argv(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The arguments of `child`, a process `parent` forked to exec itself again (a worker), once
/// it has: between fork and exec the child still shows its parent's arguments. Waits up to
/// `within`; after that, whatever the child shows.
pub fn argv_once_execed(child: u32, parent: u32, within: std::time::Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    let theirs = argv(parent);
    loop {
        let mine = argv(child);
        if mine != theirs || std::time::Instant::now() > deadline {
            return mine;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `pid` still runs: one that exited and waits to be reaped (a zombie) does not.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the command name, which is in parentheses and may hold anything.
        let state = s.rsplit_once(')').map_or("", |(_, rest)| rest.trim_start());
        !state.starts_with('Z')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_files() {
        let m = read_with("/proc/meminfo", parse_meminfo);
        assert!(m["MemTotal"] > 0 && m.contains_key("Slab"));
        let s = read_with("/proc/net/sockstat", parse_sockstat);
        assert!(s.contains_key("TCP.inuse") && s.contains_key("TCP.mem"));
        assert!(rss_bytes() > 0);
        assert!(threads() >= 1);
    }

    #[test]
    fn a_child_is_seen_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .args(["30", "0.5"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Started by this test's thread, not the main one.
        assert!(children(std::process::id()).contains(&pid));
        // Until the exec, the child's arguments are still ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while argv(pid) != ["30", "0.5"] && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(argv(pid), ["30", "0.5"]);
        assert!(alive(pid));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!alive(pid), "a zombie does not run");
        child.wait().unwrap();
        assert!(!alive(pid) && argv(pid).is_empty());
    }
}
