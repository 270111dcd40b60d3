//! The layout shared by the human formats: a report as a list of blocks (headings, notices,
//! label/value pairs, tables). Table, markdown and HTML each render the same blocks, so they
//! show the same figures with the same rounding.

use super::fmt::{bytes, int, num, opt};
use super::model::{CompareRow, RunReport};
use c1m_proto::stats::Percentiles;

pub enum Block {
    Title(String),
    Notices(Vec<String>),
    Pairs {
        title: String,
        rows: Vec<(String, String)>,
    },
    Table {
        title: String,
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// The limiting factor: a sentence and its evidence.
    Limit {
        sentence: String,
        evidence: String,
    },
    /// Charts of the run named; only HTML draws them.
    Charts(String),
}

fn s(x: &str) -> String {
    x.to_string()
}

fn us(v: u64) -> String {
    format!("{} µs", int(v))
}

fn latency_row(label: &str, p: &Percentiles) -> Vec<String> {
    vec![
        s(label),
        int(p.count),
        us(p.p50),
        us(p.p90),
        us(p.p99),
        us(p.p999),
        us(p.max),
        format!("{} µs", num(p.mean, 1)),
    ]
}

fn errors_inline(errors: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = errors
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, n)| format!("{k} ×{}", int(*n)))
        .collect();
    if parts.is_empty() {
        s("none")
    } else {
        parts.join(", ")
    }
}

/// The key of a comparison's own charts among the runs' charts.
pub const COMPARE_CHARTS: &str = "/compare";

/// The blocks of one run.
pub fn run_blocks(r: &RunReport) -> Vec<Block> {
    let mut out = vec![Block::Title(format!("Run {} ({})", r.name, r.path))];
    if !r.notices.is_empty() {
        out.push(Block::Notices(
            r.notices
                .iter()
                .map(|n| format!("{}: {}", n.kind, n.message))
                .collect(),
        ));
    }
    let time_to_target = match (r.target_reached, r.time_to_target_s) {
        (true, Some(t)) => format!("{} s", num(t, 2)),
        (true, None) => s("reached (time unknown)"),
        (false, _) => format!(
            "not reached: {}",
            r.not_reached_reason.as_deref().unwrap_or("reason unknown")
        ),
    };
    let m = &r.memory;
    let conns = r.established_peak.unwrap_or(0);
    let user = opt(m.user_bytes_per_conn, |v| {
        format!(
            "{} ({} server RSS / {} conns)",
            bytes(v),
            opt(m.server_rss_bytes, |b| bytes(b as f64)),
            int(conns)
        )
    });
    let kernel = opt(m.kernel_bytes_per_conn, |v| {
        format!(
            "{} (kernel {} slab, TCP pages, page tables / {} conns{})",
            bytes(v),
            opt(m.kernel_bytes, |b| {
                format!("{}{}", if b >= 0 { "+" } else { "" }, bytes(b as f64))
            }),
            int(conns),
            if m.both_ends {
                ", both ends on one kernel"
            } else {
                ""
            }
        )
    });
    let mut rows = vec![
        (s("outcome"), r.outcome.clone()),
        (s("target"), opt(r.target, int)),
        (s("peak established"), opt(r.established_peak, int)),
        (s("server open peak"), opt(r.server_open_peak, int)),
        (s("time to target"), time_to_target),
        (
            s("connect rate peak"),
            opt(r.connect_rate_peak, |v| format!("{}/s", num(v, 1))),
        ),
        (
            s("connect rate mean"),
            opt(r.connect_rate_mean, |v| format!("{}/s", num(v, 1))),
        ),
        (s("memory per conn, user"), user),
        (s("memory per conn, kernel"), kernel),
        (
            s("errors"),
            format!("{} ({})", int(r.errors_total), errors_inline(&r.errors)),
        ),
        (
            s("samples"),
            format!(
                "{} (last t={} s)",
                int(r.samples.count as u64),
                opt(r.samples.last_t, |t| num(t, 1))
            ),
        ),
    ];
    if let Some(set) = &r.settings {
        rows.push((
            s("settings"),
            format!(
                "connections {}, ports {}, rate {}, hold {} s, source IPs {}",
                int(set.connections),
                set.ports,
                opt(set.rate, |v| format!("{}/s", int(v))),
                num(set.hold_s, 1),
                if set.source_ips.is_empty() {
                    s("default")
                } else {
                    set.source_ips.join(" ")
                }
            ),
        ));
    }
    if let Some(started) = &r.started_at {
        rows.push((
            s("started / finished"),
            format!(
                "{started} / {}",
                r.finished_at.as_deref().unwrap_or("not finished")
            ),
        ));
    }
    if !r.charts.is_empty() {
        rows.push((
            s("charts"),
            format!("{} in {}", r.charts.join(", "), r.path),
        ));
    }
    out.push(Block::Pairs {
        title: s("Summary"),
        rows,
    });
    if let Some(server) = &r.server {
        out.push(server_block(server));
    }
    out.push(Block::Limit {
        sentence: r.limit.sentence.clone(),
        evidence: format!(
            "{} (limit {}, {})",
            r.limit.evidence, r.limit.kind, r.limit.source
        ),
    });
    out.push(Block::Charts(r.name.clone()));
    let lat_head: Vec<String> = ["", "count", "p50", "p90", "p99", "p99.9", "max", "mean"]
        .iter()
        .map(|x| s(x))
        .collect();
    let mut lat_rows = Vec::new();
    if let Some(p) = &r.connect_latency_us {
        lat_rows.push(latency_row("connect", p));
    }
    if let Some(p) = &r.rtt_us {
        lat_rows.push(latency_row("round trip", p));
    }
    if lat_rows.is_empty() {
        out.push(Block::Pairs {
            title: s("Latency"),
            rows: vec![(
                s("connect"),
                s("unknown (no run.json percentiles, no client histograms)"),
            )],
        });
    } else {
        out.push(Block::Table {
            title: format!(
                "Latency{}",
                r.connect_latency_source
                    .as_deref()
                    .map(|x| format!(" (connect: from {x})"))
                    .unwrap_or_default()
            ),
            head: lat_head,
            rows: lat_rows,
        });
    }
    if let Some(m) = r.messages {
        out.push(Block::Pairs {
            title: s("Messages after the greeting"),
            rows: vec![(s("answered"), m.sentence())],
        });
    }
    out.push(Block::Table {
        title: s("Hosts"),
        head: [
            "host",
            "role",
            "address",
            "share",
            "peak",
            "rate peak",
            "to target",
            "p50",
            "p99",
            "errors",
            "RSS",
            "layout",
            "failure",
        ]
        .iter()
        .map(|x| s(x))
        .collect(),
        rows: r
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.name.clone(),
                    h.role.clone(),
                    h.address.clone().unwrap_or_else(|| s("–")),
                    opt(h.share, int),
                    opt(h.established_peak, int),
                    opt(h.connect_rate_peak, |v| format!("{}/s", num(v, 1))),
                    opt(h.time_to_target_s, |t| format!("{} s", num(t, 2))),
                    opt(h.connect_latency_us.as_ref(), |p| us(p.p50)),
                    opt(h.connect_latency_us.as_ref(), |p| us(p.p99)),
                    errors_inline(&h.errors),
                    opt(h.rss_bytes, |b| bytes(b as f64)),
                    h.layout.clone().unwrap_or_else(|| s("–")),
                    h.failure.clone().unwrap_or_else(|| s("–")),
                ]
            })
            .collect(),
    });
    let err_rows: Vec<Vec<String>> = r
        .hosts
        .iter()
        .flat_map(|h| {
            h.errors
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| vec![h.name.clone(), k.clone(), int(*n)])
        })
        .collect();
    if !err_rows.is_empty() {
        out.push(Block::Table {
            title: s("Errors by host and errno"),
            head: vec![s("host"), s("errno"), s("count")],
            rows: err_rows,
        });
    }
    let tuning_rows: Vec<Vec<String>> = r
        .hosts
        .iter()
        .flat_map(|h| {
            h.tuning
                .iter()
                .map(|(k, v)| vec![h.name.clone(), k.clone(), v.clone()])
        })
        .collect();
    out.push(if tuning_rows.is_empty() {
        Block::Pairs {
            title: s("Tuning in effect"),
            rows: vec![(s("all hosts"), s("not recorded"))],
        }
    } else {
        Block::Table {
            title: s("Tuning in effect"),
            head: vec![s("host"), s("setting"), s("value")],
            rows: tuning_rows,
        }
    });
    out
}

/// The server under test, as measured on its host.
fn server_block(sv: &c1m_rundir::ServerFigures) -> Block {
    let kind = match sv.kind {
        c1m_rundir::ServerKind::C1mServer => "c1m-server",
        c1m_rundir::ServerKind::Command => "started by c1m",
        c1m_rundir::ServerKind::External => "already running",
    };
    let mut rows = vec![
        (s("server"), format!("{} ({kind})", sv.name)),
        (s("protocol"), sv.protocol.clone()),
        (
            s("where"),
            format!("{} {}:{}", sv.host, sv.address, sv.ports),
        ),
    ];
    if let Some(cmd) = &sv.command {
        rows.push((s("command"), cmd.clone()));
    }
    match sv.pid {
        None => rows.push((
            s("measured"),
            s("no: its process was not known (give --server-pid or c1m_server_pid)"),
        )),
        Some(pid) => {
            rows.push((
                s("process tree"),
                format!(
                    "pid {pid}: {} process(es), {} thread(s)",
                    opt(sv.processes, int),
                    opt(sv.threads, int)
                ),
            ));
            rows.push((
                s("memory per conn, server RSS"),
                opt(sv.rss_bytes_per_conn, bytes),
            ));
            rows.push((
                s("memory per conn, server PSS"),
                opt(sv.pss_bytes_per_conn, bytes),
            ));
            rows.push((
                s("server CPU per 1,000 conns"),
                opt(sv.cpu_seconds_per_1k_conns, |v| format!("{} s", num(v, 3))),
            ));
        }
    }
    for l in &sv.limits {
        rows.push((
            format!("open-file limit, {} ({})", l.comm, l.pid),
            format!(
                "soft {}, hard {}, {} open before the run",
                int(l.nofile_soft),
                int(l.nofile_hard),
                int(l.open_fds)
            ),
        ));
    }
    if let Some(c) = sv.predicted_ceiling {
        let why = sv
            .ceiling_rule
            .as_ref()
            .map_or(String::new(), |r| format!(" ({r})"));
        rows.push((
            s("predicted ceiling"),
            format!("{} connections{why}", int(c)),
        ));
    }
    Block::Pairs {
        title: s("Server under test"),
        rows,
    }
}

/// How a compared metric is printed.
fn fmt_metric(metric: &str, v: f64) -> String {
    if metric.contains("cpu_s") {
        format!("{} s", num(v, 3))
    } else if metric.ends_with("_us") {
        us(v.round() as u64)
    } else if metric.ends_with("_s") {
        format!("{} s", num(v, 2))
    } else if metric.starts_with("connect_rate") {
        format!("{}/s", num(v, 1))
    } else if metric.ends_with("per_conn") {
        bytes(v)
    } else {
        num(v, 0)
    }
}

fn fmt_delta(metric: &str, d: f64, pct: Option<f64>) -> String {
    let sign = if d > 0.0 { "+" } else { "" };
    let abs = if metric.contains("cpu_s") {
        format!("{sign}{} s", num(d, 3))
    } else if metric.ends_with("_us") {
        format!("{sign}{} µs", num(d, 0))
    } else if metric.ends_with("per_conn") {
        format!("{sign}{}", bytes(d))
    } else if metric.ends_with("_s") {
        format!("{sign}{} s", num(d, 2))
    } else if metric.starts_with("connect_rate") {
        format!("{sign}{}/s", num(d, 1))
    } else {
        format!("{sign}{}", num(d, 0))
    };
    match pct {
        Some(p) => format!("{abs} ({}{}%)", if p > 0.0 { "+" } else { "" }, num(p, 1)),
        None => abs,
    }
}

/// Most runs whose comparison table also has a Δ column per later run.
const MAX_RUNS_WITH_DELTAS: usize = 3;

/// The blocks of `--compare`: one table, a column per run and, for up to three runs, a Δ
/// column per later run.
pub fn compare_blocks(runs: &[RunReport], rows: &[CompareRow]) -> Vec<Block> {
    let title = if runs.len() <= MAX_RUNS_WITH_DELTAS {
        format!(
            "Comparison of {} runs (Δ against {})",
            runs.len(),
            runs.first().map(|r| r.name.as_str()).unwrap_or("?")
        )
    } else {
        format!("Comparison of {} runs", runs.len())
    };
    let mut out = vec![Block::Title(title)];
    let notices: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.notices
                .iter()
                .map(move |n| format!("{}: {}: {}", r.name, n.kind, n.message))
        })
        .collect();
    if !notices.is_empty() {
        out.push(Block::Notices(notices));
    }
    // A Δ column per later run reads well for two or three runs; beyond that (a series of
    // server models) the table would run off the page, so it shows the values alone and the
    // deltas stay in the JSON and CSV exports.
    let deltas = runs.len() <= MAX_RUNS_WITH_DELTAS;
    let mut head = vec![s("metric")];
    for (i, r) in runs.iter().enumerate() {
        head.push(r.label.clone());
        if i > 0 && deltas {
            head.push(format!("Δ {}", r.label));
        }
    }
    let mut table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.metric.clone()];
            for i in 0..row.values.len() {
                cells.push(opt(row.values[i], |v| fmt_metric(&row.metric, v)));
                if i > 0 && deltas {
                    cells.push(opt(row.deltas[i], |d| {
                        fmt_delta(&row.metric, d, row.delta_pct[i])
                    }));
                }
            }
            cells
        })
        .collect();
    let mut outcome = vec![s("outcome")];
    let mut limit = vec![s("limit")];
    for (i, r) in runs.iter().enumerate() {
        outcome.push(r.outcome.clone());
        limit.push(r.limit.kind.clone());
        if i > 0 && deltas {
            outcome.push(String::new());
            limit.push(String::new());
        }
    }
    table_rows.insert(0, outcome);
    table_rows.push(limit);
    out.push(Block::Table {
        title: s("Side by side"),
        head,
        rows: table_rows,
    });
    for r in runs {
        let messages = r
            .messages
            .map(|m| format!(" {}.", m.sentence()))
            .unwrap_or_default();
        out.push(Block::Limit {
            sentence: format!("{}: {}{messages}", r.label, r.limit.sentence),
            evidence: r.limit.evidence.clone(),
        });
    }
    out.push(Block::Charts(COMPARE_CHARTS.into()));
    for r in runs {
        out.push(Block::Charts(r.name.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_head(runs: usize) -> Vec<String> {
        let runs: Vec<RunReport> = (0..runs)
            .map(|i| RunReport {
                name: format!("run-{i}"),
                label: format!("model-{i}"),
                ..Default::default()
            })
            .collect();
        let rows = super::super::compare::rows(&runs);
        compare_blocks(&runs, &rows)
            .into_iter()
            .find_map(|b| match b {
                Block::Table { head, rows, .. } => {
                    assert!(rows.iter().all(|r| r.len() == head.len()));
                    Some(head)
                }
                _ => None,
            })
            .expect("a side-by-side table")
    }

    #[test]
    fn deltas_for_up_to_three_runs_values_alone_beyond() {
        assert_eq!(
            table_head(3),
            [
                "metric",
                "model-0",
                "model-1",
                "Δ model-1",
                "model-2",
                "Δ model-2"
            ]
        );
        let nine = table_head(9);
        assert_eq!(nine.len(), 10, "{nine:?}");
        assert!(nine.iter().all(|h| !h.starts_with('Δ')), "{nine:?}");
    }
}
