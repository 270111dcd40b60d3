//! Reading a run directory as far as it goes. Nothing here fails on damaged content: every file
//! that is missing, unreadable or cut short becomes a [`Notice`] and the rest is still read.

use c1m_proto::stats::{ClientStats, LayoutLine, ServerStats};
use c1m_rundir::{Event, RunSummary};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Something the reader of a report must know about the data behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// `missing` | `damaged` | `in_progress` | `mismatch` | `charts`.
    pub kind: String,
    pub message: String,
}

impl Notice {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Notice {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

/// One host's raw files under `hosts/<name>/`.
#[derive(Debug, Clone, Default)]
pub struct HostFiles {
    /// `None` when the file is absent.
    pub client: Option<Vec<ClientStats>>,
    pub server: Option<Vec<ServerStats>>,
    /// The binaries' `layout` lines (procs × threads, nofile limits).
    pub layouts: Vec<LayoutLine>,
    /// Lines of `*.log` files that name a kernel limit (`table full`, `out of memory`…), with
    /// the file name, so the limit analysis can quote them.
    pub log_hits: Vec<String>,
}

impl HostFiles {
    /// The client's final summary line, if the client got to print it.
    pub fn client_summary(&self) -> Option<&ClientStats> {
        self.client
            .as_ref()?
            .iter()
            .rev()
            .find(|s| s.event == "summary")
    }
    /// The last client line of any kind (the summary, or the last tick of a cut-off client).
    pub fn client_last(&self) -> Option<&ClientStats> {
        self.client_summary()
            .or_else(|| self.client.as_ref()?.last())
    }
    pub fn server_last(&self) -> Option<&ServerStats> {
        let lines = self.server.as_ref()?;
        lines
            .iter()
            .rev()
            .find(|s| s.event == "summary")
            .or_else(|| lines.last())
    }
}

/// Everything found in one run directory.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub dir: PathBuf,
    /// The directory's own name (the timestamp), `runs/latest` resolved.
    pub name: String,
    pub summary: Option<RunSummary>,
    /// `None` when events.jsonl is absent; the lines that parsed otherwise.
    pub events: Option<Vec<Event>>,
    pub hosts: BTreeMap<String, HostFiles>,
    pub notices: Vec<Notice>,
}

/// Phrases in host logs that name the limit that was hit.
const LOG_PATTERNS: &[&str] = &[
    "table full",
    "out of memory",
    "oom-kill",
    "killed process",
    "too many open files",
    "tcp: out of memory",
    "too many orphaned sockets",
];

/// Reads `dir`. Errors only when `dir` is not a run directory at all.
pub fn load(dir: &Path) -> anyhow::Result<RunData> {
    if !dir.is_dir() {
        anyhow::bail!("{}: no such run directory", dir.display());
    }
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let has_any = ["run.json", "events.jsonl", "hosts"]
        .iter()
        .any(|f| dir.join(f).exists());
    if !has_any {
        anyhow::bail!(
            "{}: not a run directory (none of run.json, events.jsonl, hosts/ is there)",
            dir.display()
        );
    }
    let mut data = RunData {
        dir: dir.to_path_buf(),
        name,
        ..RunData::default()
    };
    data.summary = load_summary(dir, &mut data.notices);
    data.events = load_jsonl::<Event>(&dir.join("events.jsonl"), "events.jsonl", &mut data.notices);
    if data.events.as_ref().is_some_and(|e| e.is_empty()) {
        data.notices.push(Notice::new(
            "missing",
            "events.jsonl has no valid lines: no time series (the run ended before its first sample, or the file is damaged)",
        ));
    }
    if data.events.is_none() {
        data.notices.push(Notice::new(
            "missing",
            "events.jsonl is missing: no time series, figures come from run.json and host files",
        ));
    }
    if data.summary.is_none() {
        note_if_still_writing(dir, &mut data.notices);
    }
    load_hosts(dir, &mut data);
    check_expected_host_files(&mut data);
    if let Some(s) = &data.summary {
        if s.outcome == c1m_rundir::Outcome::Running || s.finished_at.is_none() {
            data.notices.push(Notice::new(
                "in_progress",
                format!(
                    "the run has not finished (outcome `{}`, no finished_at): figures are as of the last line written",
                    s.outcome
                ),
            ));
        }
        if s.partial {
            data.notices.push(Notice::new(
                "damaged",
                "run.json marks this run partial: a host was lost or data is missing",
            ));
        }
    }
    Ok(data)
}

/// `c1m run` writes run.json last; a fresh events.jsonl without it means the run is going on.
fn note_if_still_writing(dir: &Path, notices: &mut Vec<Notice>) {
    let age = std::fs::metadata(dir.join("events.jsonl"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if let Some(age) = age.filter(|a| a.as_secs_f64() < 5.0) {
        notices.push(Notice::new(
            "in_progress",
            format!(
                "the run is probably still going: events.jsonl was written {:.1} s ago and run.json is not there yet; figures are as of now",
                age.as_secs_f64()
            ),
        ));
    }
}

fn load_summary(dir: &Path, notices: &mut Vec<Notice>) -> Option<RunSummary> {
    let path = dir.join("run.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notices.push(Notice::new(
                "missing",
                "run.json is missing (run still starting, or killed): outcome, settings, tuning and latency unknown; figures come from events.jsonl and host files",
            ));
            return None;
        }
        Err(e) => {
            notices.push(Notice::new("damaged", format!("run.json unreadable: {e}")));
            return None;
        }
    };
    match serde_json::from_str::<RunSummary>(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            notices.push(Notice::new(
                "damaged",
                format!(
                    "run.json:{}:{}: not a valid run summary ({e}); ignored",
                    e.line(),
                    e.column()
                ),
            ));
            None
        }
    }
}

/// Reads a JSON-lines file; `None` when it is absent. A last line without its newline that does
/// not parse is a write cut short (the run was killed, or is still writing): said once, skipped.
fn load_jsonl<T: DeserializeOwned>(
    path: &Path,
    label: &str,
    notices: &mut Vec<Notice>,
) -> Option<Vec<T>> {
    load_jsonl_with_layout(path, label, notices).map(|(lines, _)| lines)
}

/// [`load_jsonl`], also returning the `"event": "layout"` lines a binary prints at start.
fn load_jsonl_with_layout<T: DeserializeOwned>(
    path: &Path,
    label: &str,
    notices: &mut Vec<Notice>,
) -> Option<(Vec<T>, Vec<LayoutLine>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            notices.push(Notice::new("damaged", format!("{label} unreadable: {e}")));
            return Some((Vec::new(), Vec::new()));
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let ends_cleanly = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut bad: Vec<String> = Vec::new();
    let mut layouts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            // The binaries' one-off `layout` line is not a stats line.
            Ok(v) if v.get("event").and_then(|e| e.as_str()) == Some("layout") => layouts.push(v),
            // serde would read `[1,2]` as a struct's fields in order; a line is an object.
            Ok(v) if !v.is_object() => bad.push(format!("line {}: not a JSON object", i + 1)),
            Ok(v) => match serde_json::from_value::<T>(v) {
                Ok(v) => out.push(v),
                Err(e) => bad.push(format!("line {}: {e}", i + 1)),
            },
            Err(_) if i + 1 == lines.len() && !ends_cleanly => notices.push(Notice::new(
                "damaged",
                format!(
                    "{label}: last line ({}) is truncated ({} bytes, no newline); ignored",
                    i + 1,
                    line.len()
                ),
            )),
            Err(e) => bad.push(format!("line {}:{}: {e}", i + 1, e.column())),
        }
    }
    if let Some(first) = bad.first() {
        notices.push(Notice::new(
            "damaged",
            format!(
                "{label}: {} line(s) not valid and ignored (first: {first})",
                bad.len()
            ),
        ));
    }
    let layouts = layouts
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    Some((out, layouts))
}

fn load_hosts(dir: &Path, data: &mut RunData) {
    let hosts_dir = dir.join("hosts");
    let Ok(entries) = std::fs::read_dir(&hosts_dir) else {
        data.notices.push(Notice::new(
            "missing",
            "hosts/ is missing: no per-host latency histograms or raw errors",
        ));
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut layouts = Vec::new();
        let client = load_jsonl_with_layout::<ClientStats>(
            &path.join("client.jsonl"),
            &format!("hosts/{name}/client.jsonl"),
            &mut data.notices,
        )
        .map(|(lines, l)| {
            layouts.extend(l);
            lines
        });
        let server = load_jsonl_with_layout::<ServerStats>(
            &path.join("server.jsonl"),
            &format!("hosts/{name}/server.jsonl"),
            &mut data.notices,
        )
        .map(|(lines, l)| {
            layouts.extend(l);
            lines
        });
        let log_hits = scan_logs(&path);
        let files = HostFiles {
            client,
            server,
            layouts,
            log_hits,
        };
        if let Some(lines) = &files.client {
            if !lines.is_empty() && files.client_summary().is_none() {
                data.notices.push(Notice::new(
                    "damaged",
                    format!("hosts/{name}/client.jsonl has no summary line (client cut off): its latency histogram is missing"),
                ));
            }
        }
        data.hosts.insert(name, files);
    }
}

fn scan_logs(host_dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(host_dir) else {
        return hits;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let Ok(bytes) = std::fs::read(&log) else {
            continue;
        };
        let file = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let lower = line.to_ascii_lowercase();
            if LOG_PATTERNS.iter().any(|p| lower.contains(p)) {
                hits.push(format!("{file}: {}", line.trim()));
                if hits.len() >= 20 {
                    return hits;
                }
            }
        }
    }
    hits
}

/// Every host that run.json or events.jsonl names should have its raw file; say which do not.
fn check_expected_host_files(data: &mut RunData) {
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    if let Some(s) = &data.summary {
        for h in &s.hosts {
            expected.insert(h.name.clone(), h.role.clone());
        }
    }
    if let Some(events) = &data.events {
        for e in events {
            for (name, sample) in &e.hosts {
                expected
                    .entry(name.clone())
                    .or_insert_with(|| sample.role.clone());
            }
        }
    }
    // Only c1m-server writes server.jsonl; a server c1m did not write has none to miss.
    let c1m_server = data
        .summary
        .as_ref()
        .and_then(|s| s.server.as_ref())
        .is_none_or(|sv| sv.kind == c1m_rundir::ServerKind::C1mServer);
    for (name, role) in expected {
        let files = data.hosts.get(&name);
        for (want, file) in [("client", "client.jsonl"), ("server", "server.jsonl")] {
            if !role.contains(want) || (want == "server" && !c1m_server) {
                continue;
            }
            let present = files.is_some_and(|f| match want {
                "client" => f.client.is_some(),
                _ => f.server.is_some(),
            });
            if !present {
                let what = if want == "client" {
                    "its connect latency and errors by errno come from run.json only"
                } else {
                    "its accept-side errors come from run.json only"
                };
                data.notices.push(Notice::new(
                    "missing",
                    format!("hosts/{name}/{file} is missing: {what}"),
                ));
            }
        }
    }
}
