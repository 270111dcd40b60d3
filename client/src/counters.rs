//! Per-worker counters and histograms, read by the main thread. Each worker writes only its own
//! cache-line aligned block.

use crate::protocol::Failure;
use c1m_proto::errors;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[repr(align(128))]
pub struct Counters {
    pub attempted: AtomicU64,
    pub connecting: AtomicU64,
    pub verified: AtomicU64,
    pub dropped: AtomicU64,
    pub messages: AtomicU64,
    /// Messages whose answer came back (each a round trip in `rtt_hist`).
    pub answered: AtomicU64,
    pub errors: [AtomicU64; errors::SLOTS],
    /// Established connections whose answer never came ([`errors::ANSWER_TIMEOUT`]): not an
    /// errno, so not a slot of `errors`.
    pub answer_timeouts: AtomicU64,
    /// Connections that broke their protocol, by kind (`echo_mismatch`, `http_404`…): a lock
    /// taken once per failed connection, never on the way of a good one.
    pub failures: Mutex<BTreeMap<Failure, u64>>,
    /// Microseconds after the start when this worker's share was verified; 0 = not yet.
    pub done_at_us: AtomicU64,
    pub connect_hist: Mutex<Histogram<u64>>,
    pub rtt_hist: Mutex<Histogram<u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            attempted: AtomicU64::new(0),
            connecting: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            errors: Default::default(),
            answer_timeouts: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            done_at_us: AtomicU64::new(0),
            connect_hist: Mutex::new(crate::hist::new()),
            rtt_hist: Mutex::new(crate::hist::new()),
        }
    }
}

/// Single-writer increment: a load and a store, no locked instruction.
pub fn add(c: &AtomicU64, v: u64) {
    c.store(c.load(Relaxed) + v, Relaxed);
}

pub fn sum(all: &[Counters], f: fn(&Counters) -> &AtomicU64) -> u64 {
    all.iter().map(|c| f(c).load(Relaxed)).sum()
}
