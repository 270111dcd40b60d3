//! Reaching the run's hosts: one connection to each (at most `forks` being opened at once) and
//! its facts, kept open for what follows (a run deploys and controls over them).

use super::facts::{self, HostFacts};
use super::plan::run_hosts;
use c1m_ansible::connect::ConnectSettings;
use c1m_ansible::inventory::Inventory;
use c1m_transport::Transport;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A host's open connection and its facts, or why it could not be had.
pub type Reached = Result<(Box<dyn Transport>, HostFacts), String>;

/// Connects to every run host (server first, then clients) and reads its facts, `forks` hosts at
/// a time.
pub fn connect_and_gather(
    inv: &Inventory,
    conn: &ConnectSettings,
    forks: usize,
) -> Vec<(String, Reached)> {
    let hosts = run_hosts(inv);
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Reached>> = hosts.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..forks.clamp(1, hosts.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(h) = hosts.get(i) else {
                            return mine;
                        };
                        let r = conn
                            .connect(h)
                            .map_err(|e| e.to_string())
                            .and_then(|mut t| match facts::gather(t.as_mut()) {
                                Ok(f) => Ok((t, f)),
                                Err(e) => Err(e.to_string()),
                            });
                        mine.push((i, r));
                    }
                })
            })
            .collect();
        for w in workers {
            // A panicking worker leaves its hosts unanswered; they are reported below.
            if let Ok(done) = w.join() {
                for (i, r) in done {
                    out[i] = Some(r);
                }
            }
        }
    });
    hosts
        .iter()
        .zip(out)
        .map(|(h, r)| {
            (
                h.name.clone(),
                r.unwrap_or_else(|| Err("fact gathering panicked".into())),
            )
        })
        .collect()
}

/// The facts alone, for a plan that is only printed.
pub fn facts_of(reached: &[(String, Reached)]) -> Vec<(String, Result<HostFacts, String>)> {
    reached
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                r.as_ref().map(|(_, f)| f.clone()).map_err(Clone::clone),
            )
        })
        .collect()
}
