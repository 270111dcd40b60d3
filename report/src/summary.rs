//! From a loaded run directory to a [`RunReport`]. The time-series figures (peaks, rates, memory
//! at the peak) are recomputed from events.jsonl whenever it has lines, so the table and the
//! time series always agree; run.json fills in what events do not carry (latency, tuning,
//! settings) and stands in for events.jsonl when that is missing.

use super::hosts;
use super::limit;
use super::load::{Notice, RunData};
use super::model::{Memory, RunReport, Samples};
use c1m_proto::hist;
use c1m_rundir::Event;

/// Peak figures read off the time series.
#[derive(Debug, Clone, Default)]
pub struct SeriesFigures {
    pub established_peak: u64,
    /// The first sample at the peak (when the ramp got there).
    pub peak_index: usize,
    /// The last sample at the peak: memory is read there, as `c1m run` does for run.json, so
    /// the two agree (and the hold's settled RSS counts, not the ramp's).
    pub peak_last_index: usize,
    pub server_open_peak: u64,
    pub connect_rate_peak: f64,
}

/// Peaks of a non-empty series.
pub fn series_figures(events: &[Event]) -> Option<SeriesFigures> {
    if events.is_empty() {
        return None;
    }
    let mut f = SeriesFigures::default();
    for (i, e) in events.iter().enumerate() {
        if e.established > f.established_peak || i == 0 {
            f.established_peak = e.established;
            f.peak_index = i;
        }
        if e.established == f.established_peak {
            f.peak_last_index = i;
        }
        f.server_open_peak = f.server_open_peak.max(e.server_open);
        f.connect_rate_peak = f.connect_rate_peak.max(e.connect_rate);
    }
    Some(f)
}

/// Bytes of kernel memory per connection above which the figure is noise (both ends, with
/// default buffers, cost well under this).
const KERNEL_PER_CONN_PLAUSIBLE: f64 = 64.0 * 1024.0;

pub fn build(data: &RunData, path: &str) -> RunReport {
    let s = data.summary.as_ref();
    let events: &[Event] = data.events.as_deref().unwrap_or(&[]);
    let series = series_figures(events);
    let mut notices = data.notices.clone();

    let target = s
        .map(|s| s.target)
        .filter(|&t| t > 0)
        .or_else(|| s.map(|s| s.settings.connections).filter(|&t| t > 0))
        .or_else(|| {
            let t: u64 = data
                .hosts
                .values()
                .filter_map(|h| h.client.as_ref()?.first().map(|c| c.target))
                .sum();
            (t > 0).then_some(t)
        });

    // Without a series or run.json, the binaries' own lines still tell the peaks (summed over
    // hosts: their peaks are close in time since all clients start at once).
    let from_hosts = |get: fn(&super::load::HostFiles) -> Option<u64>| -> Option<u64> {
        let peaks: Vec<u64> = data.hosts.values().filter_map(get).collect();
        (!peaks.is_empty()).then(|| peaks.iter().sum())
    };
    let established_peak = series
        .as_ref()
        .map(|f| f.established_peak)
        .or_else(|| s.map(|s| s.established_peak))
        .or_else(|| from_hosts(|h| h.client.as_ref()?.iter().map(|c| c.open).max()));
    let server_open_peak = series
        .as_ref()
        .map(|f| f.server_open_peak)
        .or_else(|| s.map(|s| s.server_open_peak))
        .or_else(|| from_hosts(|h| h.server.as_ref()?.iter().map(|c| c.open).max()));
    let connect_rate_peak = series
        .as_ref()
        .map(|f| f.connect_rate_peak)
        .or_else(|| s.map(|s| s.connect_rate_peak));

    if let (Some(s), Some(f)) = (s, &series) {
        // A run still writing its series naturally trails run.json's placeholder zeros.
        if s.established_peak != 0 && s.established_peak != f.established_peak {
            notices.push(Notice::new(
                "mismatch",
                format!(
                    "run.json says established_peak {} but events.jsonl peaks at {}; the table shows events.jsonl",
                    s.established_peak, f.established_peak
                ),
            ));
        }
    }

    // Time to target: the clients time it exactly; 1 s samples only bound it.
    let time_to_target_s = s.and_then(|s| s.time_to_target_s).or_else(|| {
        let target = target?;
        events
            .iter()
            .find(|e| e.established >= target)
            .map(|e| e.t)
            .or_else(|| {
                // The last client to reach its share sets the time, if every client did.
                let clients: Vec<Option<f64>> = data
                    .hosts
                    .values()
                    .filter_map(|h| h.client_last().map(|c| c.time_to_target_s))
                    .collect();
                if clients.is_empty() {
                    return None;
                }
                clients
                    .into_iter()
                    .try_fold(0.0f64, |acc, t| Some(acc.max(t?)))
            })
    });
    let target_reached = match (target, established_peak) {
        (Some(t), Some(p)) => p >= t || time_to_target_s.is_some(),
        _ => time_to_target_s.is_some(),
    };
    let connect_rate_mean = match (time_to_target_s, target, &series) {
        (Some(tt), Some(target), _) if tt > 0.0 => Some(target as f64 / tt),
        (_, _, Some(f)) => {
            let t = events[f.peak_index].t;
            (t > 0.0).then(|| f.established_peak as f64 / t)
        }
        _ => s.map(|s| s.connect_rate_mean),
    };

    let (connect_latency_us, connect_latency_source) = connect_latency(data, &mut notices);
    let rtt_us = s.and_then(|s| s.rtt_us.clone()).or_else(|| {
        hist::merge_encoded(
            data.hosts
                .values()
                .filter_map(|h| h.client_summary()?.rtt_hist.as_deref()),
        )
        .percentiles()
    });
    // From run.json; without it, from the clients' own summaries.
    let (sent, answered) = match s {
        Some(s) => (s.messages_sent, s.messages_answered),
        None => data
            .hosts
            .values()
            .filter_map(|h| h.client_summary())
            .fold((0, 0), |(a, b), c| {
                (a + c.messages_sent, b + c.messages_answered)
            }),
    };
    let messages = (sent > 0).then_some(super::model::Messages { sent, answered });

    let hosts = hosts::host_reports(data, events);
    let errors = hosts::total_errors(data, &hosts);
    let errors_total = errors.values().sum();
    let memory = memory(data, events, series.as_ref());
    if let Some(k) = memory.kernel_bytes_per_conn {
        // A socket pair costs a few KiB of kernel memory; far outside that, something else on
        // the machine moved the (machine-wide) counters during the run.
        if !(0.0..=KERNEL_PER_CONN_PLAUSIBLE).contains(&k) {
            notices.push(Notice::new(
                "suspect",
                format!(
                    "kernel memory per connection is {}: slab and page counts are machine-wide, so other activity during the run moved them; the kernel figure is not the sockets' cost",
                    super::fmt::bytes(k)
                ),
            ));
        }
    }
    let samples = Samples {
        count: events.len(),
        last_t: events.last().map(|e| e.t),
        last_established: events.last().map(|e| e.established),
    };

    let mut report = RunReport {
        name: data.name.clone(),
        label: data.name.clone(),
        server: s.and_then(|s| s.server.clone()),
        path: path.to_string(),
        complete: false,
        notices: Vec::new(),
        outcome: s
            .map_or(c1m_rundir::Outcome::Unknown, |s| s.outcome)
            .as_str()
            .to_string(),
        reason: s.and_then(|s| s.reason.clone()),
        started_at: s.map(|s| s.started_at.clone()).filter(|x| !x.is_empty()),
        finished_at: s.and_then(|s| s.finished_at.clone()),
        inventory: s.map(|s| s.inventory.clone()).filter(|x| !x.is_empty()),
        settings: s.map(|s| s.settings.clone()),
        target,
        established_peak,
        server_open_peak,
        target_reached,
        time_to_target_s,
        not_reached_reason: None,
        connect_rate_peak,
        connect_rate_mean,
        connect_latency_us,
        connect_latency_source,
        rtt_us,
        messages,
        memory,
        errors,
        errors_total,
        limit: Default::default(),
        hosts,
        samples,
        charts: Vec::new(),
    };
    report.limit = limit::limiting_factor(data, &report);
    if !report.target_reached {
        report.not_reached_reason = Some(
            report
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| report.limit.sentence.clone()),
        );
    }
    report.complete = notices
        .iter()
        .all(|n| n.kind == "mismatch" || n.kind == "suspect");
    report.notices = notices;
    report
}

/// run.json's percentiles when it has them, else the clients' histograms merged.
fn connect_latency(
    data: &RunData,
    notices: &mut Vec<Notice>,
) -> (Option<c1m_proto::stats::Percentiles>, Option<String>) {
    if let Some(p) = data
        .summary
        .as_ref()
        .and_then(|s| s.connect_latency_us.clone())
    {
        return (Some(p), Some("run.json".into()));
    }
    let mut hists = Vec::new();
    for (name, files) in &data.hosts {
        let Some(b64) = files
            .client_summary()
            .and_then(|c| c.connect_hist.as_deref())
        else {
            continue;
        };
        match hist::decode(b64) {
            Ok(h) => hists.push(h),
            Err(e) => notices.push(Notice::new(
                "damaged",
                format!("hosts/{name}/client.jsonl: connect_hist {e}; left out of the percentiles"),
            )),
        }
    }
    match hist::merge(hists.iter()) {
        Some(h) => (Some(hist::percentiles(&h)), Some("hosts".into())),
        None => (None, None),
    }
}

fn memory(data: &RunData, events: &[Event], series: Option<&SeriesFigures>) -> Memory {
    let s = data.summary.as_ref();
    let both_ends = s.is_some_and(|s| s.kernel_memory.both_ends);
    let (slab, tcp) = match s {
        Some(s) => (
            Some(s.kernel_memory.slab_delta_bytes),
            Some(s.kernel_memory.tcp_mem_delta_bytes),
        ),
        None => (None, None),
    };
    if let Some(f) = series.filter(|f| f.established_peak > 0) {
        let e = &events[f.peak_last_index];
        let conns = f.established_peak as f64;
        return Memory {
            server_rss_bytes: Some(e.server_rss_bytes),
            client_rss_bytes: Some(e.client_rss_bytes),
            user_bytes_per_conn: Some(e.server_rss_bytes as f64 / conns),
            kernel_bytes: Some(e.kernel_bytes),
            kernel_bytes_per_conn: Some(e.kernel_bytes as f64 / conns),
            slab_delta_bytes: slab,
            tcp_mem_delta_bytes: tcp,
            both_ends,
            source: Some("events.jsonl".into()),
        };
    }
    match s {
        Some(s) if s.established_peak > 0 => Memory {
            server_rss_bytes: Some(s.server_rss_bytes),
            client_rss_bytes: Some(s.client_rss_bytes),
            user_bytes_per_conn: Some(s.user_bytes_per_conn),
            kernel_bytes: None,
            kernel_bytes_per_conn: Some(s.kernel_bytes_per_conn),
            slab_delta_bytes: slab,
            tcp_mem_delta_bytes: tcp,
            both_ends,
            source: Some("run.json".into()),
        },
        _ => {
            // Only the binaries' lines: the server's RSS at its fullest.
            let server = data
                .hosts
                .values()
                .filter_map(|h| h.server.as_ref()?.iter().max_by_key(|l| l.open))
                .fold((0u64, 0u64), |(rss, open), l| {
                    (rss + l.rss_bytes, open + l.open)
                });
            Memory {
                server_rss_bytes: (server.0 > 0).then_some(server.0),
                user_bytes_per_conn: (server.1 > 0).then(|| server.0 as f64 / server.1 as f64),
                both_ends,
                source: (server.1 > 0).then(|| "hosts".to_string()),
                ..Memory::default()
            }
        }
    }
}
