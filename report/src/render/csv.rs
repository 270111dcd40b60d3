//! `--format csv`: one row for each run's totals and one per host, plain numbers, fixed columns
//! (documented with the JSON schema), so spreadsheets and `diff` can line runs up.

use crate::model::RunReport;
use c1m_proto::stats::Percentiles;
use std::collections::BTreeMap;

pub const COLUMNS: &[&str] = &[
    "run",
    "scope",
    "role",
    "outcome",
    "complete",
    "target",
    "established_peak",
    "server_open_peak",
    "time_to_target_s",
    "connect_rate_peak",
    "connect_rate_mean",
    "connect_p50_us",
    "connect_p90_us",
    "connect_p99_us",
    "connect_p999_us",
    "connect_max_us",
    "rtt_p50_us",
    "rtt_p99_us",
    "user_bytes_per_conn",
    "kernel_bytes_per_conn",
    "rss_bytes",
    "errors_total",
    "errors",
    "limit_kind",
    "limit_sentence",
];

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn o<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn lat(p: Option<&Percentiles>) -> [String; 5] {
    match p {
        Some(p) => [p.p50, p.p90, p.p99, p.p999, p.max].map(|v| v.to_string()),
        None => Default::default(),
    }
}

/// `EADDRNOTAVAIL=12;EMFILE=3`.
fn errors(e: &BTreeMap<String, u64>) -> String {
    e.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

pub fn render(runs: &[RunReport]) -> String {
    let mut out = COLUMNS.join(",") + "\n";
    let mut push = |cells: Vec<String>| {
        let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    };
    for r in runs {
        let [p50, p90, p99, p999, max] = lat(r.connect_latency_us.as_ref());
        let mut cells = vec![
            r.name.clone(),
            "total".into(),
            String::new(),
            r.outcome.clone(),
            r.complete.to_string(),
            o(r.target),
            o(r.established_peak),
            o(r.server_open_peak),
            o(r.time_to_target_s),
            o(r.connect_rate_peak),
            o(r.connect_rate_mean),
        ];
        cells.extend([p50, p90, p99, p999, max]);
        cells.extend([
            o(r.rtt_us.as_ref().map(|p| p.p50)),
            o(r.rtt_us.as_ref().map(|p| p.p99)),
            o(r.memory.user_bytes_per_conn),
            o(r.memory.kernel_bytes_per_conn),
            o(r.memory.server_rss_bytes),
            r.errors_total.to_string(),
            errors(&r.errors),
            r.limit.kind.clone(),
            r.limit.sentence.clone(),
        ]);
        push(cells);
        for h in &r.hosts {
            let [p50, p90, p99, p999, max] = lat(h.connect_latency_us.as_ref());
            let mut cells = vec![
                r.name.clone(),
                h.name.clone(),
                h.role.clone(),
                String::new(),
                String::new(),
                o(h.share),
                o(h.established_peak),
                String::new(),
                o(h.time_to_target_s),
                o(h.connect_rate_peak),
                String::new(),
            ];
            cells.extend([p50, p90, p99, p999, max]);
            cells.extend([
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                o(h.rss_bytes),
                h.errors.values().sum::<u64>().to_string(),
                errors(&h.errors),
                String::new(),
                String::new(),
            ]);
            push(cells);
        }
    }
    out
}
