//! What a report says about a run: the one structure every renderer reads and the JSON export
//! serialises as is. Field names and meanings are the documented schema (docs/report-json.md):
//! add fields, never rename or repurpose them without bumping [`REPORT_SCHEMA`].

use super::load::Notice;
use c1m_proto::fmt;
use c1m_proto::stats::Percentiles;
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the JSON export.
pub const REPORT_SCHEMA: u32 = 1;

/// The whole JSON export.
#[derive(Debug, Clone, Serialize)]
pub struct ReportDoc {
    pub schema: u32,
    pub c1m_version: String,
    pub runs: Vec<RunReport>,
    /// Present with `--compare`.
    pub compare: Option<Vec<CompareRow>>,
}

/// One run, summarised.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The run directory's name (`runs/latest` resolved).
    pub name: String,
    /// What a comparison calls the run: the server under test's name (a c1m-server model,
    /// `nginx`, …) when runs differ by it, else the directory's name.
    pub label: String,
    /// The path given on the command line.
    pub path: String,
    /// False when a notice says data is missing, damaged or still being written.
    pub complete: bool,
    pub notices: Vec<Notice>,
    /// From run.json; `unknown` without it.
    pub outcome: String,
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub inventory: Option<String>,
    pub settings: Option<c1m_rundir::RunSettings>,
    pub target: Option<u64>,
    pub established_peak: Option<u64>,
    pub server_open_peak: Option<u64>,
    pub target_reached: bool,
    pub time_to_target_s: Option<f64>,
    /// Why the target was not reached, when it was not.
    pub not_reached_reason: Option<String>,
    pub connect_rate_peak: Option<f64>,
    pub connect_rate_mean: Option<f64>,
    pub connect_latency_us: Option<Percentiles>,
    /// `run.json` | `hosts` (merged connect_hist) | null.
    pub connect_latency_source: Option<String>,
    pub rtt_us: Option<Percentiles>,
    /// Messages sent after the opening exchange and answered (`--message-interval`); `None`
    /// when the run sent none.
    pub messages: Option<Messages>,
    pub memory: Memory,
    /// By errno name, all hosts.
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    pub limit: Limit,
    pub hosts: Vec<HostReport>,
    /// The time series behind the figures.
    pub samples: Samples,
    /// SVG files written into the run directory (file names).
    pub charts: Vec<String>,
    /// The server under test as measured on its host (absent in older runs).
    pub server: Option<c1m_rundir::ServerFigures>,
}

/// Memory per connection, split between the server process and the kernel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// Server RSS (all server processes) at the peak.
    pub server_rss_bytes: Option<u64>,
    pub client_rss_bytes: Option<u64>,
    /// server_rss_bytes / established_peak.
    pub user_bytes_per_conn: Option<f64>,
    /// Kernel memory above the baseline at the peak (slab + TCP pages + page tables + stacks).
    pub kernel_bytes: Option<i64>,
    /// kernel_bytes / established_peak.
    pub kernel_bytes_per_conn: Option<f64>,
    pub slab_delta_bytes: Option<i64>,
    pub tcp_mem_delta_bytes: Option<i64>,
    /// Kernel figures count both ends of each connection (client and server share a kernel).
    pub both_ends: bool,
    /// `events.jsonl` | `run.json` | null.
    pub source: Option<String>,
}

/// The limiting factor.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Limit {
    /// `fd_cap` | `ports_x_ips` | `conntrack` | `tcp_mem` | `memory` | `rate` | `cpu` | `time` |
    /// `interrupted` | `failed` | `none` | `unknown`.
    pub kind: String,
    pub sentence: String,
    pub evidence: String,
    /// `run.json` (recorded by `c1m run`) | `derived` (by the report from the evidence).
    pub source: String,
}

/// One host's part.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    pub name: String,
    pub role: String,
    pub address: Option<String>,
    pub share: Option<u64>,
    /// Clients: verified connections; servers: connections open.
    pub established_peak: Option<u64>,
    pub connect_rate_peak: Option<f64>,
    pub time_to_target_s: Option<f64>,
    pub connect_latency_us: Option<Percentiles>,
    pub errors: BTreeMap<String, u64>,
    pub rss_bytes: Option<u64>,
    pub layout: Option<String>,
    pub tuning: BTreeMap<String, String>,
    pub failure: Option<String>,
}

/// Where the time series stands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    /// Lines of events.jsonl read.
    pub count: usize,
    /// `t` of the last line.
    pub last_t: Option<f64>,
    /// Connections open at the last line.
    pub last_established: Option<u64>,
}

/// One metric across compared runs.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub metric: String,
    /// One per run, in order; null when unknown.
    pub values: Vec<Option<f64>>,
    /// `values[i] − values[0]`; null for the first run or when either is unknown.
    pub deltas: Vec<Option<f64>>,
    /// `deltas[i] / values[0] × 100`.
    pub delta_pct: Vec<Option<f64>>,
}

/// Messages after the opening exchange: how many the clients sent, how many came back.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Messages {
    pub sent: u64,
    pub answered: u64,
}

impl Messages {
    /// One sentence: all answered, some, or none (a server that never reads a connection
    /// after its greeting, like the `sync` model, answers none).
    pub fn sentence(&self) -> String {
        let (a, n) = (fmt::int(self.answered), fmt::int(self.sent));
        if self.answered >= self.sent {
            format!("Later messages: all {n} answered")
        } else if self.answered == 0 {
            format!(
                "Later messages: none of {n} answered (the server does not serve messages after \
                 the greeting)"
            )
        } else {
            format!("Later messages: {a} of {n} answered")
        }
    }
}
