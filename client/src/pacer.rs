//! When each held connection's next message is due under `--message-interval`.
//!
//! A round that writes to every connection at one instant measures the client's own burst: the
//! last of a worker's 19,000 writes leaves long after the first, and the server then has the
//! whole round queued at once. So each connection gets its own phase within the interval: the
//! pacer hands out, at every wake-up, the connections whose turn has come since the last one,
//! one interval per full pass over the worker's slots.

use std::time::{Duration, Instant};

pub struct Pacer {
    every: Duration,
    /// When the first pass began: the holding started.
    began: Option<Instant>,
    /// Slot visits handed out so far, over all passes.
    handed: u128,
}

impl Pacer {
    pub fn new(every: Duration) -> Pacer {
        Pacer {
            every: every.max(Duration::from_millis(1)),
            began: None,
            handed: 0,
        }
    }

    /// The slots whose turn has come by `now`, as (first slot, count) over `slots` slots
    /// (wrapping past the end). The first call starts the clock and hands out nothing.
    pub fn due(&mut self, now: Instant, slots: usize) -> (usize, usize) {
        if slots == 0 {
            return (0, 0);
        }
        let began = *self.began.get_or_insert(now);
        let elapsed = now.saturating_duration_since(began).as_nanos();
        let total = elapsed * slots as u128 / self.every.as_nanos();
        // Never more than one pass at once: a stalled worker does not fire a burst to catch up.
        let n = (total - self.handed).min(slots as u128);
        let first = (self.handed % slots as u128) as usize;
        self.handed = total;
        (first, n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_per_interval_in_even_steps() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(10));
        assert_eq!(p.due(t0, 1000), (0, 0));
        assert_eq!(p.due(t0 + Duration::from_secs(1), 1000), (0, 100));
        assert_eq!(p.due(t0 + Duration::from_millis(1500), 1000), (100, 50));
        assert_eq!(p.due(t0 + Duration::from_secs(10), 1000), (150, 850));
        // The next pass starts where the first ended, at slot 0.
        assert_eq!(p.due(t0 + Duration::from_secs(11), 1000), (0, 100));
    }

    #[test]
    fn a_stall_gives_at_most_one_pass() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::from_secs(1));
        p.due(t0, 50);
        assert_eq!(p.due(t0 + Duration::from_secs(5), 50), (0, 50));
        assert_eq!(p.due(t0 + Duration::from_millis(5100), 50), (0, 5));
    }

    #[test]
    fn no_slots_no_turns() {
        let mut p = Pacer::new(Duration::ZERO);
        assert_eq!(p.due(Instant::now(), 0), (0, 0));
    }
}
