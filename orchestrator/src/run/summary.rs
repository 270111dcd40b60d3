//! The end of a run: which limit it hit, and the summary printed for a person.

use super::RunOptions;
use c1m_proto::fmt;
use c1m_proto::stats::ClientStats;
use c1m_rundir::{LimitHit, RunSettings, RunSummary};
use std::collections::BTreeMap;

/// What the run was asked to do, as run.json records it.
pub fn run_settings(args: &RunOptions, source_ips: Vec<String>) -> RunSettings {
    RunSettings {
        connections: args.connections,
        ports: args.port_count,
        rate: args.rate,
        hold_s: args
            .hold
            .0
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::INFINITY),
        message_interval_s: args
            .message_interval
            .and_then(|s| s.0)
            .map(|d| d.as_secs_f64()),
        source_ips,
        window: args.window,
    }
}

/// The first limit the run hit, in one sentence, with its evidence.
pub fn limit_hit(
    args: &RunOptions,
    client: &ClientStats,
    errors: &BTreeMap<String, u64>,
    outcome: &str,
    reason: Option<&str>,
    cpu_busy: &[f64],
    cpu_where: &str,
) -> LimitHit {
    let top = errors.iter().max_by_key(|(_, v)| **v);
    let hit = |kind: &str, sentence: String, evidence: String| LimitHit {
        kind: kind.into(),
        sentence,
        evidence,
    };
    if outcome != "reached" {
        if let Some((name, count)) = top {
            let evidence = format!("{name} ×{count} in the client's connect errors");
            let bare = name.rsplit('_').next().unwrap_or(name);
            // A connect that times out here means SYNs were dropped: conntrack's table is the
            // usual culprit on a tuned host, so the run names it (the report stays neutral).
            let kind = if bare == "ETIMEDOUT" {
                Some("conntrack")
            } else {
                c1m_rundir::limit_kind(name)
            };
            let sentence = match (kind, bare) {
                (Some("fd_cap"), "ENFILE") => "The system-wide file limit (fs.file-max) stopped new sockets.".to_string(),
                (Some("fd_cap"), _) => "The per-table fd limit (RLIMIT_NOFILE) stopped new sockets.".into(),
                (Some("ports_x_ips"), _) => "The 4-tuple space (source IPs × server ports × local ports) ran out.".into(),
                (Some("memory"), _) => "The kernel ran out of socket memory (tcp_mem or RAM).".into(),
                (Some("conntrack"), _) => "Connects timed out: SYNs were dropped (conntrack table, accept queues or memory).".into(),
                _ => format!("Connects failed with {name}."),
            };
            return hit(kind.unwrap_or("errors"), sentence, evidence);
        }
        return hit(
            "time",
            format!(
                "The run ended before the target: {}.",
                reason.unwrap_or("stopped")
            ),
            format!("{} of {} verified", client.verified, client.target),
        );
    }
    let busy = if cpu_busy.is_empty() {
        0.0
    } else {
        cpu_busy.iter().sum::<f64>() / cpu_busy.len() as f64
    };
    if let Some(r) = args.rate {
        return hit(
            "rate",
            format!("The target was reached; the connect rate was held at --rate {r}/s."),
            format!("--rate {r}"),
        );
    }
    if busy >= 0.85 {
        return hit(
            "cpu",
            format!("The target was reached; the connect rate was bound by CPU ({cpu_where})."),
            format!("CPU busy {:.0}% on average while connecting", busy * 100.0),
        );
    }
    hit(
        "none",
        "The target was reached; no limit was hit.".into(),
        format!("CPU busy {:.0}% on average while connecting", busy * 100.0),
    )
}

pub fn print_summary(s: &RunSummary) {
    println!();
    match s.time_to_target_s {
        Some(t) => println!(
            "reached {} connections in {:.2} s: mean {} conn/s, peak {} conn/s",
            fmt::int(s.target),
            t,
            fmt::int(s.connect_rate_mean as u64),
            fmt::int(s.connect_rate_peak as u64)
        ),
        None => println!(
            "NOT reached: {} of {} connections ({})",
            fmt::int(s.established_peak),
            fmt::int(s.target),
            s.reason.as_deref().unwrap_or(&s.outcome)
        ),
    }
    if let Some(p) = &s.connect_latency_us {
        println!(
            "connect latency: p50 {} µs, p99 {} µs, max {} µs",
            fmt::int(p.p50),
            fmt::int(p.p99),
            fmt::int(p.max)
        );
    }
    println!(
        "memory per connection: user {:.1} B (server RSS {}), kernel {:.0} B ({})",
        s.user_bytes_per_conn,
        fmt::bytes(s.server_rss_bytes as f64),
        s.kernel_bytes_per_conn,
        if s.kernel_memory.both_ends {
            "both ends"
        } else {
            "server host"
        }
    );
    if let Some(t) = s.run_to_target_s {
        println!("from the start of c1m run to the target: {t:.2} s (connect, preflight, deploy and start-up included)");
    }
    if !s.errors.is_empty() {
        let e: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!("errors: {}", e.join(", "));
    }
    if let Some(l) = &s.limit {
        println!("limit: {} ({})", l.sentence, l.evidence);
    }
}
