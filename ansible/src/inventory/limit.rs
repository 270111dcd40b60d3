//! Host patterns as in Ansible's `hosts:` and `--limit`: names of hosts or groups separated by
//! `,` or `:`, `*` wildcards, `all`, `!excluded` and `&required` terms.

use super::Inventory;

fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && wildcard_match(rest, &tail[i..]))
        }
    }
}

/// Hosts (in inventory order) named by `term`: a host name, a group name, or a wildcard of either.
fn hosts_of_term<'a>(inv: &'a Inventory, term: &str) -> Vec<&'a str> {
    inv.hosts
        .iter()
        .filter(|h| {
            term == "all"
                || wildcard_match(term, &h.name)
                || h.groups.iter().any(|g| wildcard_match(term, g))
        })
        .map(|h| h.name.as_str())
        .collect()
}

/// The hosts `pattern` selects, in inventory order. A term that matches nothing is an error: it is
/// almost always a typo, and running on fewer hosts than meant is worse than stopping.
pub fn select<'a>(inv: &'a Inventory, pattern: &str) -> Result<Vec<&'a str>, String> {
    let mut included: Option<Vec<&str>> = None;
    let mut required: Vec<Vec<&str>> = Vec::new();
    let mut excluded: Vec<&str> = Vec::new();
    for raw in pattern
        .split([',', ':'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (kind, term) = match raw.as_bytes()[0] {
            b'!' => ('!', &raw[1..]),
            b'&' => ('&', &raw[1..]),
            _ => ('+', raw),
        };
        let hosts = hosts_of_term(inv, term);
        if hosts.is_empty() && kind != '!' {
            return Err(format!(
                "pattern {pattern:?}: `{term}` matches no host or group of {}",
                inv.source
            ));
        }
        match kind {
            '!' => excluded.extend(hosts),
            '&' => required.push(hosts),
            _ => included.get_or_insert_with(Vec::new).extend(hosts),
        }
    }
    let included = included.unwrap_or_default();
    Ok(inv
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .filter(|h| included.contains(h))
        .filter(|h| !excluded.contains(h))
        .filter(|h| required.iter().all(|r| r.contains(h)))
        .collect())
}
