//! The live view of a run: an indicatif bar on a terminal, one plain line a second otherwise
//! (`--no-progress`, or stdout is not a TTY).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

use c1m_proto::fmt;

/// One second of a run, as the view shows it.
pub struct Frame {
    pub t: f64,
    pub established: u64,
    pub target: u64,
    pub rate: f64,
    pub errors: u64,
    pub server_rss: u64,
    pub kernel_bytes: i64,
}

/// One host's line in a run over an inventory.
pub struct HostFrame<'a> {
    pub name: &'a str,
    pub role: &'a str,
    /// Verified connections open (clients) or connections open (server).
    pub open: u64,
    /// The client's share; 0 for the server.
    pub share: u64,
    pub rate: f64,
    pub errors: u64,
    pub rss: u64,
    /// Set once the host failed or was lost.
    pub failure: Option<&'a str>,
}

/// The live view of a run: on a terminal, a bar for the total and, over several hosts, one per
/// host; otherwise one plain line a second for the total, with each host in brief.
pub enum View {
    Bars {
        multi: MultiProgress,
        total: ProgressBar,
        hosts: Vec<ProgressBar>,
    },
    Plain,
}

impl View {
    /// `hosts`: (name, share) in the order frames will come; share 0 for the server.
    pub fn new(target: u64, hosts: &[(String, u64)], no_progress: bool) -> View {
        if no_progress || !std::io::stdout().is_terminal() {
            return View::Plain;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let width = hosts.iter().map(|h| h.0.len()).max().unwrap_or(5).max(5);
        let bar_style = |prefix_width: usize| {
            ProgressStyle::with_template(&format!(
                "{{prefix:<{prefix_width}}} {{bar:30.cyan/blue}} {{human_pos:>9}}/{{human_len:<9}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ ")
        };
        let total = multi.add(ProgressBar::new(target));
        total.set_style(bar_style(width));
        total.set_prefix("total");
        // One host is the total: no second bar saying the same.
        let per_host = if hosts.len() > 1 { hosts } else { &[] };
        let hosts = per_host
            .iter()
            .map(|(name, share)| {
                let b = multi.add(ProgressBar::new((*share).max(1)));
                if *share == 0 {
                    let s = ProgressStyle::with_template(&format!(
                        "{{prefix:<{width}}} {{spinner}} {{msg}}"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                    b.set_style(s);
                } else {
                    b.set_style(bar_style(width));
                }
                b.set_prefix(name.clone());
                b
            })
            .collect();
        View::Bars {
            multi,
            total,
            hosts,
        }
    }

    pub fn show(&self, total: &Frame, hosts: &[HostFrame]) {
        let total_msg = format!(
            "[{:>6.1}s] {}/s · errors {} · server RSS {} · server kernel {}",
            total.t,
            fmt::int(total.rate as u64),
            fmt::int(total.errors),
            fmt::bytes(total.server_rss as f64),
            fmt::bytes(total.kernel_bytes.max(0) as u64 as f64)
        );
        let host_msg = |h: &HostFrame| match h.failure {
            Some(f) => format!("FAILED: {f}"),
            None if h.share == 0 => format!(
                "{}: {} open · RSS {} · errors {}",
                h.role,
                fmt::int(h.open),
                fmt::bytes(h.rss as f64),
                fmt::int(h.errors)
            ),
            None => format!(
                "{}/s · errors {} · RSS {}",
                fmt::int(h.rate as u64),
                fmt::int(h.errors),
                fmt::bytes(h.rss as f64)
            ),
        };
        match self {
            View::Bars {
                total: bar,
                hosts: bars,
                ..
            } => {
                bar.set_position(total.established.min(total.target));
                bar.set_message(total_msg);
                for (b, h) in bars.iter().zip(hosts) {
                    if h.share > 0 {
                        b.set_position(h.open.min(h.share));
                    } else {
                        b.tick();
                    }
                    b.set_message(host_msg(h));
                }
            }
            View::Plain if hosts.len() <= 1 => println!(
                "t={:>5.1}s connections: {}/{} {}/s · errors {} · server RSS {} · kernel {}",
                total.t,
                fmt::int(total.established),
                fmt::int(total.target),
                fmt::int(total.rate as u64),
                fmt::int(total.errors),
                fmt::bytes(total.server_rss as f64),
                fmt::bytes(total.kernel_bytes.max(0) as u64 as f64)
            ),
            View::Plain => {
                let brief: Vec<String> = hosts
                    .iter()
                    .map(|h| match h.failure {
                        Some(_) => format!("{} FAILED", h.name),
                        None if h.share == 0 => format!("{} {} open", h.name, fmt::int(h.open)),
                        None => format!("{} {}/{}", h.name, fmt::int(h.open), fmt::int(h.share)),
                    })
                    .collect();
                println!(
                    "t={:>5.1}s connections: {}/{} {}/s errors {} | {}",
                    total.t,
                    fmt::int(total.established),
                    fmt::int(total.target),
                    fmt::int(total.rate as u64),
                    fmt::int(total.errors),
                    brief.join(" · ")
                );
            }
        }
    }

    /// Prints a line above the bars (or plainly).
    pub fn note(&self, line: &str) {
        match self {
            View::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            View::Plain => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let View::Bars { total, hosts, .. } = self {
            total.abandon();
            for h in hosts {
                h.abandon();
            }
        }
    }
}
