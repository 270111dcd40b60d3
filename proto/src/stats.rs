//! The JSON lines `c1m-server` and `c1m-client` print on stdout (one per second with `--json`,
//! and a final one with `"event": "summary"`). The orchestrator reads them back with these types,
//! and [`StatsLine::merge`] sums the lines of several processes or hosts into one.

use crate::hist;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::hist::Percentiles;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a binary placed its connections, printed once at start (`"event": "layout"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LayoutLine {
    pub event: String,
    pub role: String,
    pub procs: usize,
    pub threads_per_proc: usize,
    pub conns_per_table: u64,
    pub capacity: u64,
    pub unshare: bool,
    pub nofile_soft_before: u64,
    pub nofile_hard: u64,
    pub pid: u32,
    /// The process group a controller signals to stop this binary and its worker processes.
    #[serde(default)]
    pub pgid: u32,
    /// The server model (`c1m-server --model`); empty for the client.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
}

/// A server stats line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerStats {
    /// `tick` every second, `summary` once at exit.
    pub event: String,
    pub ts_ms: u64,
    pub uptime_s: f64,
    /// Connections open now.
    pub open: u64,
    pub accepted: u64,
    pub closed: u64,
    /// Greetings received in full and echoed.
    pub greeted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections the peer reset (RST). Not an error: clients close with linger 0 at teardown.
    #[serde(default)]
    pub resets: u64,
    /// By kind: `garbage`, `overflow` (peer writes faster than it reads), `incomplete`, accept errnos…
    pub errors: BTreeMap<String, u64>,
    pub rss_bytes: u64,
    pub procs: usize,
    /// Threads alive in the server's processes (worker processes' summed; the supervisor's own
    /// are not counted).
    #[serde(default)]
    pub threads: u64,
}

/// A client stats line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientStats {
    /// `tick` every second, `summary` once at exit.
    pub event: String,
    pub ts_ms: u64,
    pub uptime_s: f64,
    pub target: u64,
    /// connect() calls made.
    pub attempted: u64,
    /// Connects in flight.
    pub connecting: u64,
    /// Connections whose echo came back byte for byte.
    pub verified: u64,
    /// Verified connections open now.
    pub open: u64,
    /// Verified connections that the peer closed or reset afterwards.
    pub dropped: u64,
    /// By errno name (`ECONNREFUSED`…), plus `echo_mismatch`, `timeout`.
    pub errors: BTreeMap<String, u64>,
    pub rss_bytes: u64,
    pub procs: usize,
    /// Seconds from start until `verified` reached `target`, once it has.
    pub time_to_target_s: Option<f64>,
    pub connect_latency_us: Option<Percentiles>,
    pub rtt_us: Option<Percentiles>,
    /// Base64 HdrHistogram V2 of connect latency (µs), so processes and hosts merge exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_hist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_hist: Option<String>,
    /// Messages sent after the opening exchange (`--message-interval`), and how many of them
    /// the server answered: a model that never reads after the greeting answers none.
    #[serde(default)]
    pub messages_sent: u64,
    #[serde(default)]
    pub messages_answered: u64,
}

fn absorb_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl ServerStats {
    /// Adds another process's figures into this one (multi-process servers).
    pub fn absorb(&mut self, o: &ServerStats) {
        self.open += o.open;
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.greeted += o.greeted;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.resets += o.resets;
        self.rss_bytes += o.rss_bytes;
        self.procs += o.procs;
        self.threads += o.threads;
        absorb_errors(&mut self.errors, &o.errors);
    }
}

impl ClientStats {
    /// Adds another process's counters into this one. Percentiles are not additive: the caller
    /// merges the histograms and sets them.
    pub fn absorb(&mut self, o: &ClientStats) {
        self.target += o.target;
        self.attempted += o.attempted;
        self.connecting += o.connecting;
        self.verified += o.verified;
        self.open += o.open;
        self.dropped += o.dropped;
        self.rss_bytes += o.rss_bytes;
        self.procs += o.procs;
        self.messages_sent += o.messages_sent;
        self.messages_answered += o.messages_answered;
        absorb_errors(&mut self.errors, &o.errors);
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A stats line that several processes' or hosts' lines merge into.
pub trait StatsLine: Serialize + DeserializeOwned + Clone + Default {
    /// `tick` or `summary`.
    fn event(&self) -> &str;
    /// One line for the parts together: counters summed, histograms merged. Its event, time
    /// and uptime are left for [`StatsLine::stamp`].
    fn merge<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self
    where
        Self: 'a;
    /// Names a merged line and adds the memory of the process that prints it.
    fn stamp(&mut self, event: &str, uptime_s: f64, own_rss_bytes: u64);
}

/// `event` and `stamp` for a line with the fields every stats line has (`event`, `ts_ms`,
/// `uptime_s`, `rss_bytes`), written once for both kinds.
macro_rules! header_fields {
    () => {
        fn event(&self) -> &str {
            &self.event
        }

        fn stamp(&mut self, event: &str, uptime_s: f64, own_rss_bytes: u64) {
            self.event = event.into();
            self.ts_ms = now_ms();
            self.uptime_s = uptime_s;
            self.rss_bytes += own_rss_bytes;
        }
    };
}

impl StatsLine for ServerStats {
    header_fields!();

    fn merge<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self {
        let mut all = ServerStats::default();
        for p in parts {
            all.absorb(p);
        }
        all
    }
}

impl StatsLine for ClientStats {
    header_fields!();

    /// Latency histograms are merged exactly; the whole reached its target when its last part
    /// did (the parts started together), and only if every part did.
    fn merge<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self {
        let mut all = ClientStats::default();
        let (mut connect, mut rtt) = (Vec::new(), Vec::new());
        let mut reached: Option<f64> = Some(0.0);
        for p in parts {
            all.absorb(p);
            connect.extend(p.connect_hist.as_deref());
            rtt.extend(p.rtt_hist.as_deref());
            reached = match (reached, p.time_to_target_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        all.time_to_target_s = reached.filter(|_| all.verified >= all.target && all.target > 0);
        let connect = hist::merge_encoded(connect);
        let rtt = hist::merge_encoded(rtt);
        (all.connect_latency_us, all.connect_hist) = (connect.percentiles(), connect.encode());
        (all.rtt_us, all.rtt_hist) = (rtt.percentiles(), rtt.encode());
        all
    }
}

/// Prints one JSON line on stdout and flushes it, so a reader on a pipe sees it at once.
pub fn emit<T: Serialize>(v: &T) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
