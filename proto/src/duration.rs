//! Durations on the command line: `30s`, `500ms`, `2m`, `1h`, a bare number of seconds, or
//! `forever`. A whole number with its unit is read exactly, and [`Span`] prints itself in a form
//! that reads back to the same nanosecond, so a launch spec survives the trip through argv.

use std::fmt;
use std::time::Duration;

/// The units a duration may carry, with their length in nanoseconds.
const UNITS: &[(&[&str], u64)] = &[
    (&["ns"], 1),
    (&["us", "µs"], 1_000),
    (&["ms"], 1_000_000),
    (&["", "s", "sec", "secs"], 1_000_000_000),
    (&["m", "min"], 60_000_000_000),
    (&["h"], 3_600_000_000_000),
];

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
    let not_a_duration = || format!("`{s}` is not a duration (try 30s, 500ms, 2m, 1h or forever)");
    let unit = unit.trim();
    if num.is_empty() {
        return Err(not_a_duration());
    }
    let Some(&(_, nanos)) = UNITS.iter().find(|(names, _)| names.contains(&unit)) else {
        return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)"));
    };
    // A whole number is counted in integers, so what `Span` prints reads back exactly.
    if let Ok(whole) = num.parse::<u128>() {
        let total = whole.checked_mul(u128::from(nanos));
        let secs = total.and_then(|t| u64::try_from(t / 1_000_000_000).ok());
        return match (total, secs) {
            (Some(t), Some(secs)) => Ok(Some(Duration::new(secs, (t % 1_000_000_000) as u32))),
            _ => Err(format!("`{s}` is too long a duration")),
        };
    }
    let v: f64 = num.parse().map_err(|_| not_a_duration())?;
    let secs = v * nanos as f64 / 1e9;
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| format!("`{s}` is not a valid duration"))
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

/// The largest unit that divides the duration: `forever`, `30s`, `1500ms`, `7ns`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = self.0 else {
            return f.write_str("forever");
        };
        let nanos = d.as_nanos();
        let (name, size) = [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)]
            .into_iter()
            .find(|(_, size)| nanos % size == 0)
            .unwrap_or(("ns", 1));
        write!(f, "{}{name}", nanos / size)
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
        assert_eq!(parse("250us").unwrap(), Some(Duration::from_micros(250)));
        assert_eq!(parse("forever").unwrap(), None);
        assert!(parse("10 parsecs").is_err());
        assert!(parse("").is_err());
        assert!(parse("1.2.3s").is_err());
        assert!(parse("99999999999999999999h").is_err());
        assert!(parse("1e400").is_err());
    }

    #[test]
    fn printed_spans_read_back_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_millis(1500),
            Duration::from_micros(7),
            Duration::from_nanos(1_000_000_007),
            Duration::from_secs(u64::MAX / 1_000_000_000),
            Duration::MAX,
        ] {
            let s = Span(Some(d));
            assert_eq!(s.to_string().parse::<Span>(), Ok(s), "{s}");
        }
        assert_eq!(Span(None).to_string(), "forever");
        assert_eq!(
            Span(Some(Duration::from_millis(1500))).to_string(),
            "1500ms"
        );
        assert_eq!("forever".parse::<Span>(), Ok(Span(None)));
    }
}
