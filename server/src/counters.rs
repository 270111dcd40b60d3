//! Counters, read by the stats thread. Each worker thread of the slot models writes only its own
//! cache-line aligned block, so counting costs no cross-core traffic; models whose connections
//! move between threads (a thread or a task per connection) share one block and pay for a locked
//! add, which is small beside the socket calls around it.

use c1m_proto::errors;
use c1m_proto::stats::ServerStats;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
#[repr(align(128))]
pub struct Counters {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub greeted: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// First bytes were not a greeting: closed.
    pub garbage: AtomicU64,
    /// The peer sent more than it read back, the send buffer filled: closed.
    pub overflow: AtomicU64,
    /// Read or write failed with ECONNRESET/EPIPE…: closed.
    pub reset: AtomicU64,
    /// Peer closed before its greeting was complete (or, in a blocking model, sent none in time).
    pub incomplete: AtomicU64,
    /// A connection the model had to turn away after accepting it (no thread could be started
    /// for it): closed.
    pub refused: AtomicU64,
    /// accept4 failures (and a model's own per-connection failures) by errno slot.
    pub accept_errors: [AtomicU64; errors::SLOTS],
}

impl Counters {
    /// An accept-side failure with this errno.
    pub fn accept_error(&self, errno: i32) {
        add(&self.accept_errors[errors::slot(errno)], 1);
    }
}

pub fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Relaxed);
}

/// Sums all blocks into a stats line.
pub fn snapshot(all: &[Counters]) -> ServerStats {
    let sum = |f: fn(&Counters) -> &AtomicU64| all.iter().map(|c| f(c).load(Relaxed)).sum::<u64>();
    let accepted = sum(|c| &c.accepted);
    let closed = sum(|c| &c.closed);
    let mut errs = BTreeMap::new();
    for (name, v) in [
        ("garbage", sum(|c| &c.garbage)),
        ("overflow", sum(|c| &c.overflow)),
        ("incomplete", sum(|c| &c.incomplete)),
        ("refused", sum(|c| &c.refused)),
    ] {
        if v > 0 {
            errs.insert(name.to_string(), v);
        }
    }
    for slot in 0..errors::SLOTS {
        let v: u64 = all
            .iter()
            .map(|c| c.accept_errors[slot].load(Relaxed))
            .sum();
        if v > 0 {
            errs.insert(format!("accept_{}", errors::slot_name(slot)), v);
        }
    }
    ServerStats {
        accepted,
        closed,
        open: accepted.saturating_sub(closed),
        greeted: sum(|c| &c.greeted),
        bytes_in: sum(|c| &c.bytes_in),
        bytes_out: sum(|c| &c.bytes_out),
        resets: sum(|c| &c.reset),
        errors: errs,
        ..Default::default()
    }
}
