//! The limiting factor: which limit a run hit first, in one sentence, with the line of evidence
//! that shows it. `c1m run` records it in run.json when it knows; otherwise it is derived here
//! from errors by errno (with the time each first appeared), kernel log lines, the kernel TCP
//! memory series, the rate setting and how the series ended.

use super::fmt::{int, num};
use super::load::RunData;
use super::model::{Limit, RunReport};

/// A piece of evidence that a given limit was hit.
struct Clue {
    kind: &'static str,
    /// Seconds since start when first seen (None: only totals known).
    first_t: Option<f64>,
    count: u64,
    evidence: String,
}

use c1m_rundir::limit_kind as errno_kind;

pub fn limiting_factor(data: &RunData, r: &RunReport) -> Limit {
    if let Some(l) = data.summary.as_ref().and_then(|s| s.limit.as_ref()) {
        if !l.kind.is_empty() {
            return Limit {
                kind: l.kind.clone(),
                sentence: l.sentence.clone(),
                evidence: l.evidence.clone(),
                source: "run.json".into(),
            };
        }
    }
    let mut l = derive(data, r);
    l.source = "derived".into();
    l
}

fn derive(data: &RunData, r: &RunReport) -> Limit {
    let peak = r.established_peak.unwrap_or(0);
    let mut clues = errno_clues(data, r);
    clues.extend(log_clues(data));
    clues.extend(tcp_mem_clue(data, r));
    // Earliest first; without times, the most frequent.
    clues.sort_by(|a, b| {
        let ta = a.first_t.unwrap_or(f64::INFINITY);
        let tb = b.first_t.unwrap_or(f64::INFINITY);
        ta.total_cmp(&tb).then(b.count.cmp(&a.count))
    });
    if let Some(c) = clues.into_iter().next() {
        return Limit {
            kind: c.kind.into(),
            sentence: sentence(c.kind, peak, r),
            evidence: c.evidence,
            source: String::new(),
        };
    }
    if let Some(l) = rate_limit(r) {
        return l;
    }
    let target = r.target.unwrap_or(0);
    if r.target_reached {
        let tt = r
            .time_to_target_s
            .map(|t| format!(" in {} s", num(t, 2)))
            .unwrap_or_default();
        return Limit {
            kind: "none".into(),
            sentence: format!(
                "No limit was hit: all {} connections were established{tt}.",
                int(target.max(peak))
            ),
            evidence: format!(
                "peak {} of target {}; errors: {}",
                int(peak),
                int(target),
                int(r.errors_total)
            ),
            source: String::new(),
        };
    }
    match r.outcome.as_str() {
        "interrupted" => {
            return Limit {
                kind: "interrupted".into(),
                sentence: format!(
                    "The run was interrupted at {} of {} connections before any limit was hit.",
                    int(peak),
                    int(target)
                ),
                evidence: last_sample(r),
                source: String::new(),
            }
        }
        "failed" => {
            let failure = r
                .hosts
                .iter()
                .find_map(|h| Some(format!("{}: {}", h.name, h.failure.as_ref()?)))
                .or_else(|| r.reason.clone())
                .unwrap_or_else(|| "outcome failed".into());
            return Limit {
                kind: "failed".into(),
                sentence: format!(
                    "The run failed at {} of {} connections before any limit was hit.",
                    int(peak),
                    int(target)
                ),
                evidence: failure,
                source: String::new(),
            };
        }
        _ => {}
    }
    let still_rising = data
        .events
        .as_deref()
        .and_then(|e| e.last())
        .is_some_and(|e| e.connect_rate > 0.0 || e.connecting > 0);
    if still_rising || r.outcome == "running" {
        return Limit {
            kind: "time".into(),
            sentence: format!(
                "Time ran out first: connections were still rising at {} of {} when the series ended.",
                int(peak),
                int(target)
            ),
            evidence: last_sample(r),
            source: String::new(),
        };
    }
    Limit {
        kind: "unknown".into(),
        sentence: format!(
            "Connections stopped at {} of {} without an error that names a limit.",
            int(peak),
            int(target)
        ),
        evidence: last_sample(r),
        source: String::new(),
    }
}

fn last_sample(r: &RunReport) -> String {
    match (r.samples.last_t, r.samples.last_established) {
        (Some(t), Some(e)) => format!(
            "last sample t={} s: {} established, {} errors",
            num(t, 1),
            int(e),
            int(r.errors_total)
        ),
        _ => "no time series (events.jsonl missing or empty)".into(),
    }
}

fn sentence(kind: &str, peak: u64, r: &RunReport) -> String {
    let at = format!(
        "at {} of {} connections",
        int(peak),
        int(r.target.unwrap_or(0))
    );
    match kind {
        "fd_cap" => format!("The file-descriptor cap was hit first {at}: sockets failed with EMFILE/ENFILE (nofile or fs.file-max too low)."),
        "ports_x_ips" => format!("Local ports ran out first {at}: connect() failed with EADDRNOTAVAIL (server ports × client source IPs exhausted)."),
        "conntrack" => format!("The conntrack table filled up first {at}: the kernel dropped new connections (raise net.netfilter.nf_conntrack_max or skip conntrack)."),
        "tcp_mem" => format!("TCP memory pressure was hit first {at}: the kernel's TCP pages reached net.ipv4.tcp_mem's pressure threshold."),
        "memory" => format!("Memory ran out first {at}: the kernel refused allocations (ENOMEM/ENOBUFS or the OOM killer)."),
        _ => format!("A limit was hit {at}."),
    }
}

fn errno_clues(data: &RunData, r: &RunReport) -> Vec<Clue> {
    let mut clues = Vec::new();
    for h in &r.hosts {
        for (errno, &count) in &h.errors {
            let Some(kind) = errno_kind(errno) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let first_t = data.hosts.get(&h.name).and_then(|f| {
                let c = f.client.as_ref().and_then(|lines| {
                    lines
                        .iter()
                        .find(|l| l.errors.get(errno).is_some_and(|&n| n > 0))
                        .map(|l| l.uptime_s)
                });
                let s = f.server.as_ref().and_then(|lines| {
                    lines
                        .iter()
                        .find(|l| l.errors.get(errno).is_some_and(|&n| n > 0))
                        .map(|l| l.uptime_s)
                });
                match (c, s) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            });
            let when = first_t
                .map(|t| format!(" from t={} s", num(t, 1)))
                .unwrap_or_default();
            let mut evidence = format!("{}: {errno} ×{}{when}", h.name, int(count));
            let context = context_for(kind, h, r);
            if !context.is_empty() {
                evidence.push_str("; ");
                evidence.push_str(&context);
            }
            clues.push(Clue {
                kind,
                first_t,
                count,
                evidence,
            });
        }
    }
    // Errors known only as totals (no per-host breakdown).
    if clues.is_empty() {
        for (errno, &count) in &r.errors {
            if let Some(kind) = errno_kind(errno).filter(|_| count > 0) {
                clues.push(Clue {
                    kind,
                    first_t: None,
                    count,
                    evidence: format!("all hosts: {errno} ×{}", int(count)),
                });
            }
        }
    }
    clues
}

/// The tuning values that explain a limit, as `key=value` pairs.
fn context_for(kind: &str, h: &super::model::HostReport, r: &RunReport) -> String {
    let keys: &[&str] = match kind {
        "fd_cap" => &["nofile_hard", "nofile_soft", "fs.nr_open", "fs.file-max"],
        "ports_x_ips" => &["net.ipv4.ip_local_port_range"],
        "memory" => &["MemTotal", "mem_total"],
        _ => &[],
    };
    let mut parts: Vec<String> = keys
        .iter()
        .filter_map(|k| h.tuning.get(*k).map(|v| format!("{k}={v}")))
        .collect();
    if kind == "ports_x_ips" {
        if let Some(s) = &r.settings {
            parts.push(format!(
                "{} server ports × {} source IP(s)",
                s.ports,
                s.source_ips.len().max(1)
            ));
        }
    }
    parts.join(", ")
}

fn log_clues(data: &RunData) -> Vec<Clue> {
    let mut clues = Vec::new();
    for (name, files) in &data.hosts {
        for line in &files.log_hits {
            let lower = line.to_ascii_lowercase();
            let kind = if lower.contains("conntrack") && lower.contains("table full") {
                "conntrack"
            } else if lower.contains("tcp: out of memory") || lower.contains("orphaned sockets") {
                "tcp_mem"
            } else if lower.contains("out of memory")
                || lower.contains("oom-kill")
                || lower.contains("killed process")
            {
                "memory"
            } else if lower.contains("too many open files") {
                "fd_cap"
            } else {
                continue;
            };
            clues.push(Clue {
                kind,
                first_t: None,
                count: 1,
                evidence: format!("{name}/{line}"),
            });
        }
    }
    clues
}

/// TCP pages reaching tcp_mem's pressure threshold (its middle value) on any host.
fn tcp_mem_clue(data: &RunData, r: &RunReport) -> Option<Clue> {
    let pressure: u64 = r.hosts.iter().find_map(|h| {
        let v = h.tuning.get("net.ipv4.tcp_mem")?;
        v.split_whitespace().nth(1)?.parse().ok()
    })?;
    let e = data
        .events
        .as_deref()?
        .iter()
        .find(|e| pressure > 0 && e.tcp_mem_pages >= pressure)?;
    Some(Clue {
        kind: "tcp_mem",
        first_t: Some(e.t),
        count: 1,
        evidence: format!(
            "t={} s: TCP mem {} pages ≥ tcp_mem pressure {} pages",
            num(e.t, 1),
            int(e.tcp_mem_pages),
            int(pressure)
        ),
    })
}

/// `--rate R` set the pace when the connect rate sat at R for most of the ramp.
fn rate_limit(r: &RunReport) -> Option<Limit> {
    let rate = r.settings.as_ref()?.rate? as f64;
    let mean = r.connect_rate_mean?;
    let peak = r.connect_rate_peak?;
    if rate <= 0.0 || mean < 0.8 * rate || peak > 1.25 * rate {
        return None;
    }
    Some(Limit {
        kind: "rate".into(),
        sentence: format!(
            "The --rate cap of {}/s set the pace: connections came at that rate until the run {}.",
            int(rate as u64),
            if r.target_reached {
                "reached its target"
            } else {
                "ended"
            }
        ),
        evidence: format!(
            "connect rate mean {}/s, peak {}/s, cap {}/s",
            num(mean, 0),
            num(peak, 0),
            int(rate as u64)
        ),
        source: String::new(),
    })
}
