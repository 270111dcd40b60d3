//! Connect-latency and round-trip percentiles recomputed from the clients' serialized
//! HdrHistograms. Merging histograms is exact; averaging per-host percentiles would not be.

use hdrhistogram::Histogram;

pub use c1m_client::hist::{decode, percentiles};

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

#[cfg(test)]
mod tests {
    use super::*;

    use c1m_client::hist::encode;

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
