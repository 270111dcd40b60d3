//! Readings from /proc that the binaries and the orchestrator both take: RSS, /proc/meminfo,
//! /proc/net/sockstat. Parsers take text so the orchestrator can parse a remote host's files.

use std::collections::BTreeMap;

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size())
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
    }
}
