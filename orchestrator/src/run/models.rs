//! `c1m run --server-model a,b,…|all`: the same test once per server model, on the same hosts,
//! each a run of its own through the one engine (its own preflight, network namespace and
//! server, so each starts clean), and one comparison of them written beside their directories:
//!
//! ```text
//! runs/<YYYYmmdd-HHMMSS>-models/
//!   <model>/<YYYYmmdd-HHMMSS>/   each model's run directory (and <model>/latest)
//!   compare.md, compare.html     the report's comparison of the runs, a sentence per model
//! ```
//!
//! What the comparison says is the report's (`c1m report --compare` over the same directories
//! renders the same); this module only sequences the runs and judges the whole.

use super::{run_one, RunEnd, RunOptions};
use anyhow::{Context, Result};
use c1m_rundir::Outcome;
use std::path::{Path, PathBuf};

/// How one model's run went, for the verdict over all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelEnd {
    /// Reached the target.
    Reached,
    /// Stopped short at the ceiling its preflight named (run.json's limit says so).
    AtItsCeiling,
    /// Anything else: a failure the comparison cannot explain by the model.
    Failed,
}

/// Runs every model in turn, then writes the comparison. The verdict: passed when every model
/// reached the target or stopped at its own named ceiling; a refusal or an unreachable host
/// ends the series at once; an interrupt stops it after the model it hit (the runs done are
/// still compared).
pub fn run_each(args: RunOptions) -> Result<RunEnd> {
    let group = group_dir(&args.runs_dir)?;
    let names: Vec<&str> = args.models.iter().map(|m| m.name()).collect();
    println!(
        "{} server models, one run each ({}): {}",
        names.len(),
        names.join(", "),
        group.display()
    );
    let mut dirs = Vec::new();
    let mut ends = Vec::new();
    let mut stopped = None;
    for (i, &model) in args.models.iter().enumerate() {
        println!(
            "\n=== server model {} of {}: {model} ({}) ===",
            i + 1,
            args.models.len(),
            model.course_name()
        );
        let models_dir = group.join(model.name());
        let end = run_one(RunOptions {
            models: vec![model],
            runs_dir: models_dir.clone(),
            ..args.clone()
        })?;
        match end {
            RunEnd::Refused | RunEnd::Unreachable => return Ok(end),
            _ => {}
        }
        // The engine points `latest` at the directory it made; resolved, each run keeps its
        // own name in the comparison.
        match std::fs::canonicalize(models_dir.join("latest")) {
            Ok(dir) => {
                ends.push((model, judge(end, &dir)));
                dirs.push(dir);
            }
            Err(e) => {
                eprintln!("{model}: no run directory in {}: {e}", models_dir.display());
                ends.push((model, ModelEnd::Failed));
            }
        }
        if end == RunEnd::Interrupted {
            stopped = Some(end);
            break;
        }
    }
    if dirs.len() >= 2 {
        write_comparison(&group, &dirs)?;
    } else {
        println!("fewer than two runs finished: no comparison written");
    }
    println!();
    for (model, end) in &ends {
        let word = match end {
            ModelEnd::Reached => "reached the target",
            ModelEnd::AtItsCeiling => "stopped at its named ceiling",
            ModelEnd::Failed => "failed",
        };
        println!("{model}: {word}");
    }
    Ok(stopped.unwrap_or(
        if ends.iter().all(|(_, e)| *e != ModelEnd::Failed) && !ends.is_empty() {
            RunEnd::Passed
        } else {
            RunEnd::Failed
        },
    ))
}

/// `DIR/<timestamp>-models/`, a fresh one.
fn group_dir(runs_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(runs_dir)
        .with_context(|| format!("creating {}", runs_dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut dir = runs_dir.join(format!("{stamp}-models"));
    let mut i = 1;
    while dir.exists() {
        i += 1;
        dir = runs_dir.join(format!("{stamp}-{i}-models"));
    }
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A model's run as the series judges it, from its exit and its run.json.
fn judge(end: RunEnd, dir: &Path) -> ModelEnd {
    if end == RunEnd::Passed {
        return ModelEnd::Reached;
    }
    let summary: Option<c1m_rundir::RunSummary> = std::fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let at_ceiling = summary.as_ref().is_some_and(|s| {
        s.outcome == Outcome::NotReached && s.limit.as_ref().is_some_and(|l| l.kind == "model")
    });
    if at_ceiling {
        ModelEnd::AtItsCeiling
    } else {
        ModelEnd::Failed
    }
}

/// `compare.md` and `compare.html` in the group directory: the report's comparison of the
/// runs, labelled by model, with a bar chart per figure and a sentence per model.
fn write_comparison(group: &Path, dirs: &[PathBuf]) -> Result<()> {
    for (format, file) in [
        (c1m_report::Format::Markdown, "compare.md"),
        (c1m_report::Format::Html, "compare.html"),
    ] {
        let text = c1m_report::render(&c1m_report::ReportOptions {
            runs: dirs.to_vec(),
            format,
            compare: true,
            output: None,
            no_charts: false,
        })?;
        let path = group.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("comparison: {}", path.display());
    }
    Ok(())
}
