//! `--compare`: the same metrics for several runs, with deltas against the first.

use super::model::{CompareRow, RunReport};

type Metric = (&'static str, fn(&RunReport) -> Option<f64>);

/// The compared metrics, in display order. Names match the JSON export's field names.
const METRICS: &[Metric] = &[
    ("target", |r| r.target.map(|v| v as f64)),
    ("established_peak", |r| r.established_peak.map(|v| v as f64)),
    ("server_open_peak", |r| r.server_open_peak.map(|v| v as f64)),
    ("time_to_target_s", |r| r.time_to_target_s),
    ("connect_rate_peak", |r| r.connect_rate_peak),
    ("connect_rate_mean", |r| r.connect_rate_mean),
    ("connect_p50_us", |r| {
        r.connect_latency_us.as_ref().map(|p| p.p50 as f64)
    }),
    ("connect_p90_us", |r| {
        r.connect_latency_us.as_ref().map(|p| p.p90 as f64)
    }),
    ("connect_p99_us", |r| {
        r.connect_latency_us.as_ref().map(|p| p.p99 as f64)
    }),
    ("connect_p999_us", |r| {
        r.connect_latency_us.as_ref().map(|p| p.p999 as f64)
    }),
    ("connect_max_us", |r| {
        r.connect_latency_us.as_ref().map(|p| p.max as f64)
    }),
    ("rtt_p50_us", |r| r.rtt_us.as_ref().map(|p| p.p50 as f64)),
    ("rtt_p99_us", |r| r.rtt_us.as_ref().map(|p| p.p99 as f64)),
    ("messages_sent", |r| r.messages.map(|m| m.sent as f64)),
    ("messages_answered", |r| {
        r.messages.map(|m| m.answered as f64)
    }),
    ("user_bytes_per_conn", |r| r.memory.user_bytes_per_conn),
    ("kernel_bytes_per_conn", |r| r.memory.kernel_bytes_per_conn),
    ("errors_total", |r| Some(r.errors_total as f64)),
    ("server_rss_bytes_per_conn", |r| {
        r.server.as_ref()?.rss_bytes_per_conn
    }),
    ("server_pss_bytes_per_conn", |r| {
        r.server.as_ref()?.pss_bytes_per_conn
    }),
    ("server_cpu_s_per_1k_conns", |r| {
        r.server.as_ref()?.cpu_seconds_per_1k_conns
    }),
    ("server_threads", |r| {
        r.server.as_ref()?.threads.map(|v| v as f64)
    }),
    ("server_processes", |r| {
        r.server.as_ref()?.processes.map(|v| v as f64)
    }),
];

/// The figures a comparison draws as bar charts, one bar per run: (metric, title, unit).
pub const CHARTED: &[(&str, &str, &str)] = &[
    (
        "established_peak",
        "Connections held at the peak",
        "connections",
    ),
    ("time_to_target_s", "Time to target", "seconds"),
    ("connect_rate_mean", "Connect rate, mean", "connections / s"),
    ("connect_p99_us", "Connect latency p99", "µs"),
    ("rtt_p99_us", "Round trip p99", "µs"),
    (
        "server_pss_bytes_per_conn",
        "Server memory per connection (PSS)",
        "bytes",
    ),
    (
        "kernel_bytes_per_conn",
        "Kernel memory per connection",
        "bytes",
    ),
    (
        "server_cpu_s_per_1k_conns",
        "Server CPU per 1,000 connections",
        "CPU seconds",
    ),
    ("server_threads", "Server threads", "threads"),
];

pub fn rows(runs: &[RunReport]) -> Vec<CompareRow> {
    METRICS
        .iter()
        .map(|(name, get)| {
            let values: Vec<Option<f64>> = runs.iter().map(get).collect();
            let base = values.first().copied().flatten();
            let deltas: Vec<Option<f64>> = values
                .iter()
                .enumerate()
                .map(|(i, v)| if i == 0 { None } else { Some((*v)? - base?) })
                .collect();
            let delta_pct = deltas
                .iter()
                .map(|d| match (*d, base) {
                    (Some(d), Some(b)) if b != 0.0 => Some(d / b * 100.0),
                    _ => None,
                })
                .collect();
            CompareRow {
                metric: name.to_string(),
                values,
                deltas,
                delta_pct,
            }
        })
        .collect()
}
