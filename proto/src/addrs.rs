//! Source addresses as the command line and inventories give them (`A`, or an inclusive range
//! `A-B`), and the local port range that bounds each (source IP, server port) pair. Both the
//! client and the orchestrator's preflight read them, so they read them the same way.

use std::net::Ipv4Addr;

/// Expands `A` and `A-B` items into addresses.
pub fn expand_ips(items: &[String]) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let parse = |s: &str| -> Result<Ipv4Addr, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("`{s}` in --source-ips is not an IPv4 address"))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if b < a || b - a > 65_535 {
                    return Err(format!(
                        "`{item}`: the range must go up and span at most 65,536 addresses"
                    ));
                }
                out.extend((a..=b).map(Ipv4Addr::from));
            }
            None => out.push(parse(item)?),
        }
    }
    Ok(out)
}

/// The local ports the kernel hands out for connect (`net.ipv4.ip_local_port_range`), or
/// Linux's default range when it cannot be read.
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            let lo = it.next()??;
            let hi = it.next()??;
            (lo <= hi).then_some((lo, hi))
        })
        .unwrap_or((32_768, 60_999))
}

/// How many local ports that is.
pub fn local_port_count() -> u64 {
    let (lo, hi) = local_port_range();
    u64::from(hi - lo) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand() {
        let v = expand_ips(&["127.0.0.2-127.0.0.4".into(), "10.0.0.1".into()]).unwrap();
        assert_eq!(v.len(), 4);
        assert!(expand_ips(&["127.0.0.9-127.0.0.1".into()]).is_err());
        assert!(expand_ips(&["nope".into()]).is_err());
    }

    #[test]
    fn the_local_port_range_counts_both_ends() {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let v: Vec<u64> = text
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(local_port_count(), v[1] - v[0] + 1);
    }
}
