//! The per-host breakdown: run.json's host entries, each host's series in events.jsonl, and
//! the host's raw lines under `hosts/<name>/`, merged by host name. The series wins for peaks
//! (like the totals); the raw lines fill in what run.json lacks.

use super::load::RunData;
use super::model::HostReport;
use c1m_proto::hist;
use c1m_rundir::Event;
use std::collections::BTreeMap;

pub fn host_reports(data: &RunData, events: &[Event]) -> Vec<HostReport> {
    let mut hosts: BTreeMap<String, HostReport> = BTreeMap::new();
    if let Some(s) = &data.summary {
        for h in &s.hosts {
            hosts.insert(
                h.name.clone(),
                HostReport {
                    name: h.name.clone(),
                    role: h.role.clone(),
                    address: Some(h.address.clone()).filter(|a| !a.is_empty()),
                    share: Some(h.share).filter(|&x| x > 0),
                    established_peak: Some(h.established_peak),
                    errors: h.errors.clone(),
                    rss_bytes: Some(h.rss_bytes).filter(|&x| x > 0),
                    layout: Some(h.layout.clone()).filter(|x| !x.is_empty()),
                    tuning: h.tuning.clone(),
                    failure: h.failure.clone(),
                    ..HostReport::default()
                },
            );
        }
    }
    // The time series per host overrides run.json's peaks, like the totals do.
    let mut peaks: BTreeMap<&str, (u64, f64, String)> = BTreeMap::new();
    for e in events {
        for (name, h) in &e.hosts {
            let p = peaks.entry(name).or_insert((0, 0.0, h.role.clone()));
            p.0 = p.0.max(h.established);
            p.1 = p.1.max(h.connect_rate);
        }
    }
    for (name, (est, rate, role)) in peaks {
        let h = hosts.entry(name.to_string()).or_insert_with(|| HostReport {
            name: name.to_string(),
            role: role.clone(),
            ..HostReport::default()
        });
        if h.role.is_empty() {
            h.role = role;
        }
        h.established_peak = Some(est);
        h.connect_rate_peak = Some(rate);
    }
    for (name, files) in &data.hosts {
        let h = hosts.entry(name.clone()).or_insert_with(|| HostReport {
            name: name.clone(),
            ..HostReport::default()
        });
        if h.role.is_empty() {
            h.role = match (files.client.is_some(), files.server.is_some()) {
                (true, true) => "server+client".into(),
                (true, false) => "client".into(),
                (false, true) => "server".into(),
                _ => String::new(),
            };
        }
        if h.layout.is_none() && !files.layouts.is_empty() {
            let parts: Vec<String> = files
                .layouts
                .iter()
                .map(|l| format!("{} {}×{}", l.role, l.procs, l.threads_per_proc))
                .collect();
            h.layout = Some(parts.join(", "));
        }
        if let Some(c) = files.client_last() {
            h.time_to_target_s = c.time_to_target_s;
            h.connect_latency_us = c
                .connect_hist
                .as_deref()
                .and_then(|b| hist::decode(b).ok())
                .map(|h| hist::percentiles(&h))
                .or_else(|| c.connect_latency_us.clone());
            if h.established_peak.is_none() {
                h.established_peak = files
                    .client
                    .as_ref()
                    .and_then(|l| l.iter().map(|c| c.open).max());
            }
        }
        // Raw lines carry errors even when run.json is gone.
        if h.errors.is_empty() {
            let mut errs = BTreeMap::new();
            for (k, v) in files
                .client_last()
                .map(|c| &c.errors)
                .into_iter()
                .chain(files.server_last().map(|s| &s.errors))
                .flatten()
            {
                *errs.entry(k.clone()).or_insert(0) += v;
            }
            h.errors = errs;
        }
        if h.rss_bytes.is_none() {
            let rss = files.client_last().map_or(0, |c| c.rss_bytes)
                + files.server_last().map_or(0, |s| s.rss_bytes);
            h.rss_bytes = Some(rss).filter(|&r| r > 0);
        }
        if h.established_peak.is_none() {
            h.established_peak = files
                .server
                .as_ref()
                .and_then(|l| l.iter().map(|s| s.open).max());
        }
    }
    hosts.into_values().collect()
}

pub fn total_errors(data: &RunData, hosts: &[HostReport]) -> BTreeMap<String, u64> {
    if let Some(s) = &data.summary {
        if !s.errors.is_empty() {
            return s.errors.clone();
        }
    }
    let mut out = BTreeMap::new();
    for h in hosts {
        for (k, v) in &h.errors {
            *out.entry(k.clone()).or_insert(0) += v;
        }
    }
    out
}
