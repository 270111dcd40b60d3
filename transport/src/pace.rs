//! How fast a host answers, measured rather than assumed: what budgets that must hold on a slow
//! host (an emulated VM, a busy one, a far one) are derived from.

use super::{Transport, TransportError};
use std::time::{Duration, Instant};

/// One host's measured speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// One request answered by the host without starting a program there (an SFTP lstat), the
    /// fastest of the samples: the link plus the host's SSH server. `None` where the transport
    /// has no such request (no SFTP, `become` to another user).
    pub round_trip: Option<Duration>,
    /// Starting `true` through the host's shell and seeing it end, the fastest of the samples:
    /// the link plus a fork and exec on the host, which an emulated CPU makes slow.
    pub exec: Duration,
}

impl Pace {
    /// The longer of `floor` and `execs` program starts on this host: a budget for a step that
    /// costs about that much work there.
    pub fn budget(&self, floor: Duration, execs: u32) -> Duration {
        floor.max(self.exec.saturating_mul(execs))
    }
}

/// Measures `t`'s host: `samples` (at least 1) of each exchange, the fastest kept, as the
/// fastest is the host's speed and the rest is noise from whatever else it was doing.
pub fn measure(t: &mut dyn Transport, samples: u32) -> Result<Pace, TransportError> {
    let mut round_trip: Option<Duration> = None;
    let mut exec = Duration::MAX;
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        match t.lstat("/") {
            Some(r) => {
                r?;
                let took = started.elapsed();
                round_trip = Some(round_trip.map_or(took, |best| best.min(took)));
            }
            None => round_trip = None,
        }
        let started = Instant::now();
        let out = t.exec("true", None)?;
        if !out.success() {
            return Err(TransportError::Io(format!(
                "{}: `true` failed ({}): {}",
                t.host(),
                out.status,
                out.stderr_str().trim()
            )));
        }
        exec = exec.min(started.elapsed());
    }
    Ok(Pace { round_trip, exec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalTransport;
    use crate::Become;

    #[test]
    fn a_budget_is_the_floor_or_the_work_whichever_is_longer() {
        let pace = Pace {
            round_trip: None,
            exec: Duration::from_millis(300),
        };
        assert_eq!(
            pace.budget(Duration::from_secs(30), 10),
            Duration::from_secs(30)
        );
        assert_eq!(
            pace.budget(Duration::from_secs(30), 1000),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn this_machine_is_measured() {
        let mut t = LocalTransport::new("localhost", &Become::default());
        let pace = measure(&mut t, 3).unwrap();
        assert!(pace.exec > Duration::ZERO && pace.exec < Duration::from_secs(10));
        assert!(pace.round_trip.is_some_and(|r| r < pace.exec * 10));
    }
}
