//! Latency histograms: recorded per thread, merged across threads, processes and hosts, and
//! carried between them as base64 HdrHistogram V2 so merging stays exact. Owns the percentiles
//! a histogram yields; averaging per-process percentiles instead would not be exact.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// A histogram of microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("not an HdrHistogram V2: {e:?}"))
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Merges histograms; `None` when there is none. The result resizes itself, so histograms with
/// other bounds (another version, another recorder) merge too.
pub fn merge<'a>(hists: impl IntoIterator<Item = &'a Histogram<u64>>) -> Option<Histogram<u64>> {
    let mut out: Option<Histogram<u64>> = None;
    for h in hists {
        match &mut out {
            None => {
                let mut first = h.clone();
                first.auto(true);
                out = Some(first);
            }
            Some(acc) => {
                // With auto-resize on, adding only fails on counter overflow (2^64 samples).
                if acc.add(h).is_err() {
                    return out;
                }
            }
        }
    }
    out
}

/// Encoded histograms merged into one.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// `None` when no histogram decoded.
    pub hist: Option<Histogram<u64>>,
    /// Why each histogram that did not decode was left out.
    pub damaged: Vec<String>,
}

impl Merged {
    pub fn percentiles(&self) -> Option<Percentiles> {
        self.hist.as_ref().map(percentiles)
    }

    pub fn encode(&self) -> Option<String> {
        self.hist.as_ref().map(encode)
    }
}

/// Merges base64 histograms (the `connect_hist`/`rtt_hist` of stats lines from several
/// processes or hosts); one that does not decode is left out and said so in `damaged`.
pub fn merge_encoded<'a>(encoded: impl IntoIterator<Item = &'a str>) -> Merged {
    let mut damaged = Vec::new();
    let hists: Vec<Histogram<u64>> = encoded
        .into_iter()
        .filter_map(|s| decode(s).map_err(|e| damaged.push(e)).ok())
        .collect();
    Merged {
        hist: merge(&hists),
        damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_merge() {
        let mut a = new();
        let mut b = new();
        for v in 1..=1000u64 {
            a.record(v).unwrap();
            b.record(v * 10).unwrap();
        }
        let mut m = decode(&encode(&a)).unwrap();
        m.add(decode(&encode(&b)).unwrap()).unwrap();
        assert_eq!(m.len(), 2000);
        let p = percentiles(&m);
        assert!(p.max >= 9990 && p.p50 > 900 && p.p50 < 1100, "{p:?}");
    }

    #[test]
    fn merged_percentiles_equal_those_of_all_samples_together() {
        let mut a = Histogram::<u64>::new(3).unwrap();
        let mut b = new();
        let mut all = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            a.record(v * 3).unwrap();
            all.record(v * 3).unwrap();
        }
        for v in 1..=10u64 {
            b.record(v * 100_000).unwrap();
            all.record(v * 100_000).unwrap();
        }
        let (ea, eb) = (encode(&a), encode(&b));
        let merged = merge_encoded([ea.as_str(), "!!!", eb.as_str()]);
        assert_eq!(merged.percentiles(), Some(percentiles(&all)));
        assert_eq!(merged.hist.as_ref().map(|h| h.len()), Some(1010));
        assert_eq!(merged.damaged.len(), 1, "{:?}", merged.damaged);
        let again = decode(&merged.encode().unwrap()).unwrap();
        assert_eq!(percentiles(&again), percentiles(&all));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode("!!!").is_err());
        assert!(decode("aGVsbG8=").is_err());
        assert!(merge(std::iter::empty()).is_none());
        let none = merge_encoded(["aGVsbG8="]);
        assert!(none.hist.is_none() && none.percentiles().is_none());
        assert_eq!(none.damaged.len(), 1);
    }
}
