//! The run directory: what `c1m run` writes and `c1m report` reads.
//!
//! ```text
//! runs/<YYYYmmdd-HHMMSS>/
//!   run.json        RunSummary: the outcome, one object
//!   events.jsonl    one Event per second
//!   hosts/<name>/   per host: server.jsonl / client.jsonl (the binaries' raw lines), *.log
//! runs/latest -> <YYYYmmdd-HHMMSS>
//! ```
//!
//! Every field that may be missing in an older or partial run is an `Option` or defaulted, so a
//! damaged directory still deserialises as far as it goes.

use c1m_proto::stats::Percentiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of this layout; bumped on incompatible changes.
pub const SCHEMA: u32 = 1;

/// `run.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunSummary {
    pub schema: u32,
    pub c1m_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `local` (embedded inventory, loopback) or the inventory path.
    pub inventory: String,
    pub outcome: Outcome,
    /// Why the run ended the way it did, in one sentence.
    pub reason: Option<String>,
    /// True when a host was lost or data is missing.
    pub partial: bool,
    pub target: u64,
    /// Most verified connections open at once (all clients).
    pub established_peak: u64,
    /// Most connections the server(s) had open at once.
    pub server_open_peak: u64,
    pub time_to_target_s: Option<f64>,
    /// Runs over hosts: seconds from the start of `c1m run` (connecting, preflight, deploy and
    /// start-up included) until the target was reached.
    pub run_to_target_s: Option<f64>,
    /// Best one-second connect rate (connections/s).
    pub connect_rate_peak: f64,
    /// Verified connections / time to reach them.
    pub connect_rate_mean: f64,
    pub connect_latency_us: Option<Percentiles>,
    pub rtt_us: Option<Percentiles>,
    /// Messages the clients sent after the opening exchange (`--message-interval`) and how many
    /// the server answered.
    pub messages_sent: u64,
    pub messages_answered: u64,
    /// By errno name, summed over all clients and servers.
    pub errors: BTreeMap<String, u64>,
    /// Server RSS at the peak (all server processes).
    pub server_rss_bytes: u64,
    pub client_rss_bytes: u64,
    /// server_rss_bytes / established_peak.
    pub user_bytes_per_conn: f64,
    /// Kernel memory growth from the start to the peak / connections (both ends when local).
    pub kernel_bytes_per_conn: f64,
    pub kernel_memory: KernelMemory,
    pub hosts: Vec<HostSummary>,
    /// The first limit hit, if one was.
    pub limit: Option<LimitHit>,
    pub settings: RunSettings,
    /// The server under test as measured on its host (absent in runs before it was measured).
    pub server: Option<ServerFigures>,
}

/// What the server under test is.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// `c1m-server`, with its `--model`.
    #[default]
    C1mServer,
    /// A server c1m started from a command (`--server-cmd`, `c1m_server_cmd`) and stopped.
    Command,
    /// A server that was already running (`--target`, `c1m_server_external`).
    External,
}

/// The server under test, measured on its host from /proc: its whole process tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerFigures {
    pub kind: ServerKind,
    /// The model of c1m-server, or the server's program name (`nginx`, `redis-server`).
    pub name: String,
    /// The command c1m started, when it started one.
    pub command: Option<String>,
    /// The protocol the clients spoke (`echo`, `http`, `websocket`, `mqtt`, `redis`, `idle`, …).
    pub protocol: String,
    pub host: String,
    pub address: String,
    pub ports: String,
    /// The tree's root process; `None` when the server could not be found (an external server
    /// without `--server-pid`): then no figure below is known.
    pub pid: Option<u32>,
    /// Processes and threads of the tree at the peak.
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    /// The tree's resident and proportional memory at the peak, before the clients started,
    /// and per connection held (the growth from before to the peak, divided by the
    /// connections held).
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
    pub rss_bytes_before: Option<u64>,
    pub pss_bytes_before: Option<u64>,
    pub rss_bytes_per_conn: Option<f64>,
    pub pss_bytes_per_conn: Option<f64>,
    /// CPU seconds the tree used from the clients' start until the target (or the end of
    /// connecting).
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_per_1k_conns: Option<f64>,
    /// Each process's RLIMIT_NOFILE and open fds as the preflight read them.
    pub limits: Vec<ProcessLimit>,
    /// How many connections those limits let the server hold, as the preflight computed it.
    pub predicted_ceiling: Option<u64>,
    /// What sets `predicted_ceiling` when it is not the open-file limits alone, as a sentence
    /// (nginx: its keep-alive reuse rule and `worker_connections`).
    pub ceiling_rule: Option<String>,
}

/// One process's open-file limit, as read before the clients started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProcessLimit {
    pub pid: u32,
    pub comm: String,
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub open_fds: u64,
}

/// How a run ended, as `run.json` records it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every client reached its share and the hold ran its course.
    Reached,
    /// The clients stopped, or were stopped, before the target.
    NotReached,
    /// A binary or a host failed after the start (server gone, client lost).
    Failed,
    /// Stopped by a signal (SIGINT, SIGTERM, SIGHUP); teardown ran.
    Interrupted,
    /// The run has not finished writing (or was killed before it could).
    Running,
    /// Missing, or a word this version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Outcome {
    /// The word `run.json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Reached => "reached",
            Outcome::NotReached => "not_reached",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Running => "running",
            Outcome::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How kernel memory per connection was computed: deltas between the baseline and the peak.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KernelMemory {
    pub slab_delta_bytes: i64,
    /// /proc/net/sockstat TCP `mem` (pages charged to TCP buffers) × page size.
    pub tcp_mem_delta_bytes: i64,
    pub pagetables_delta_bytes: i64,
    pub kernel_stack_delta_bytes: i64,
    /// Sockets counted both ends (true when client and server share the host's kernel).
    pub both_ends: bool,
}

/// One host's part in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HostSummary {
    pub name: String,
    /// `server` | `client` | `server+client`.
    pub role: String,
    pub address: String,
    /// Connections this client was asked for.
    pub share: u64,
    pub established_peak: u64,
    pub errors: BTreeMap<String, u64>,
    pub rss_bytes: u64,
    /// `procs × threads`, e.g. `1×53`.
    pub layout: String,
    /// Sysctls and limits in effect (`fs.file-max`, `nofile_hard`, …) as read at start.
    pub tuning: BTreeMap<String, String>,
    /// Set when the host was lost or failed mid-run.
    pub failure: Option<String>,
}

/// The limiting factor, in one sentence with its evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitHit {
    /// `fd_cap` | `ports_x_ips` | `conntrack` | `tcp_mem` | `memory` | `rate` | `time` | `none`.
    pub kind: String,
    pub sentence: String,
    pub evidence: String,
}

/// Which limit an error name in `errors` points at: `EMFILE`/`ENFILE` the fd cap,
/// `EADDRNOTAVAIL` the 4-tuple space, `ENOMEM`/`ENOBUFS` memory, anything naming conntrack the
/// conntrack table. Server-side names carry a prefix (`server_accept_EMFILE`).
pub fn limit_kind(error: &str) -> Option<&'static str> {
    let bare = error.rsplit('_').next().unwrap_or(error);
    match bare {
        "EMFILE" | "ENFILE" => Some("fd_cap"),
        "EADDRNOTAVAIL" => Some("ports_x_ips"),
        "ENOMEM" | "ENOBUFS" => Some("memory"),
        _ if error.to_ascii_lowercase().contains("conntrack") => Some("conntrack"),
        _ => None,
    }
}

/// What the run was asked to do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunSettings {
    pub connections: u64,
    pub ports: u16,
    pub rate: Option<u64>,
    pub hold_s: f64,
    pub message_interval_s: Option<f64>,
    pub source_ips: Vec<String>,
    pub window: Option<u64>,
}

/// One line of `events.jsonl`: the state of the run at `t` seconds after the clients started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    pub t: f64,
    pub ts_ms: u64,
    /// Verified connections open, all clients.
    pub established: u64,
    pub connecting: u64,
    /// Connections the server(s) hold open.
    pub server_open: u64,
    /// New verified connections per second over the last interval.
    pub connect_rate: f64,
    pub errors_total: u64,
    pub server_rss_bytes: u64,
    pub client_rss_bytes: u64,
    /// Kernel memory above the baseline (slab + TCP pages + page tables + stacks).
    pub kernel_bytes: i64,
    pub slab_bytes: u64,
    pub tcp_mem_pages: u64,
    pub tcp_inuse: u64,
    /// Per host: `established`, `connect_rate`, `errors_total`, `rss_bytes` for that host.
    pub hosts: BTreeMap<String, HostSample>,
}

/// One host's figures in an [`Event`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HostSample {
    pub role: String,
    pub established: u64,
    pub connect_rate: f64,
    pub errors_total: u64,
    pub rss_bytes: u64,
}

/// Creates `OUT/<YYYYmmdd-HHMMSS>` (suffixed if taken) and points `OUT/latest` at it.
pub fn create(
    out: &std::path::Path,
    at: &chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stamp = at.format("%Y%m%d-%H%M%S").to_string();
    let mut name = stamp.clone();
    let mut i = 1;
    while out.join(&name).exists() {
        i += 1;
        name = format!("{stamp}-{i}");
    }
    let dir = out.join(&name);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let latest = out.join("latest");
    let _ = std::fs::remove_file(&latest);
    std::os::unix::fs::symlink(&name, &latest)
        .with_context(|| format!("pointing {} at {name}", latest.display()))?;
    Ok(dir)
}

/// Writes `run.json` atomically, so a reader never sees half of it.
pub fn write_summary(dir: &std::path::Path, s: &RunSummary) -> anyhow::Result<()> {
    let tmp = dir.join("run.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)?;
    std::fs::rename(&tmp, dir.join("run.json"))?;
    Ok(())
}
