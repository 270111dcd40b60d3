//! `c1m report`: reads run directories and prints what happened and why it stopped there.
//!
//! | file | responsibility |
//! | --- | --- |
//! | `load` | reading a (possibly damaged) run directory, with notices for what is missing |
//! | `summary` | figures of one run, recomputed from events.jsonl |
//! | `hosts` | the per-host breakdown |
//! | `limit` | the limiting factor, in one sentence with its evidence |
//! | `compare` | `--compare`: metrics side by side with deltas |
//! | `model` | the report structure = the JSON export schema |
//! | `doc` | the block layout shared by table, markdown and HTML |
//! | `charts` | SVG charts (plotters) |
//! | `render/*` | one renderer per format |

pub mod charts;
pub mod compare;
pub mod doc;
pub use c1m_proto::fmt;
pub mod hosts;
pub mod limit;
pub mod load;
pub mod model;
pub mod render;
pub mod summary;

use anyhow::Context as _;
use load::Notice;
use model::{ReportDoc, RunReport, REPORT_SCHEMA};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

/// Output formats, like hyperfine's exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
    Markdown,
    Html,
}

impl Format {
    /// Every format by the name the command line gives it.
    pub const NAMES: [&'static str; 5] = ["table", "json", "csv", "markdown", "html"];

    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "table" => Format::Table,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "markdown" => Format::Markdown,
            "html" => Format::Html,
            _ => return None,
        })
    }
}

/// What `c1m report` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Run directories to report on.
    pub runs: Vec<PathBuf>,
    pub format: Format,
    /// The runs side by side with deltas against the first.
    pub compare: bool,
    /// Write the report here instead of standard output.
    pub output: Option<PathBuf>,
    /// Do not write the SVG charts into the run directories.
    pub no_charts: bool,
}

/// Runs `c1m report`: renders and writes the report.
pub fn run(args: &ReportOptions) -> anyhow::Result<()> {
    let text = render(args)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = stdout.write_all(text.as_bytes());
        }
    }
    Ok(())
}

/// The report as text in the chosen format. Writes the charts into the run directories unless
/// `--no-charts`.
pub fn render(args: &ReportOptions) -> anyhow::Result<String> {
    if args.compare && args.runs.len() < 2 {
        anyhow::bail!("--compare needs at least two run directories");
    }
    let mut reports = Vec::new();
    let mut drawn_per_run: Vec<Vec<charts::Chart>> = Vec::new();
    for dir in &args.runs {
        let data = load::load(dir)?;
        let mut report = summary::build(&data, &dir.display().to_string());
        let drawn = match charts::draw(data.events.as_deref().unwrap_or(&[])) {
            Ok(c) => c,
            Err(e) => {
                report.notices.push(Notice::new("charts", format!("{e:#}")));
                Vec::new()
            }
        };
        if drawn.is_empty() {
            report
                .notices
                .push(Notice::new("charts", "no time series: charts not drawn"));
        }
        if !args.no_charts {
            for c in &drawn {
                let path = dir.join(&c.file);
                match std::fs::write(&path, &c.svg) {
                    Ok(()) => report.charts.push(c.file.clone()),
                    Err(e) => report.notices.push(Notice::new(
                        "charts",
                        format!("could not write {}: {e}", path.display()),
                    )),
                }
            }
        }
        drawn_per_run.push(drawn);
        reports.push(report);
    }
    disambiguate_names(&mut reports);
    let mut charts: BTreeMap<String, Vec<charts::Chart>> = reports
        .iter()
        .map(|r| r.name.clone())
        .zip(drawn_per_run)
        .collect();
    let compare_rows = args.compare.then(|| compare::rows(&reports));
    if let Some(rows) = &compare_rows {
        let labels: Vec<String> = reports.iter().map(|r| r.label.clone()).collect();
        // A comparison's bars sit under the key no run directory can have.
        charts.insert(doc::COMPARE_CHARTS.into(), charts::bars(rows, &labels)?);
    }
    let blocks = || -> Vec<doc::Block> {
        match &compare_rows {
            Some(rows) => doc::compare_blocks(&reports, rows),
            None => reports.iter().flat_map(doc::run_blocks).collect(),
        }
    };
    Ok(match args.format {
        Format::Table => render::text::render(&blocks()),
        Format::Markdown => render::markdown::render(&blocks()),
        Format::Html => {
            let title = match reports.as_slice() {
                [one] => format!("c1m report: {}", one.name),
                many => format!("c1m report: {} runs", many.len()),
            };
            render::html::render(&title, &blocks(), &charts)
        }
        Format::Csv => render::csv::render(&reports),
        Format::Json => {
            let doc = ReportDoc {
                schema: REPORT_SCHEMA,
                c1m_version: env!("CARGO_PKG_VERSION").to_string(),
                runs: reports,
                compare: compare_rows,
            };
            serde_json::to_string_pretty(&doc)? + "\n"
        }
    })
}

/// Two runs with the same directory name (e.g. `a/latest`, `b/latest` made in the same second)
/// are named by their paths instead, so columns and charts stay apart.
fn disambiguate_names(reports: &mut [RunReport]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports.iter() {
        *seen.entry(r.name.clone()).or_default() += 1;
    }
    for r in reports.iter_mut() {
        if seen.get(&r.name).copied().unwrap_or(0) > 1 {
            r.name = r.path.clone();
        }
    }
    label_by_server(reports);
}

/// Runs of different servers (models, programs) are labelled by the server; otherwise, or
/// where two runs had the same server, by their names.
fn label_by_server(reports: &mut [RunReport]) {
    let servers: Vec<Option<String>> = reports
        .iter()
        .map(|r| {
            r.server
                .as_ref()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = servers.iter().flatten().collect();
    let by_server = servers.iter().all(Option::is_some) && distinct.len() == servers.len();
    for (r, server) in reports.iter_mut().zip(servers) {
        r.label = match server {
            Some(s) if by_server => s,
            _ => r.name.clone(),
        };
    }
}
