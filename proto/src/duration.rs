//! Durations on the command line: `30s`, `500ms`, `2m`, `1h`, a bare number of seconds, or
//! `forever`.

use std::time::Duration;

/// Parses a duration; `Ok(None)` means `forever`.
pub fn parse(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if matches!(t, "forever" | "inf" | "infinite") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 500ms, 2m, 1h or forever)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => return Err(format!("`{s}`: unknown unit `{other}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30s").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(parse("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse("2m").unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(parse("1.5").unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(parse("forever").unwrap(), None);
        assert!(parse("10 parsecs").is_err());
        assert!(parse("").is_err());
    }
}

/// A command-line duration that may be `forever` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Option<Duration>);

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        parse(s).map(Span)
    }
}
