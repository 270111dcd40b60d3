//! Latency histograms: recorded per thread, merged across threads, processes and hosts, and
//! carried between them as base64 HdrHistogram V2 so merging stays exact.

use base64::Engine;
use c1m_proto::stats::Percentiles;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

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
}
