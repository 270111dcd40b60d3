//! Shared by the `report*` tests: run directories to report on, and the `c1m` binary.
//!
//! Two sources of run directories:
//! - [`real_run`]: `c1m run` on this machine (loopback), the real thing; skipped when the binary
//!   or the local run is not available, unless `C1M_REQUIRE_LAB=1`.
//! - [`synthetic_run`]: a run directory written through the `c1m_rundir` and `c1m_proto` types
//!   (with real HdrHistograms), shaped like a two-client run, for the cases a local run cannot
//!   produce on demand (several client hosts, EADDRNOTAVAIL, EMFILE).
#![allow(dead_code)]

use base64::Engine as _;
use c1m_proto::stats::{ClientStats, ServerStats};
use c1m_rundir::{Event, HostSample, HostSummary, KernelMemory, LimitHit, RunSettings, RunSummary};
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `true` when `what` is available; otherwise prints why the test is skipped and returns false,
/// or panics when `C1M_REQUIRE_LAB=1`.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("C1M_REQUIRE_LAB").as_deref() == Ok("1") {
        panic!("C1M_REQUIRE_LAB=1 but {what} is missing");
    }
    eprintln!("skipped: needs {what}");
    false
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("c1m-report-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("C1M_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `c1m ARGS`.
pub fn c1m(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c1m"))
        .args(args)
        .output()
        .expect("start c1m")
}

/// `c1m report ARGS` that must succeed; its stdout.
pub fn report(args: &[&str]) -> String {
    let mut full = vec!["report"];
    full.extend_from_slice(args);
    let out = c1m(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "c1m {full:?} failed: {:?}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 report")
}

/// Where the release binaries are: `C1M_BIN_DIR`, else `target/release` of the workspace.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("C1M_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("release")
        })
}

/// A real local run (`c1m run` over loopback) of `connections` into `out/<stamp>`, or `None`
/// (skipped) when `c1m run` is not available here. `port`: the first server port, distinct per
/// concurrent run.
pub fn real_run(out: &Path, connections: u64, port: u16, extra: &[&str]) -> Option<PathBuf> {
    for needed in ["c1m", "c1m-server", "c1m-client"] {
        let path = bin_dir().join(needed);
        if !require(
            path.is_file(),
            &format!(
                "{} (cargo build --release --workspace --bins)",
                path.display()
            ),
        ) {
            return None;
        }
    }
    let conns = connections.to_string();
    let port = port.to_string();
    let out_s = out.display().to_string();
    let mut args = vec![
        "run",
        "--connections",
        &conns,
        "--port",
        &port,
        "--ports",
        "4",
        "--hold",
        "2s",
        "--no-progress",
        "--runs-dir",
        &out_s,
    ];
    args.extend_from_slice(extra);
    let res = Command::new(bin_dir().join("c1m"))
        .args(&args)
        .env("C1M_BIN_DIR", bin_dir())
        .output()
        .expect("start c1m run");
    let dir = std::fs::canonicalize(out.join("latest")).ok();
    let ok = dir
        .as_ref()
        .is_some_and(|d| d.join("run.json").is_file() && d.join("events.jsonl").is_file());
    if !require(
        ok,
        &format!(
            "a working local `c1m run` ({:?}: {})",
            res.status,
            String::from_utf8_lossy(&res.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
    ) {
        return None;
    }
    dir
}

pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new().serialize(h, &mut buf).unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// How a synthetic run should look.
#[derive(Clone)]
pub struct Spec {
    pub clients: Vec<String>,
    pub per_client: u64,
    /// Connections each client manages per second.
    pub rate: u64,
    /// Each client stops at this many (below `per_client`: target not reached).
    pub cap: u64,
    /// errno recorded when the cap is hit.
    pub cap_errno: Option<&'static str>,
    pub limit_in_run_json: bool,
    pub seconds: u64,
    pub latency_base_us: u64,
    /// `--rate` in run.json's settings.
    pub rate_setting: Option<u64>,
    /// A line for `hosts/server/kernel.log` (e.g. a conntrack "table full" message).
    pub server_log: Option<&'static str>,
    /// The server's `net.ipv4.tcp_mem` pressure threshold (pages), instead of a roomy default.
    pub tcp_mem_pressure: Option<u64>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            clients: vec!["client-a".into(), "client-b".into()],
            per_client: 3000,
            rate: 1000,
            cap: 3000,
            cap_errno: None,
            limit_in_run_json: true,
            seconds: 6,
            latency_base_us: 80,
            rate_setting: None,
            server_log: None,
            tcp_mem_pressure: None,
        }
    }
}

/// Writes a run directory shaped like a run of `spec`: one server host, the clients,
/// `run.json`, `events.jsonl` (one line per second) and each host's raw lines.
pub fn synthetic_run(dir: &Path, spec: &Spec) {
    std::fs::create_dir_all(dir.join("hosts/server")).unwrap();
    let target = spec.per_client * spec.clients.len() as u64;
    let t0 = 1_790_000_000_000u64;
    let mut events = Vec::new();
    let mut client_lines: BTreeMap<String, Vec<ClientStats>> = BTreeMap::new();
    let mut server_lines = Vec::new();
    let mut hists: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let limit = spec.per_client.min(spec.cap);
    let mut prev: BTreeMap<String, u64> = BTreeMap::new();
    for s in 0..=spec.seconds {
        let t = s as f64;
        let mut e = Event {
            t,
            ts_ms: t0 + s * 1000,
            ..Event::default()
        };
        let mut errors_total = 0;
        for (i, c) in spec.clients.iter().enumerate() {
            // Clients differ slightly so per-host and total figures are distinguishable.
            let rate = spec.rate + 100 * i as u64;
            let est = (rate * s).min(limit);
            let p = prev.insert(c.clone(), est).unwrap_or(0);
            let errs = if est == limit && limit < spec.per_client {
                (s * 7).max(1)
            } else {
                0
            };
            errors_total += errs;
            let hist = hists
                .entry(c.clone())
                .or_insert_with(|| Histogram::new(3).unwrap());
            for k in p..est {
                hist.record(spec.latency_base_us + (k % 97) * (i as u64 + 1) + k / 50)
                    .unwrap();
            }
            e.hosts.insert(
                c.clone(),
                HostSample {
                    role: "client".into(),
                    established: est,
                    connect_rate: (est - p) as f64,
                    errors_total: errs,
                    rss_bytes: 4_000_000 + est * 300,
                },
            );
            e.established += est;
            e.connect_rate += (est - p) as f64;
            e.client_rss_bytes += 4_000_000 + est * 300;
            let mut errors = BTreeMap::new();
            if let (Some(errno), true) = (spec.cap_errno, errs > 0) {
                errors.insert(errno.to_string(), errs);
            }
            client_lines
                .entry(c.clone())
                .or_default()
                .push(ClientStats {
                    event: "tick".into(),
                    ts_ms: t0 + s * 1000,
                    uptime_s: t,
                    target: spec.per_client,
                    attempted: est + errs,
                    verified: est,
                    open: est,
                    errors,
                    rss_bytes: 4_000_000 + est * 300,
                    procs: 1,
                    ..ClientStats::default()
                });
        }
        e.errors_total = errors_total;
        e.server_open = e.established;
        e.server_rss_bytes = 2_000_000 + e.established * 120;
        e.kernel_bytes = (e.established * 2 * 2300) as i64;
        e.slab_bytes = 50_000_000 + e.established * 2 * 2000;
        e.tcp_mem_pages = e.established / 10;
        e.tcp_inuse = e.established * 2;
        e.hosts.insert(
            "server".into(),
            HostSample {
                role: "server".into(),
                established: e.server_open,
                connect_rate: e.connect_rate,
                errors_total: 0,
                rss_bytes: e.server_rss_bytes,
            },
        );
        server_lines.push(ServerStats {
            event: "tick".into(),
            ts_ms: t0 + s * 1000,
            uptime_s: t,
            open: e.server_open,
            accepted: e.server_open,
            greeted: e.server_open,
            rss_bytes: e.server_rss_bytes,
            procs: 1,
            ..ServerStats::default()
        });
        events.push(e);
    }
    let last = events.last().unwrap().clone();
    let reached = last.established >= target;
    let time_to_target = reached.then(|| {
        events
            .iter()
            .find(|e| e.established >= target)
            .map(|e| e.t - 0.25)
            .unwrap()
    });
    let mut total_errors = BTreeMap::new();
    let mut hosts = vec![HostSummary {
        name: "server".into(),
        role: "server".into(),
        address: "10.199.0.1".into(),
        established_peak: last.server_open,
        rss_bytes: last.server_rss_bytes,
        layout: "1×2".into(),
        tuning: [("fs.file-max", "2097152"), ("nofile_hard", "1048576")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(
                "net.ipv4.tcp_mem".to_string(),
                match spec.tcp_mem_pressure {
                    Some(p) => format!("{} {p} {}", p / 2, p * 2),
                    None => "786432 1048576 1572864".to_string(),
                },
            )])
            .collect(),
        ..HostSummary::default()
    }];
    for (i, c) in spec.clients.iter().enumerate() {
        let lines = client_lines.get_mut(c).unwrap();
        let mut summary = lines.last().unwrap().clone();
        summary.event = "summary".into();
        summary.uptime_s += 0.5;
        let h = &hists[c];
        summary.connect_hist = Some(encode_hist(h));
        summary.time_to_target_s = (summary.verified >= spec.per_client)
            .then(|| spec.per_client as f64 / (spec.rate + 100 * i as u64) as f64);
        for (k, v) in &summary.errors {
            *total_errors.entry(k.clone()).or_insert(0) += v;
        }
        hosts.push(HostSummary {
            name: c.clone(),
            role: "client".into(),
            address: format!("10.199.0.{}", i + 2),
            share: spec.per_client,
            established_peak: summary.open,
            errors: summary.errors.clone(),
            rss_bytes: summary.rss_bytes,
            layout: "1×2".into(),
            tuning: [
                ("nofile_hard", "1048576"),
                ("net.ipv4.ip_local_port_range", "1024 65535"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..HostSummary::default()
        });
        lines.push(summary);
        std::fs::create_dir_all(dir.join("hosts").join(c)).unwrap();
        write_jsonl(&dir.join("hosts").join(c).join("client.jsonl"), lines);
        std::fs::write(
            dir.join("hosts").join(c).join("client.log"),
            "connections: 10, time_used: 3ms\n",
        )
        .unwrap();
    }
    let mut ssum = server_lines.last().unwrap().clone();
    ssum.event = "summary".into();
    server_lines.push(ssum);
    write_jsonl(&dir.join("hosts/server/server.jsonl"), &server_lines);
    if let Some(line) = spec.server_log {
        std::fs::write(dir.join("hosts/server/kernel.log"), format!("{line}\n")).unwrap();
    }
    let limit = if spec.limit_in_run_json {
        Some(if reached {
            LimitHit {
                kind: "none".into(),
                sentence: "No limit was hit: every connection was established.".into(),
                evidence: format!("{target} of {target}"),
            }
        } else {
            LimitHit {
                kind: "ports_x_ips".into(),
                sentence: "Local ports ran out first.".into(),
                evidence: "EADDRNOTAVAIL".into(),
            }
        })
    } else {
        None
    };
    let summary = RunSummary {
        schema: c1m_rundir::SCHEMA,
        c1m_version: "0.1.0".into(),
        started_at: "2026-11-24T16:00:00Z".into(),
        finished_at: Some("2026-11-24T16:00:09Z".into()),
        inventory: "inventory/lab.yml".into(),
        outcome: if reached {
            c1m_rundir::Outcome::Reached
        } else {
            c1m_rundir::Outcome::NotReached
        },
        reason: (!reached).then(|| "clients stopped below the target".to_string()),
        partial: false,
        target,
        established_peak: last.established,
        server_open_peak: last.server_open,
        time_to_target_s: time_to_target,
        run_to_target_s: None,
        connect_rate_peak: events.iter().map(|e| e.connect_rate).fold(0.0, f64::max),
        connect_rate_mean: time_to_target.map_or(0.0, |t| target as f64 / t),
        connect_latency_us: None,
        rtt_us: None,
        messages_sent: 0,
        messages_answered: 0,
        errors: total_errors,
        server_rss_bytes: last.server_rss_bytes,
        client_rss_bytes: last.client_rss_bytes,
        user_bytes_per_conn: last.server_rss_bytes as f64 / last.established.max(1) as f64,
        kernel_bytes_per_conn: last.kernel_bytes as f64 / last.established.max(1) as f64,
        kernel_memory: KernelMemory {
            slab_delta_bytes: (last.established * 4000) as i64,
            tcp_mem_delta_bytes: (last.tcp_mem_pages * 4096) as i64,
            both_ends: false,
            ..KernelMemory::default()
        },
        hosts,
        limit,
        settings: RunSettings {
            connections: target,
            ports: 20,
            rate: spec.rate_setting,
            hold_s: 2.0,
            message_interval_s: None,
            source_ips: vec![],
            window: Some(1000),
        },
        server: None,
    };
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
    write_jsonl(&dir.join("events.jsonl"), &events);
}

pub fn write_jsonl<T: serde::Serialize>(path: &Path, lines: &[T]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The lines of events.jsonl that parse, as JSON values (the test's own reading, independent
/// of the report code).
pub fn events_of(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The value of row `label` in a `--format table` Summary block.
pub fn table_value(table: &str, label: &str) -> String {
    table
        .lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(label)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no `{label}` row in\n{table}"))
}

/// `12,345.6/s` → 12345.6.
pub fn parse_num(s: &str) -> f64 {
    let s: String = s
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches("/s")
        .replace(',', "");
    s.parse()
        .unwrap_or_else(|e| panic!("not a number: {s:?}: {e}"))
}
