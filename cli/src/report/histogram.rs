//! Connect-latency and round-trip percentiles recomputed from the clients' serialized
//! HdrHistograms. Merging histograms is exact; averaging per-host percentiles would not be.

use base64::Engine as _;
use c1m_proto::stats::Percentiles;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

/// Decodes one base64 HdrHistogram V2 (plain or deflated).
pub fn decode(b64: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2: {e:?}"))
}

/// Merges histograms; `None` when there is none.
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

/// The percentiles a report prints.
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
    use hdrhistogram::serialization::{Serializer, V2Serializer};

    fn encode(h: &Histogram<u64>) -> String {
        let mut buf = Vec::new();
        V2Serializer::new().serialize(h, &mut buf).unwrap();
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    #[test]
    fn merged_percentiles_equal_those_of_all_samples_together() {
        let mut a = Histogram::<u64>::new(3).unwrap();
        let mut b = Histogram::<u64>::new(3).unwrap();
        let mut all = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            a.record(v * 3).unwrap();
            all.record(v * 3).unwrap();
        }
        for v in 1..=10u64 {
            b.record(v * 100_000).unwrap();
            all.record(v * 100_000).unwrap();
        }
        let da = decode(&encode(&a)).unwrap();
        let db = decode(&encode(&b)).unwrap();
        let merged = merge([&da, &db]).unwrap();
        assert_eq!(percentiles(&merged), percentiles(&all));
        assert_eq!(merged.max(), all.max());
        assert_eq!(merged.len(), 1010);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode("!!!").is_err());
        assert!(decode("aGVsbG8=").is_err());
        assert!(merge(std::iter::empty()).is_none());
    }
}
