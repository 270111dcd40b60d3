//! The one teardown of every run, however it ended: clients first (their summaries carry the
//! histograms), then the server, each by closing its stdin; then every process group c1m
//! started is checked on its host and stopped if anything of it is left (a server command's
//! group is stopped this way: SIGTERM, then SIGKILL). Bounded in time, so a
//! second signal is never needed.

use super::control::stop_budget;
use super::intake::absorb;
use super::msg::{Msg, Role};
use super::state::{HostState, Peak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long stopped binaries get to print their summaries and exit before their groups are
/// signalled. Closing a third of a million sockets takes seconds on a slow guest; on a host
/// measured slower still, as long as 300 program starts there.
const GRACE: Duration = Duration::from_secs(30);

pub async fn teardown(hosts: &mut [HostState], rx: &mut UnboundedReceiver<Msg>, peak: &mut Peak) {
    peak.frozen = true;
    for h in hosts.iter_mut() {
        h.tearing_down = true;
    }
    let grace = hosts
        .iter()
        .map(|h| h.run.budget(GRACE, 300))
        .max()
        .unwrap_or(GRACE);
    for role in [Role::Client, Role::Server] {
        for h in hosts.iter() {
            if let Some(r) = h.running(role).filter(|r| r.ended.is_none()) {
                r.proc.stop();
            }
        }
        wait_for_ends(hosts, rx, role, grace, peak).await;
    }
    stop_leftover_groups(hosts).await;
    for role in [Role::Client, Role::Server] {
        wait_for_ends(hosts, rx, role, Duration::from_secs(3), peak).await;
    }
}

/// Whatever is left of any group — a binary that ignored its stdin, a worker process, a host
/// whose stream broke — is stopped by group id over the control connection, every host at once.
async fn stop_leftover_groups(hosts: &mut [HostState]) {
    for h in hosts.iter_mut() {
        h.tearing_down_groups = true;
    }
    let mut asked = Vec::new();
    let now = Instant::now();
    let run_peak: u64 = hosts.iter().map(|h| h.track.established_peak).sum();
    for (i, h) in hosts.iter().enumerate() {
        let serves = h.running(Role::Server).is_some();
        let sockets =
            sockets_held(serves, h.track.server_open_peak, run_peak) + h.track.established_peak;
        let until = now + stop_budget(sockets);
        let Some(control) = h.control.as_ref() else {
            continue;
        };
        for role in [Role::Server, Role::Client] {
            if let Some(pgid) = h.running(role).and_then(|r| r.pgid) {
                asked.push((i, role, pgid, until, control.stop_group(pgid, until)));
            }
        }
    }
    let mut said_waiting = false;
    for (i, role, pgid, until, stopping) in asked {
        let quick = Instant::now() + Duration::from_secs(3);
        let mut answer = tokio::task::block_in_place(|| stopping.answer_by(quick.min(until)));
        if answer.is_none() {
            if !said_waiting {
                // Only said when a host is slow; a healthy one has answered by now.
                said_waiting = true;
                println!(
                    "teardown: waiting for {} to confirm its c1m processes have ended \
                     (a host closing many connections can take a while; up to {} s)",
                    hosts[i].run.host.name,
                    until.saturating_duration_since(Instant::now()).as_secs()
                );
            }
            // The control thread gives up at `until`; its answer says why.
            let deadline = until + Duration::from_secs(5);
            answer = tokio::task::block_in_place(|| stopping.answer_by(deadline));
        }
        let answer = answer.unwrap_or_else(|| {
            let waited = Instant::now().saturating_duration_since(now);
            Err(format!("no answer in {} s", waited.as_secs()))
        });
        let h = &mut hosts[i];
        let stops_on_eof = h.running(role).is_none_or(|r| r.stops_on_eof);
        let what = if stops_on_eof {
            role.binary()
        } else {
            "server command"
        };
        let line = match answer {
            Ok(a) if a == "gone" => continue,
            // The server command's group stop is how it ends, not a sign of trouble.
            Ok(a) if !stops_on_eof => {
                println!(
                    "teardown {}: server command (group {pgid}): {a}",
                    h.run.host.name
                );
                continue;
            }
            Ok(a) => format!("{what} (group {pgid}) was still running: {a}"),
            Err(e) => format!("could not check the {what} (group {pgid}): {e}"),
        };
        println!("teardown {}: {line}", h.run.host.name);
        h.teardown.push(line);
    }
}

/// Sockets a server host holds, for its stop budget. c1m-server reports how many it has open;
/// a server c1m did not write reports nothing (0), yet it holds an end of every connection the
/// clients held: the run's peak is the floor, or its host would get the budget of an idle one
/// (measured on the lab: 20 s for nginx closing 97,000 connections, where a TCG guest needs
/// minutes).
fn sockets_held(serves: bool, server_open_peak: u64, run_peak: u64) -> u64 {
    if serves {
        server_open_peak.max(run_peak)
    } else {
        server_open_peak
    }
}

/// Takes in messages until every started binary of `role` has ended, or `limit` passes.
pub async fn wait_for_ends(
    hosts: &mut [HostState],
    rx: &mut UnboundedReceiver<Msg>,
    role: Role,
    limit: Duration,
    peak: &mut Peak,
) {
    let deadline = tokio::time::Instant::now() + limit;
    // A server command does not stop at the end of its stdin: only its group's stop ends it.
    let pending = |hosts: &[HostState]| {
        hosts.iter().any(|h| {
            h.running(role)
                .is_some_and(|r| r.ended.is_none() && (r.stops_on_eof || h.tearing_down_groups))
        })
    };
    while pending(hosts) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                absorb(hosts, m, false, peak);
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sockets_held;

    /// A server that reports no open count (nginx, redis…) is budgeted for every connection the
    /// clients held; c1m-server's own count stands when it is the larger; a host without a
    /// server keeps its own.
    #[test]
    fn a_server_host_is_budgeted_for_every_connection_held() {
        assert_eq!(sockets_held(true, 0, 97_513), 97_513);
        assert_eq!(sockets_held(true, 100_004, 100_000), 100_004);
        assert_eq!(sockets_held(false, 0, 97_513), 0);
    }
}
