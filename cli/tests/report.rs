//! `c1m report` on real local runs (when `c1m run` works here) and on synthetic multi-host run
//! directories written through the run-dir types: every format renders, the numbers equal those
//! computed from events.jsonl, `--compare` shows deltas, damaged runs give partial reports, SVG
//! and HTML are well-formed and self-contained.

mod report_common;

use report_common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One real local run per test process, shared by the tests (each copies it before damaging it).
fn real(which: usize) -> Option<PathBuf> {
    static REAL: [OnceLock<Option<PathBuf>>; 2] = [OnceLock::new(), OnceLock::new()];
    REAL[which]
        .get_or_init(|| {
            remove_stale_real_runs();
            let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("report-real-{}-{which}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            std::fs::create_dir_all(&base).unwrap();
            // Two sizes, so a comparison has something to show.
            // Below the ephemeral range (32768+), where client source ports could take them.
            let port = 21_000 + (std::process::id() % 200) as u16 * 20 + which as u16 * 10;
            real_run(&base, [3000, 1500][which], port, &[])
        })
        .clone()
}

/// The shared real runs outlive their test process (statics are not dropped); the next
/// process removes those whose process is gone.
fn remove_stale_real_runs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("report-real-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The run directories a test works on: a synthetic two-client run, and a copy of the real
/// local run when there is one.
fn runs(tmp: &TempDir) -> Vec<PathBuf> {
    let synth = tmp.path().join("synthetic");
    synthetic_run(&synth, &Spec::default());
    let mut out = vec![synth];
    if let Some(real) = real(0) {
        let copy = tmp.path().join("real");
        copy_dir(&real, &copy);
        out.push(copy);
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The HTML page parsed strictly as XML (its `<!DOCTYPE html>` is the only DTD allowed).
fn parse_html(html: &str) -> roxmltree::Document<'_> {
    let opt = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, opt).expect("HTML is well-formed XHTML")
}

/// The `src` of every `<img>` in an HTML report.
fn chart_sources(html: &str) -> Vec<String> {
    parse_html(html)
        .descendants()
        .filter(|n| n.has_tag_name("img"))
        .map(|n| n.attribute("src").unwrap().to_string())
        .collect()
}

fn json_report(dir: &Path) -> Value {
    serde_json::from_str(&report(&[s(dir), "--format", "json", "--no-charts"])).unwrap()
}

#[test]
fn every_format_renders() {
    let tmp = TempDir::new("formats");
    for dir in runs(&tmp) {
        let table = report(&[s(&dir), "--no-charts"]);
        assert!(table.contains("Limiting factor"), "{table}");
        assert!(table.contains("peak established"), "{table}");

        let json = json_report(&dir);
        assert_eq!(json["schema"], 1);
        assert_eq!(json["runs"].as_array().unwrap().len(), 1);
        assert!(json["runs"][0]["limit"]["sentence"].as_str().unwrap().len() > 10);
        assert!(json["runs"][0]["connect_latency_us"]["p99"]
            .as_u64()
            .is_some());

        let csv = report(&[s(&dir), "--format", "csv", "--no-charts"]);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[0], "run");
        let rows: Vec<&str> = lines.collect();
        let hosts = json["runs"][0]["hosts"].as_array().unwrap().len();
        assert_eq!(rows.len(), 1 + hosts, "{csv}");
        for r in &rows {
            // No field here contains a quoted comma except the sentence, which is quoted.
            let fields = split_csv(r);
            assert_eq!(fields.len(), header.len(), "{r}");
        }
        let total = split_csv(rows[0]);
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(total[col("scope")], "total");
        assert_eq!(
            total[col("established_peak")],
            json["runs"][0]["established_peak"].to_string()
        );

        let md = report(&[s(&dir), "--format", "markdown", "--no-charts"]);
        assert!(md.starts_with("## Run "), "{md}");
        assert!(md.contains("| peak established |"), "{md}");
        assert!(md.contains("### Limiting factor"), "{md}");

        let html = report(&[s(&dir), "--format", "html"]);
        parse_html(&html);
        assert!(html.contains("data:image/svg+xml;base64,"));
    }
}

/// A CSV line split per RFC 4180 (quotes, doubled quotes).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[test]
fn table_numbers_equal_those_computed_from_events_jsonl() {
    let tmp = TempDir::new("numbers");
    for dir in runs(&tmp) {
        let events = events_of(&dir);
        assert!(!events.is_empty());
        let max_u = |key: &str| {
            events
                .iter()
                .map(|e| e[key].as_u64().unwrap())
                .max()
                .unwrap()
        };
        let max_f = |key: &str| {
            events
                .iter()
                .map(|e| e[key].as_f64().unwrap())
                .fold(0.0, f64::max)
        };
        let peak = max_u("established");
        let server_peak = max_u("server_open");
        let rate_peak = max_f("connect_rate");
        // Memory is read at the last sample at the peak (where run.json reads it too).
        let at_peak = events
            .iter()
            .rev()
            .find(|e| e["established"].as_u64() == Some(peak))
            .unwrap();
        let user_per_conn = at_peak["server_rss_bytes"].as_f64().unwrap() / peak as f64;
        let kernel_per_conn = at_peak["kernel_bytes"].as_f64().unwrap() / peak as f64;

        let table = report(&[s(&dir), "--no-charts"]);
        assert_eq!(
            parse_num(&table_value(&table, "peak established")),
            peak as f64
        );
        assert_eq!(
            parse_num(&table_value(&table, "server open peak")),
            server_peak as f64
        );
        assert_eq!(
            table_value(&table, "connect rate peak"),
            format!("{}/s", group(&format!("{rate_peak:.1}")))
        );
        // The mean rate is the target over the clients' own time to it (run.json), when reached.
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        if let Some(tt) = summary["time_to_target_s"].as_f64() {
            let mean = summary["target"].as_f64().unwrap() / tt;
            assert_eq!(
                table_value(&table, "connect rate mean"),
                format!("{}/s", group(&format!("{mean:.1}")))
            );
            assert_eq!(table_value(&table, "time to target"), format!("{tt:.2} s"));
        }
        let samples = table_value(&table, "samples");
        assert!(
            samples.starts_with(&format!("{} ", group(&events.len().to_string()))),
            "{samples}"
        );

        // The JSON export carries the same figures unrounded.
        let json = json_report(&dir);
        let run = &json["runs"][0];
        assert_eq!(run["established_peak"].as_u64(), Some(peak));
        assert_eq!(run["server_open_peak"].as_u64(), Some(server_peak));
        assert!(close(run["connect_rate_peak"].as_f64().unwrap(), rate_peak));
        assert_eq!(run["samples"]["count"].as_u64(), Some(events.len() as u64));
        assert!(close(
            run["memory"]["user_bytes_per_conn"].as_f64().unwrap(),
            user_per_conn
        ));
        assert!(close(
            run["memory"]["kernel_bytes_per_conn"].as_f64().unwrap(),
            kernel_per_conn
        ));

        // Per host: the peak of each host's series.
        for h in run["hosts"].as_array().unwrap() {
            let name = h["name"].as_str().unwrap();
            let host_peak = events
                .iter()
                .filter_map(|e| e["hosts"][name]["established"].as_u64())
                .max();
            if let Some(p) = host_peak {
                assert_eq!(h["established_peak"].as_u64(), Some(p), "host {name}");
                let row = table
                    .lines()
                    .skip_while(|l| *l != "Hosts")
                    .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("no row for {name} in\n{table}"));
                let cells: Vec<&str> = row.split_whitespace().collect();
                assert_eq!(parse_num(cells[4]), p as f64, "{row}");
            }
        }
    }
}

/// Equal up to float parsing: serde_json's default float parser may be one ulp off.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// `1234567.5` → `1,234,567.5` (the test's own grouping).
fn group(s: &str) -> String {
    let (whole, frac) = s.split_once('.').map_or((s, None), |(w, f)| (w, Some(f)));
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{out}.{f}"),
        None => out,
    }
}

#[test]
fn compare_of_two_runs_shows_deltas() {
    let tmp = TempDir::new("compare");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    synthetic_run(&a, &Spec::default());
    synthetic_run(
        &b,
        &Spec {
            per_client: 4000,
            cap: 4000,
            rate: 1500,
            ..Spec::default()
        },
    );
    let mut pairs = vec![(a, b)];
    if let (Some(r0), Some(r1)) = (real(0), real(1)) {
        pairs.push((r0, r1));
    }
    for (a, b) in pairs {
        let ja = json_report(&a)["runs"][0].clone();
        let jb = json_report(&b)["runs"][0].clone();
        let json: Value = serde_json::from_str(&report(&[
            s(&a),
            s(&b),
            "--compare",
            "--format",
            "json",
            "--no-charts",
        ]))
        .unwrap();
        let rows = json["compare"].as_array().unwrap();
        let row = |m: &str| rows.iter().find(|r| r["metric"] == m).unwrap().clone();
        for metric in ["established_peak", "connect_rate_peak", "target"] {
            let r = row(metric);
            let (va, vb) = (ja[metric].as_f64().unwrap(), jb[metric].as_f64().unwrap());
            assert!(close(r["values"][0].as_f64().unwrap(), va), "{metric}");
            assert!(close(r["values"][1].as_f64().unwrap(), vb), "{metric}");
            assert!(r["deltas"][0].is_null());
            assert!(
                close(r["deltas"][1].as_f64().unwrap(), vb - va),
                "{metric}: {r}"
            );
        }
        let table = report(&[s(&a), s(&b), "--compare", "--no-charts"]);
        assert!(table.contains("Comparison of 2 runs"), "{table}");
        let peak_row = table
            .lines()
            .find(|l| l.trim_start().starts_with("established_peak "))
            .unwrap();
        let delta = jb["established_peak"].as_u64().unwrap() as i64
            - ja["established_peak"].as_u64().unwrap() as i64;
        let sign = if delta > 0 { "+" } else { "" };
        assert!(
            peak_row.contains(&format!("{sign}{}", group(&delta.to_string()))),
            "delta {delta} not in `{peak_row}`"
        );
        let md = report(&[
            s(&a),
            s(&b),
            "--compare",
            "--format",
            "markdown",
            "--no-charts",
        ]);
        assert!(md.contains("| Δ "), "{md}");
        let html = report(&[s(&a), s(&b), "--compare", "--format", "html", "--no-charts"]);
        // The comparison's bars (one chart per figure both runs have), then both runs' charts,
        // each pair different from the other.
        let imgs = chart_sources(&html);
        let bars = imgs.len() - 4;
        assert!(bars >= 4, "{} images", imgs.len());
        assert!(
            html.contains("alt=\"Connections held at the peak\""),
            "{html}"
        );
        assert!(
            imgs[bars] != imgs[bars + 2],
            "both runs show the same chart"
        );
    }
    // Two runs whose directories share a name are told apart by path, charts included.
    let (x, y) = (tmp.path().join("x/same"), tmp.path().join("y/same"));
    synthetic_run(&x, &Spec::default());
    synthetic_run(
        &y,
        &Spec {
            rate: 500,
            ..Spec::default()
        },
    );
    let args = [s(&x), s(&y), "--compare", "--format", "json", "--no-charts"];
    let json: Value = serde_json::from_str(&report(&args)).unwrap();
    assert_eq!(json["runs"][0]["name"], s(&x));
    assert_eq!(json["runs"][1]["name"], s(&y));
    let html = report(&[s(&x), s(&y), "--compare", "--format", "html", "--no-charts"]);
    let imgs = chart_sources(&html);
    let bars = imgs.len() - 4;
    assert!(
        imgs[bars] != imgs[bars + 2],
        "both runs show the same chart"
    );
    // --compare of one run is a usage error, not a panic.
    let one = c1m(&["report", "--compare", s(&tmp.path().join("a"))]);
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("at least two"));
}

#[test]
fn truncated_events_and_missing_host_file_give_partial_report() {
    let tmp = TempDir::new("partial");
    for dir in runs(&tmp) {
        // Cut the last line of events.jsonl in half, as a killed writer leaves it.
        let path = dir.join("events.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.trim_end_matches('\n');
        let last_start = body.rfind('\n').map_or(0, |i| i + 1);
        let cut = last_start + (body.len() - last_start) / 2;
        std::fs::write(&path, &text[..cut]).unwrap();
        let kept = events_of(&dir);
        // Remove one host's raw client lines.
        let client = std::fs::read_dir(dir.join("hosts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("client.jsonl").is_file())
            .unwrap();
        std::fs::remove_file(client.join("client.jsonl")).unwrap();
        let host = client.file_name().unwrap().to_str().unwrap().to_string();

        let table = report(&[s(&dir), "--no-charts"]);
        assert!(table.contains("NOTICE"), "{table}");
        assert!(table.contains("events.jsonl: last line"), "{table}");
        assert!(table.contains("truncated"), "{table}");
        assert!(
            table.contains(&format!("hosts/{host}/client.jsonl is missing")),
            "{table}"
        );
        let peak = kept
            .iter()
            .map(|e| e["established"].as_u64().unwrap())
            .max()
            .unwrap();
        assert_eq!(
            parse_num(&table_value(&table, "peak established")),
            peak as f64
        );

        let run = json_report(&dir)["runs"][0].clone();
        assert_eq!(run["complete"], false);
        let kinds: Vec<&str> = run["notices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"damaged") && kinds.contains(&"missing"),
            "{kinds:?}"
        );
        for format in ["csv", "markdown", "html"] {
            report(&[s(&dir), "--format", format, "--no-charts"]);
        }
    }
}

#[test]
fn missing_run_json_and_a_run_in_progress_are_reported_not_fatal() {
    let tmp = TempDir::new("inprogress");
    for dir in runs(&tmp) {
        // A run still going: outcome running, no finished_at.
        let path = dir.join("run.json");
        let mut summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        summary["outcome"] = "running".into();
        summary["finished_at"] = Value::Null;
        summary["limit"] = Value::Null;
        std::fs::write(&path, summary.to_string()).unwrap();
        let table = report(&[s(&dir), "--no-charts"]);
        assert!(
            table.contains("in_progress: the run has not finished"),
            "{table}"
        );

        // run.json gone: figures from events.jsonl and the host files.
        std::fs::remove_file(&path).unwrap();
        let run = json_report(&dir)["runs"][0].clone();
        assert_eq!(run["outcome"], "unknown");
        assert_eq!(run["complete"], false);
        let peak = events_of(&dir)
            .iter()
            .map(|e| e["established"].as_u64().unwrap())
            .max()
            .unwrap();
        assert_eq!(run["established_peak"].as_u64(), Some(peak));
        assert_eq!(run["limit"]["source"], "derived");
        // Latency recomputed from the clients' merged histograms.
        assert_eq!(run["connect_latency_source"], "hosts");
        assert!(run["connect_latency_us"]["count"].as_u64().unwrap() > 0);
        let table = report(&[s(&dir), "--no-charts"]);
        assert!(table.contains("run.json is missing"), "{table}");

        // Only a truncated events.jsonl left.
        std::fs::remove_dir_all(dir.join("hosts")).unwrap();
        let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        std::fs::write(dir.join("events.jsonl"), &text[..text.len() / 3]).unwrap();
        for format in ["table", "json", "csv", "markdown", "html"] {
            report(&[s(&dir), "--format", format, "--no-charts"]);
        }
        // Garbage run.json is a notice too.
        std::fs::write(&path, "{\"target\": \"many\"").unwrap();
        let table = report(&[s(&dir), "--no-charts"]);
        assert!(table.contains("run.json:1:"), "{table}");
    }
}

#[test]
fn connect_latency_is_the_merge_of_the_clients_histograms() {
    // With run.json's percentiles absent (synthetic), the report merges the clients'
    // connect_hist; the merge must equal one histogram of all samples.
    let tmp = TempDir::new("latency");
    let dir = tmp.path().join("run");
    synthetic_run(&dir, &Spec::default());
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for host in ["client-a", "client-b"] {
        let text =
            std::fs::read_to_string(dir.join("hosts").join(host).join("client.jsonl")).unwrap();
        let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let b64 = summary["connect_hist"].as_str().unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        all.add(&h).unwrap();
    }
    let run = json_report(&dir)["runs"][0].clone();
    let lat = &run["connect_latency_us"];
    assert_eq!(lat["count"].as_u64(), Some(all.len()));
    assert_eq!(lat["p50"].as_u64(), Some(all.value_at_quantile(0.5)));
    assert_eq!(lat["p99"].as_u64(), Some(all.value_at_quantile(0.99)));
    assert_eq!(lat["p999"].as_u64(), Some(all.value_at_quantile(0.999)));
    assert_eq!(lat["max"].as_u64(), Some(all.max()));
}

#[test]
fn limiting_factor_is_derived_from_errors_by_errno() {
    let tmp = TempDir::new("limit");
    for (errno, kind, words) in [
        ("EADDRNOTAVAIL", "ports_x_ips", "ports ran out"),
        ("EMFILE", "fd_cap", "file-descriptor cap"),
        ("ENOMEM", "memory", "Memory ran out"),
    ] {
        let dir = tmp.path().join(errno);
        synthetic_run(
            &dir,
            &Spec {
                cap: 2200,
                cap_errno: Some(errno),
                limit_in_run_json: false,
                ..Spec::default()
            },
        );
        let run = json_report(&dir)["runs"][0].clone();
        assert_eq!(run["limit"]["kind"], kind, "{}", run["limit"]);
        assert_eq!(run["limit"]["source"], "derived");
        assert_eq!(run["target_reached"], false);
        let sentence = run["limit"]["sentence"].as_str().unwrap();
        assert!(sentence.contains(words), "{sentence}");
        assert!(sentence.contains("4,400 of 6,000"), "{sentence}");
        let evidence = run["limit"]["evidence"].as_str().unwrap();
        // client-b (faster) hits the cap first, at t=2 s.
        assert!(
            evidence.starts_with(&format!("client-b: {errno} ×")),
            "{evidence}"
        );
        assert!(evidence.contains("from t=2.0 s"), "{evidence}");
        let table = report(&[s(&dir), "--no-charts"]);
        assert!(
            table.contains(&format!("not reached: {sentence}"))
                || table.contains("not reached: clients stopped"),
            "{table}"
        );
        assert!(table.contains(evidence), "{table}");
    }
    // Not errno-based: a conntrack line in a host log, time running out, the rate cap.
    let cases: [(&str, Spec, &str, &str); 4] = [
        (
            "tcp_mem",
            Spec {
                tcp_mem_pressure: Some(300),
                ..Spec::default()
            },
            "tcp_mem",
            "t=2.0 s: TCP mem 420 pages ≥ tcp_mem pressure 300 pages",
        ),
        (
            "conntrack",
            Spec {
                cap: 2200,
                server_log: Some(
                    "[ 812.1] nf_conntrack: nf_conntrack: table full, dropping packet",
                ),
                ..Spec::default()
            },
            "conntrack",
            "server/kernel.log: [ 812.1] nf_conntrack: nf_conntrack: table full, dropping packet",
        ),
        (
            "time",
            Spec {
                rate: 300,
                ..Spec::default()
            },
            "time",
            "last sample t=6.0 s: 4,200 established, 0 errors",
        ),
        (
            "rate",
            Spec {
                rate_setting: Some(2100),
                ..Spec::default()
            },
            "rate",
            "connect rate mean 2,182/s, peak 2,100/s, cap 2,100/s",
        ),
    ];
    for (name, mut spec, kind, evidence) in cases {
        spec.limit_in_run_json = false;
        let dir = tmp.path().join(name);
        synthetic_run(&dir, &spec);
        let run = json_report(&dir)["runs"][0].clone();
        assert_eq!(run["limit"]["kind"], kind, "{}", run["limit"]);
        assert_eq!(run["limit"]["evidence"], evidence, "{}", run["limit"]);
    }
    // A run that reached its target without errors: no limit.
    let dir = tmp.path().join("clean");
    synthetic_run(
        &dir,
        &Spec {
            limit_in_run_json: false,
            ..Spec::default()
        },
    );
    let run = json_report(&dir)["runs"][0].clone();
    assert_eq!(run["limit"]["kind"], "none");
    // run.json's own limit wins when present.
    let dir = tmp.path().join("recorded");
    synthetic_run(&dir, &Spec::default());
    let run = json_report(&dir)["runs"][0].clone();
    assert_eq!(run["limit"]["source"], "run.json");
}

#[test]
fn svg_and_html_are_well_formed_and_self_contained() {
    let tmp = TempDir::new("svg");
    for dir in runs(&tmp) {
        let html = report(&[s(&dir), "--format", "html"]);
        let run = json_report(&dir)["runs"][0].clone();
        let client_hosts = run["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["role"].as_str().unwrap().contains("client"))
            .count();
        for (file, title) in [
            ("connections.svg", "Connections over time"),
            ("connect-rate.svg", "Connect rate over time"),
        ] {
            let svg = std::fs::read_to_string(dir.join(file)).unwrap();
            let doc = roxmltree::Document::parse(&svg).expect("SVG is well-formed");
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            assert!(svg.contains(title));
            let lines = doc
                .descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .count();
            // total (+ server on the connections chart) + per-host lines when several clients.
            let per_host = if client_hosts > 1 { client_hosts } else { 0 };
            let expected = per_host + if file == "connections.svg" { 2 } else { 1 };
            assert!(
                lines >= expected,
                "{file}: {lines} polylines, want ≥ {expected}"
            );
            assert!(
                doc.descendants()
                    .all(|n| n.attributes().all(|a| a.name() != "href")),
                "{file} links to something"
            );
        }
        let doc = parse_html(&html);
        assert_eq!(doc.root_element().tag_name().name(), "html");
        let lower = html.to_ascii_lowercase();
        assert!(
            !lower.contains("http:") && !lower.contains("https:"),
            "network reference"
        );
        assert!(
            !lower.contains("<script") && !lower.contains("<link") && !lower.contains("@import")
        );
        let mut images = 0;
        for n in doc.descendants() {
            for a in n.attributes() {
                if ["src", "href", "srcset", "data", "poster"].contains(&a.name()) {
                    assert!(
                        a.value().starts_with("data:"),
                        "external {}={}",
                        a.name(),
                        a.value()
                    );
                }
            }
            if n.has_tag_name("img") {
                images += 1;
                let src = n.attribute("src").unwrap();
                let b64 = src.strip_prefix("data:image/svg+xml;base64,").unwrap();
                use base64::Engine as _;
                let svg = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                roxmltree::Document::parse(std::str::from_utf8(&svg).unwrap())
                    .expect("embedded SVG is well-formed");
            }
        }
        assert_eq!(images, 2);
        // The tables are there too.
        assert!(html.contains("peak established") && html.contains("Limiting factor"));
    }
}

#[test]
fn not_a_run_directory_is_an_error_not_a_panic() {
    let tmp = TempDir::new("notrun");
    let out = c1m(&["report", s(&tmp.path().join("nope"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such run directory"), "{err}");
    let out = c1m(&["report", s(tmp.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run directory"));
    // No argument: runs/latest under the current directory.
    synthetic_run(&tmp.path().join("runs/20261124-101010"), &Spec::default());
    std::os::unix::fs::symlink("20261124-101010", tmp.path().join("runs/latest")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_c1m"))
        .args(["report", "--no-charts"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Run 20261124-101010 (runs/latest)"),
        "{text}"
    );
    // --out writes the file instead of stdout.
    let dir = tmp.path().join("run");
    synthetic_run(&dir, &Spec::default());
    let file = tmp.path().join("report.md");
    let stdout = report(&[
        s(&dir),
        "--format",
        "markdown",
        "--output",
        s(&file),
        "--no-charts",
    ]);
    assert!(stdout.is_empty());
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("### Limiting factor"));
    assert!(
        !dir.join("connections.svg").exists(),
        "--no-charts wrote a chart"
    );
}

#[test]
fn every_json_field_is_documented() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report-json.md"),
    )
    .unwrap();
    let tmp = TempDir::new("doc");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    synthetic_run(&a, &Spec::default());
    synthetic_run(
        &b,
        &Spec {
            cap: 2000,
            cap_errno: Some("EMFILE"),
            ..Spec::default()
        },
    );
    let json: Value = serde_json::from_str(&report(&[
        s(&a),
        s(&b),
        "--compare",
        "--format",
        "json",
        "--no-charts",
    ]))
    .unwrap();
    let mut missing = Vec::new();
    let mut check = |obj: &Value, what: &str| {
        for key in obj.as_object().unwrap().keys() {
            if !doc.contains(&format!("`{key}`")) {
                missing.push(format!("{what}.{key}"));
            }
        }
    };
    check(&json, "top");
    let run = &json["runs"][1];
    check(run, "run");
    check(&run["memory"], "memory");
    check(&run["limit"], "limit");
    check(&run["samples"], "samples");
    check(&run["hosts"][0], "host");
    check(&run["connect_latency_us"], "percentiles");
    check(&json["compare"][0], "compare");
    for row in json["compare"].as_array().unwrap() {
        let metric = row["metric"].as_str().unwrap();
        if !doc.contains(&format!("`{metric}`")) {
            missing.push(format!("metric {metric}"));
        }
    }
    let header = report(&[s(&a), "--format", "csv", "--no-charts"]);
    for col in header.lines().next().unwrap().split(',') {
        if !doc.contains(col) {
            missing.push(format!("csv column {col}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/report-json.md: {missing:?}"
    );
}

/// Kills the process on drop, so a failing test leaves no server behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn raw_lines_of_the_real_server_and_client_alone_make_a_report() {
    // What is left when the orchestrator dies before writing run.json and events.jsonl:
    // only the binaries' own lines. Those come from the real binaries over loopback here.
    let bins = bin_dir();
    let have = bins.join("c1m-server").is_file() && bins.join("c1m-client").is_file();
    if !require(
        have,
        &format!("c1m-server and c1m-client in {}", bins.display()),
    ) {
        return;
    }
    let tmp = TempDir::new("raw");
    let host = tmp.path().join("run/hosts/local");
    std::fs::create_dir_all(&host).unwrap();
    let port = (26_000 + (std::process::id() % 300) * 20).to_string();
    let conns = "2000";
    let file = |name: &str| std::fs::File::create(host.join(name)).unwrap();
    let mut server = Child(
        std::process::Command::new(bins.join("c1m-server"))
            .args([
                "--port",
                &port,
                "--ports",
                "4",
                "--connections",
                conns,
                "--bind",
                "127.0.0.1",
            ])
            .stdout(file("server.jsonl"))
            .stderr(file("server.log"))
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client = std::process::Command::new(bins.join("c1m-client"))
        .args([
            "--port",
            &port,
            "--ports",
            "4",
            "--connections",
            conns,
            "--hold",
            "1s",
            "--json",
        ])
        .stdout(file("client.jsonl"))
        .stderr(file("client.log"))
        .status()
        .unwrap();
    assert!(client.success(), "c1m-client failed: {client:?}");
    // SIGTERM makes the server print its summary line.
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
    let _ = server.0.wait();

    let dir = tmp.path().join("run");
    let run = json_report(&dir)["runs"][0].clone();
    assert_eq!(run["complete"], false);
    assert_eq!(run["established_peak"].as_u64(), Some(2000), "{run}");
    assert_eq!(run["server_open_peak"].as_u64(), Some(2000), "{run}");
    assert_eq!(run["target_reached"], true);
    assert_eq!(run["limit"]["kind"], "none");
    assert_eq!(run["connect_latency_source"], "hosts");
    // The percentiles are those of the client's own histogram, decoded here independently.
    let text = std::fs::read_to_string(host.join("client.jsonl")).unwrap();
    let summary: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(summary["connect_hist"].as_str().unwrap())
        .unwrap();
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap();
    assert_eq!(run["connect_latency_us"]["count"].as_u64(), Some(2000));
    assert_eq!(
        run["connect_latency_us"]["p99"].as_u64(),
        Some(h.value_at_quantile(0.99))
    );
    assert_eq!(run["connect_latency_us"]["max"].as_u64(), Some(h.max()));
    assert_eq!(run["connect_latency_us"], summary["connect_latency_us"]);
    let table = report(&[s(&dir), "--no-charts"]);
    assert!(table.contains("run.json is missing"), "{table}");
    assert!(table.contains("events.jsonl is missing"), "{table}");
    assert!(
        !table.contains("not valid"),
        "layout lines misread: {table}"
    );
}

#[test]
fn a_real_run_in_progress_is_reported_as_such_then_in_full() {
    let bins = bin_dir();
    if !require(
        bins.join("c1m").is_file(),
        &format!("{}/c1m", bins.display()),
    ) {
        return;
    }
    let tmp = TempDir::new("live");
    let port = (23_000 + (std::process::id() % 200) * 20).to_string();
    // Rate-limited so the run is still ramping while the report reads it.
    let mut run = Child(
        std::process::Command::new(bins.join("c1m"))
            .args([
                "run",
                "--connections",
                "4000",
                "--rate",
                "1000",
                "--port",
                &port,
            ])
            .args([
                "--ports",
                "4",
                "--hold",
                "1s",
                "--no-progress",
                "--runs-dir",
            ])
            .arg(tmp.path())
            .env("C1M_BIN_DIR", &bins)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let latest = tmp.path().join("latest");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while events_len(&latest) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "c1m run wrote no events"
        );
        if let Ok(Some(status)) = run.0.try_wait() {
            if !require(
                false,
                &format!("a working local `c1m run` (exited {status})"),
            ) {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let seen = events_len(&latest);
    let live = json_report(&latest)["runs"][0].clone();
    let kinds: Vec<&str> = live["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"in_progress"), "{}", live["notices"]);
    assert_eq!(live["complete"], false);
    assert!(live["samples"]["count"].as_u64().unwrap() >= seen as u64);
    assert!(live["established_peak"].as_u64().unwrap() < 4000, "{live}");
    let table = report(&[s(&latest), "--no-charts"]);
    assert!(table.contains("probably still going"), "{table}");

    let status = run.0.wait().unwrap();
    assert!(status.success(), "c1m run: {status:?}");
    let done = json_report(&latest)["runs"][0].clone();
    assert_eq!(done["complete"], true, "{}", done["notices"]);
    assert_eq!(done["outcome"], "reached");
    assert_eq!(done["established_peak"].as_u64(), Some(4000));
    assert_eq!(done["limit"]["source"], "run.json");
    // --rate 1000 over 4000 connections: about 4 s, mean rate near the cap.
    let mean = done["connect_rate_mean"].as_f64().unwrap();
    assert!((700.0..=1300.0).contains(&mean), "mean rate {mean}");
}

fn events_len(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn round_trips_are_shown_when_messages_were_exchanged() {
    let tmp = TempDir::new("rtt");
    let port = 24_000 + (std::process::id() % 200) as u16 * 20;
    let args = ["--message-interval", "1s"];
    let Some(dir) = real_run(tmp.path(), 1000, port, &args) else {
        return;
    };
    let run = json_report(&dir)["runs"][0].clone();
    let rtt = &run["rtt_us"];
    assert!(rtt["count"].as_u64().unwrap() >= 1000, "{run}");
    assert!(rtt["p50"].as_u64().unwrap() <= rtt["p99"].as_u64().unwrap());
    let table = report(&[s(&dir), "--no-charts"]);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("round trip "))
        .unwrap_or_else(|| panic!("no round trip row in\n{table}"));
    assert!(
        row.contains(&format!("{} µs", group(&rtt["p99"].to_string()))),
        "{row}"
    );
    // Without messages there is no round-trip row.
    let plain = tmp.path().join("plain");
    synthetic_run(&plain, &Spec::default());
    assert!(!report(&[s(&plain), "--no-charts"]).contains("round trip"));
}

#[test]
fn hostile_content_in_every_file_gives_notices_not_panics() {
    let tmp = TempDir::new("hostile");
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(dir.join("hosts/h1")).unwrap();
    std::fs::create_dir_all(dir.join("hosts/h2")).unwrap();
    std::fs::write(dir.join("run.json"), b"\xff\xfe{\"schema\":").unwrap();
    std::fs::write(
        dir.join("events.jsonl"),
        "{\"t\":\"soon\"}\n[1,2]\nnull\n{\"t\":1.0,\"established\":-5}\n\
         {\"t\":1e308,\"established\":18446744073709551615,\"connect_rate\":1e308}\n\
         {\"t\":-3,\"established\":7,\"kernel_bytes\":-9223372036854775808}\n\x00\x01binary\n",
    )
    .unwrap();
    // A well-formed client summary whose histogram is garbage, and one that is not JSON.
    let mut c = c1m_proto::stats::ClientStats {
        event: "summary".into(),
        connect_hist: Some("bm90IGEgaGlzdG9ncmFt".into()),
        ..Default::default()
    };
    c.errors.insert("EMFILE".into(), u64::MAX);
    write_jsonl(&dir.join("hosts/h1/client.jsonl"), &[c]);
    std::fs::write(dir.join("hosts/h2/client.jsonl"), "{{{{\n").unwrap();
    std::fs::write(dir.join("hosts/h2/server.jsonl"), "").unwrap();
    for format in ["table", "json", "csv", "markdown", "html"] {
        let out = report(&[s(&dir), "--format", format]);
        assert!(!out.is_empty());
    }
    let run = json_report(&dir)["runs"][0].clone();
    assert_eq!(run["complete"], false);
    let notices = run["notices"].to_string();
    assert!(notices.contains("run.json"), "{notices}");
    assert!(
        notices.contains("events.jsonl: 5 line(s) not valid"),
        "{notices}"
    );
    assert!(
        notices.contains("connect_hist not an HdrHistogram"),
        "{notices}"
    );
    assert_eq!(run["limit"]["kind"], "fd_cap");
}
