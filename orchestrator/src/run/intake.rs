//! Taking in what the hosts' threads say: binary lines into each host's track, samples into its
//! kernel and CPU figures, ends and losses onto its state. Says what the engine must act on.

use super::msg::{Msg, Role};
use super::state::{HostState, Peak};
use c1m_proto::stats::LayoutLine;

/// What a message meant, when the engine must act on it.
pub enum Happened {
    /// A binary printed its layout: it is up (the server: every port listens).
    Layout(usize, Role, LayoutLine),
    /// A server command started: the pid of its process group's leader.
    Started(u32),
    /// A binary's stream ended.
    Ended(usize, Role),
    Nothing,
}

/// Takes in one message. `connecting`: CPU samples count towards the busy figure only while
/// clients connect.
pub fn absorb(hosts: &mut [HostState], msg: Msg, connecting: bool, peak: &mut Peak) -> Happened {
    match msg {
        Msg::Line { host, role, line } => line_in(hosts, host, role, &line, peak),
        Msg::Ended { host, role, ended } => {
            if let Some(r) = hosts[host].running_mut(role) {
                r.ended = Some(ended);
            }
            Happened::Ended(host, role)
        }
        Msg::Sample { host, sample } => {
            let h = &mut hosts[host];
            if let Some((all, idle)) = h.cpu_prev {
                let da = sample.cpu.0.saturating_sub(all);
                let di = sample.cpu.1.saturating_sub(idle);
                if connecting && da > 0 {
                    h.track.cpu_busy.push(1.0 - di as f64 / da as f64);
                }
            }
            h.cpu_prev = Some(sample.cpu);
            h.kernel_now = Some(sample.kernel);
            h.samples += 1;
            peak.update(hosts);
            Happened::Nothing
        }
        Msg::Tree { host, tree, queued } => {
            let h = &mut hosts[host];
            if !h.server_reports {
                h.track.server.rss_bytes = tree.as_ref().map_or(0, |t| t.rss_bytes());
            }
            // Samples come after the tree: the peak takes both in with the kernel's reading.
            h.tree_now = tree;
            h.queued_now = queued;
            Happened::Nothing
        }
        Msg::ControlLost { host, error } => {
            let h = &mut hosts[host];
            // In teardown a busy host often drops it (a kernel closing a million sockets); the
            // group check reconnects, and says so itself if it cannot confirm anything.
            if !h.tearing_down {
                h.teardown.push(format!("control connection lost: {error}"));
            }
            Happened::Nothing
        }
    }
}

fn line_in(
    hosts: &mut [HostState],
    host: usize,
    role: Role,
    line: &str,
    peak: &mut Peak,
) -> Happened {
    if role == Role::Server && !hosts[host].server_reports {
        let Some(pid) = super::track::command_pid(line) else {
            return Happened::Nothing;
        };
        if let Some(r) = hosts[host].running_mut(role) {
            r.pgid = Some(pid);
        }
        return Happened::Started(pid);
    }
    let layout = match role {
        Role::Server => hosts[host].track.server_line(line),
        Role::Client => hosts[host].track.client_line(line),
    };
    peak.update(hosts);
    let Some(l) = layout else {
        return Happened::Nothing;
    };
    let h = &mut hosts[host];
    if let Some(r) = h.running_mut(role) {
        r.pgid = Some(if l.pgid > 1 { l.pgid } else { l.pid });
    }
    match role {
        Role::Server => h.track.server_layout = Some(l.clone()),
        Role::Client => h.track.client_layout = Some(l.clone()),
    }
    Happened::Layout(host, role, l)
}
