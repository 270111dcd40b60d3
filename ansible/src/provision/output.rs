//! Ansible-like text of a run: `PLAY [...]`, `TASK [...]` with one line per host (and loop item),
//! diffs, and the `PLAY RECAP`.

use crate::playbook::exec::{HostReport, Stats, Status, TaskResult};
use crate::playbook::modules::Diff;
use std::fmt::Write;

fn banner(title: &str) -> String {
    let stars = 79usize.saturating_sub(title.len() + 1).max(3);
    format!("\n{title} {}\n", "*".repeat(stars))
}

pub fn play_banner(name: &str) -> String {
    banner(&format!("PLAY [{name}]"))
}

fn json_msg(msg: &Option<String>) -> String {
    match msg {
        Some(m) => format!(" => {}", serde_json::json!({ "msg": m })),
        None => String::new(),
    }
}

fn result_line(host: &str, r: &TaskResult) -> String {
    if let Some(note) = &r.note {
        let item = r
            .item
            .as_ref()
            .map(|i| format!(" => (item={i})"))
            .unwrap_or_default();
        return format!("{note}{item}\n");
    }
    let item = r
        .item
        .as_ref()
        .map(|i| format!(" => (item={i})"))
        .unwrap_or_default();
    let item_paren = r
        .item
        .as_ref()
        .map(|i| format!(" (item={i})"))
        .unwrap_or_default();
    match r.status {
        Status::Ok => format!("ok: [{host}]{item}{}\n", json_msg(&r.msg)),
        Status::Changed => format!("changed: [{host}]{item}{}\n", json_msg(&r.msg)),
        Status::Skipped => format!("skipping: [{host}]{item}\n"),
        Status::Failed => {
            let lead = if r.item.is_some() {
                format!("failed: [{host}]{item_paren}")
            } else {
                format!("fatal: [{host}]: FAILED!")
            };
            let ignoring = if r.ignored { "\n...ignoring" } else { "" };
            format!("{lead}{}{ignoring}\n", json_msg(&r.msg))
        }
        Status::Unreachable => format!("fatal: [{host}]: UNREACHABLE!{}\n", json_msg(&r.msg)),
    }
}

pub fn diff_text(d: &Diff) -> String {
    let diff = similar::TextDiff::from_lines(&d.before, &d.after);
    let mut out = String::new();
    let _ = write!(
        out,
        "{}",
        diff.unified_diff().context_radius(3).header(
            &format!("before: {}", d.label),
            &format!("after: {}", d.label)
        )
    );
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The text of one play: every step in order, each with the lines of every host that ran it.
pub fn play_text(reports: &[HostReport]) -> String {
    let mut steps: Vec<&crate::playbook::exec::Step> = reports
        .iter()
        .flat_map(|r| r.steps.iter().map(|(s, _)| s))
        .collect();
    steps.sort_by(|a, b| a.key.cmp(&b.key));
    steps.dedup_by(|a, b| a.key == b.key);
    let mut out = String::new();
    for step in steps {
        let head = if step.handler {
            format!("RUNNING HANDLER [{}]", step.title)
        } else {
            format!("TASK [{}]", step.title)
        };
        out.push_str(&banner(&head));
        for report in reports {
            for (s, results) in &report.steps {
                if s.key != step.key {
                    continue;
                }
                for r in results {
                    for d in &r.diffs {
                        out.push_str(&diff_text(d));
                    }
                    out.push_str(&result_line(&report.host, r));
                }
            }
        }
    }
    out
}

pub fn recap(hosts: &[(String, Stats)]) -> String {
    let mut out = banner("PLAY RECAP");
    let width = hosts
        .iter()
        .map(|(h, _)| h.len())
        .max()
        .unwrap_or(0)
        .max(26);
    for (h, s) in hosts {
        let _ = writeln!(
            out,
            "{h:<width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} rescued={:<4} ignored={}",
            s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored
        );
    }
    out
}
