//! The end of a run over hosts: `run.json` (the local run's keys, plus a figure set per host)
//! and the summary printed for a person.

use super::engine::{HostState, Outcome, Peak, Reached};
use crate::run::sampler::kernel_total;
use crate::run::summary::{limit_hit, print_summary, run_settings};
use crate::run::RunOptions;
use c1m_proto::fmt;
use c1m_proto::stats::{ClientStats, LayoutLine};
use c1m_report::histogram;
use c1m_rundir::{self, HostSummary, RunSummary};

/// All clients' figures as one: counters summed, histograms merged exactly.
fn merged_clients(hosts: &[HostState]) -> ClientStats {
    let mut all = ClientStats::default();
    let mut connect = Vec::new();
    let mut rtt = Vec::new();
    let mut ttt: Option<f64> = Some(0.0);
    for h in hosts.iter().filter(|h| h.run.is_client()) {
        let c = h.track.client_summary.as_ref().unwrap_or(&h.track.client);
        all.absorb(c);
        if let Some(x) = c
            .connect_hist
            .as_deref()
            .and_then(|s| histogram::decode(s).ok())
        {
            connect.push(x);
        }
        if let Some(x) = c
            .rtt_hist
            .as_deref()
            .and_then(|s| histogram::decode(s).ok())
        {
            rtt.push(x);
        }
        // The clients started together: the run reached its target when the last one did.
        ttt = match (ttt, c.time_to_target_s) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    all.time_to_target_s = ttt.filter(|_| all.verified >= all.target && all.target > 0);
    all.connect_latency_us = histogram::merge(&connect).map(|h| histogram::percentiles(&h));
    all.rtt_us = histogram::merge(&rtt).map(|h| histogram::percentiles(&h));
    all
}

fn layout(l: &Option<LayoutLine>) -> Option<String> {
    l.as_ref()
        .map(|l| format!("{}×{}", l.procs, l.threads_per_proc))
}

pub fn summarize(
    args: &RunOptions,
    inventory: &str,
    hosts: &[HostState],
    si: usize,
    peak: &Peak,
    started_at: chrono::DateTime<chrono::Utc>,
    (outcome, reached): (Outcome, Reached),
) -> RunSummary {
    let n = args.connections;
    let mut client = merged_clients(hosts);
    // The controller's clock: from the clients' start over SSH to the last verified connection.
    if let Some((t, _)) = reached {
        client.time_to_target_s = Some(t);
    }
    let server_host = &hosts[si];
    let server = server_host
        .track
        .server_summary
        .as_ref()
        .unwrap_or(&server_host.track.server);
    let mut errors = client.errors.clone();
    for (k, v) in &server.errors {
        *errors.entry(format!("server_{k}")).or_default() += v;
    }
    let lost: Vec<&HostState> = hosts.iter().filter(|h| h.failure.is_some()).collect();
    let mut reason = outcome.reason;
    let mut status = outcome.outcome.to_string();
    if status == "reached" && client.verified < n {
        status = "not_reached".into();
    }
    if reason.is_none() {
        if let Some(h) = lost.first() {
            reason = h
                .failure
                .as_ref()
                .map(|f| format!("{}: {f}", h.run.host.name));
        }
    }
    // The busiest host while connecting is the one to name when CPU was the bound.
    let (busy_host, busy) = hosts
        .iter()
        .map(|h| {
            let b = &h.track.cpu_busy;
            let mean = if b.is_empty() {
                0.0
            } else {
                b.iter().sum::<f64>() / b.len() as f64
            };
            (h.run.host.name.as_str(), mean)
        })
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let limit = limit_hit(
        args,
        &client,
        &errors,
        &status,
        reason.as_deref(),
        &[busy],
        &format!("{busy_host} was the busiest host"),
    );
    let server_peak = peak.server_open.max(1);
    let host_summaries = hosts
        .iter()
        .map(|h| {
            let c = h.track.client_summary.as_ref().unwrap_or(&h.track.client);
            let s = h.track.server_summary.as_ref().unwrap_or(&h.track.server);
            let mut errs = c.errors.clone();
            for (k, v) in &s.errors {
                *errs.entry(format!("server_{k}")).or_default() += v;
            }
            let layouts: Vec<String> = [
                layout(&h.track.server_layout).map(|l| format!("server {l}")),
                layout(&h.track.client_layout).map(|l| format!("client {l}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let mut failure = h.failure.clone();
            if !h.teardown.is_empty() {
                let t = h.teardown.join("; ");
                failure = Some(match failure {
                    Some(f) => format!("{f}; teardown: {t}"),
                    None => format!("teardown: {t}"),
                });
            }
            HostSummary {
                name: h.run.host.name.clone(),
                role: h.run.role.clone(),
                address: h.run.address.clone(),
                share: h.run.share,
                established_peak: if h.run.is_client() {
                    h.track.established_peak
                } else {
                    h.track.server_open_peak
                },
                errors: errs,
                rss_bytes: c.rss_bytes.max(h.track.client.rss_bytes)
                    + if h.run.is_server() {
                        peak.server_rss
                    } else {
                        0
                    },
                layout: layouts.join(", "),
                tuning: h.run.facts.tuning(),
                failure,
            }
        })
        .collect();
    RunSummary {
        schema: c1m_rundir::SCHEMA,
        c1m_version: env!("CARGO_PKG_VERSION").into(),
        started_at: started_at.to_rfc3339(),
        finished_at: Some(chrono::Utc::now().to_rfc3339()),
        inventory: inventory.into(),
        outcome: status,
        reason,
        partial: !lost.is_empty()
            || hosts
                .iter()
                .any(|h| h.run.is_client() && h.track.client_summary.is_none())
            || server_host.track.server_summary.is_none(),
        target: n,
        established_peak: peak.established,
        server_open_peak: peak.server_open,
        time_to_target_s: client.time_to_target_s,
        run_to_target_s: reached.map(|r| r.1),
        connect_rate_peak: peak.rate,
        connect_rate_mean: client
            .time_to_target_s
            .map(|t| client.verified as f64 / t.max(1e-9))
            .unwrap_or(0.0),
        connect_latency_us: client.connect_latency_us.clone(),
        rtt_us: client.rtt_us.clone(),
        errors,
        server_rss_bytes: peak.server_rss,
        client_rss_bytes: client.rss_bytes,
        user_bytes_per_conn: peak.server_rss as f64 / server_peak as f64,
        kernel_bytes_per_conn: kernel_total(&peak.server_kernel) as f64 / server_peak as f64,
        kernel_memory: peak.server_kernel.clone(),
        hosts: host_summaries,
        limit: Some(limit),
        settings: run_settings(
            args,
            hosts
                .iter()
                .filter(|h| h.run.is_client())
                .flat_map(|h| h.run.source_ips.iter().cloned())
                .collect(),
        ),
    }
}

/// The local run's summary, then a line per host.
pub fn print(s: &RunSummary, hosts: &[HostState]) {
    print_summary(s);
    println!("hosts:");
    for (h, st) in s.hosts.iter().zip(hosts) {
        let what = if st.run.is_client() {
            format!(
                "{}/{} verified",
                fmt::int(
                    st.track
                        .client_summary
                        .as_ref()
                        .unwrap_or(&st.track.client)
                        .verified
                ),
                fmt::int(h.share)
            )
        } else {
            format!("{} open at peak", fmt::int(h.established_peak))
        };
        println!(
            "  {:<12} {:<13} {:<16} {what}{}",
            h.name,
            h.role,
            h.address,
            h.failure
                .as_deref()
                .map(|f| format!(" — {f}"))
                .unwrap_or_default()
        );
    }
}
