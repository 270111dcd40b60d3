//! What one host's binaries have said so far: their latest stats, layouts, summaries and peaks.

use c1m_proto::stats::{ClientStats, LayoutLine, ServerStats};

/// Running figures of the run, updated from the lines and samples.
#[derive(Default)]
pub struct Track {
    pub client: ClientStats,
    pub server: ServerStats,
    pub server_layout: Option<LayoutLine>,
    pub client_layout: Option<LayoutLine>,
    pub client_summary: Option<ClientStats>,
    pub server_summary: Option<ServerStats>,
    pub established_peak: u64,
    pub server_open_peak: u64,
    /// CPU busy (0..1) of this host at each sample while the clients connected.
    pub cpu_busy: Vec<f64>,
}

impl Track {
    /// Takes in one line of the client's output; returns it as a layout line if it is one.
    pub fn client_line(&mut self, l: &str) -> Option<LayoutLine> {
        take_line(
            l,
            |s: &ClientStats| &s.event,
            &mut self.client,
            &mut self.client_summary,
        )
    }

    /// Takes in one line of the server's output; returns it as a layout line if it is one.
    pub fn server_line(&mut self, l: &str) -> Option<LayoutLine> {
        take_line(
            l,
            |s: &ServerStats| &s.event,
            &mut self.server,
            &mut self.server_summary,
        )
    }
}

/// A stats line becomes the latest (and, if it is the summary, the summary); any other line is
/// returned if it is the layout line.
fn take_line<T: serde::de::DeserializeOwned + Clone>(
    l: &str,
    event: fn(&T) -> &str,
    latest: &mut T,
    summary: &mut Option<T>,
) -> Option<LayoutLine> {
    match serde_json::from_str::<T>(l) {
        Ok(s) => {
            if event(&s) == "summary" {
                *summary = Some(s.clone());
            }
            *latest = s;
            None
        }
        Err(_) => layout_line(l),
    }
}

pub fn layout_line(l: &str) -> Option<LayoutLine> {
    serde_json::from_str::<LayoutLine>(l)
        .ok()
        .filter(|x| x.event == "layout")
}

/// What a server command prints first (see `launch::server_command`): the pid of the shell
/// that becomes the command, leader of the command's own session and process group.
pub const COMMAND_PID: &str = "c1m-server-command-pid";

/// The pid in a [`COMMAND_PID`] line.
pub fn command_pid(l: &str) -> Option<u32> {
    l.strip_prefix(COMMAND_PID)?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
}
