//! Host patterns as inventories write them: ranges (`cli[1:3]`, `web[01:50]`, `db-[a:f]`,
//! `h[0:10:2]`, several in one name) and a trailing `:port`, expanded as Ansible's
//! `expand_hostname_range` and `parse_address` do.

/// Most hosts one pattern may name: a typo such as `h[0:99999999]` is an error, not a hang.
pub const MAX_HOSTS: usize = 100_000;

/// The host names `pattern` stands for and the port it names, if any.
pub fn expand(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (name, port) = split_port(pattern)?;
    if name.is_empty() {
        return Err(format!("host pattern {pattern:?} names no host"));
    }
    let mut out = Vec::new();
    expand_into(name, &mut out)?;
    Ok((out, port))
}

/// `host:port` (the last `:` outside brackets, digits after it); a name with more colons outside
/// brackets is an IPv6 address without a port.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [] => Ok((pattern, None)),
        [i] => {
            let port = &pattern[i + 1..];
            if port.is_empty() {
                return Err(format!(
                    "host pattern {pattern:?} ends in `:`, which is reserved for a port"
                ));
            }
            let n: u16 =
                port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("host pattern {pattern:?}: port {port:?} is not 1-65535")
                })?;
            Ok((&pattern[..*i], Some(n)))
        }
        _ => Ok((pattern, None)),
    }
}

fn expand_into(name: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = name.find('[') else {
        if out.len() >= MAX_HOSTS {
            return Err(format!("a host pattern names more than {MAX_HOSTS} hosts"));
        }
        out.push(name.to_string());
        return Ok(());
    };
    let close = name[open..]
        .find(']')
        .map(|c| open + c)
        .ok_or_else(|| format!("host range in {name:?} has no closing `]`"))?;
    let (head, range, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let bounds: Vec<&str> = range.split(':').collect();
    let (beg, end, step) = match bounds.as_slice() {
        [b, e] => (*b, *e, "1"),
        [b, e, s] => (*b, *e, *s),
        _ => {
            return Err(format!(
                "host range [{range}] must be begin:end or begin:end:step"
            ))
        }
    };
    let beg = if beg.is_empty() { "0" } else { beg };
    if end.is_empty() {
        return Err(format!("host range [{range}] must give its end"));
    }
    let step: usize =
        step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("host range [{range}]: step {step:?} is not a positive number")
        })?;
    let items: Vec<String> = if let (Some(b), Some(e)) = (letter(beg), letter(end)) {
        if b > e {
            return Err(format!("host range [{range}] must have begin <= end"));
        }
        (b..=e)
            .step_by(step)
            .map(|i| (LETTERS[i] as char).to_string())
            .collect()
    } else {
        let b: u64 = beg
            .parse()
            .map_err(|_| format!("host range [{range}]: {beg:?} is not a number or a letter"))?;
        let e: u64 = end
            .parse()
            .map_err(|_| format!("host range [{range}]: {end:?} is not a number or a letter"))?;
        let width = if beg.len() > 1 && beg.starts_with('0') {
            if beg.len() != end.len() {
                return Err(format!(
                    "host range [{range}] must give begin and end with the same number of digits"
                ));
            }
            beg.len()
        } else {
            0
        };
        if e >= b && (e - b) as usize / step >= MAX_HOSTS {
            return Err(format!(
                "host range [{range}] names more than {MAX_HOSTS} hosts"
            ));
        }
        (b..=e)
            .step_by(step)
            .map(|i| format!("{i:0width$}"))
            .collect()
    };
    for item in items {
        expand_into(&format!("{head}{item}{tail}"), out)?;
    }
    Ok(())
}

/// Python's `string.ascii_letters`, the alphabet of letter ranges.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn letter(s: &str) -> Option<usize> {
    (s.len() == 1)
        .then(|| LETTERS.iter().position(|&c| c == s.as_bytes()[0]))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> Vec<String> {
        expand(p).unwrap().0
    }

    #[test]
    fn ranges_expand_as_ansible_does() {
        assert_eq!(
            names("cli[1:3].example"),
            ["cli1.example", "cli2.example", "cli3.example"]
        );
        assert_eq!(names("w[08:10]"), ["w08", "w09", "w10"]);
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(names("h[0:6:3]"), ["h0", "h3", "h6"]);
        assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert_eq!(names("[:1]x"), ["0x", "1x"]);
        assert_eq!(
            expand("h[1:2]:2222").unwrap(),
            (vec!["h1".into(), "h2".into()], Some(2222))
        );
        assert_eq!(expand("10.0.0.1:22").unwrap().1, Some(22));
        assert_eq!(expand("fe80::1").unwrap(), (vec!["fe80::1".into()], None));
    }

    #[test]
    fn bad_ranges_say_why() {
        for (p, why) in [
            ("h[1:3", "no closing"),
            ("h[1]", "begin:end"),
            ("h[1:]", "end"),
            ("h[01:100]", "same number of digits"),
            ("h[c:a]", "begin <= end"),
            ("h[1:x]", "not a number"),
            ("h[1:4:0]", "step"),
            ("h:", "reserved for a port"),
            ("h:99999", "1-65535"),
            ("h[0:99999999]", "more than"),
            ("a[0:999]b[0:999]", "more than"),
        ] {
            let e = expand(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
