//! The live view of a run: an indicatif bar on a terminal, one plain line a second otherwise
//! (`--no-progress`, or stdout is not a TTY).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

use crate::fmt;

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

pub enum View {
    Bar(ProgressBar),
    Plain,
}

impl View {
    pub fn new(target: u64, no_progress: bool) -> View {
        if no_progress || !std::io::stdout().is_terminal() {
            return View::Plain;
        }
        let bar = ProgressBar::with_draw_target(Some(target), ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:36.cyan/blue} {human_pos}/{human_len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
        View::Bar(bar)
    }

    pub fn show(&self, f: &Frame) {
        let msg = format!(
            "{}/s · errors {} · server RSS {} · kernel {}",
            fmt::int(f.rate as u64),
            fmt::int(f.errors),
            fmt::bytes(f.server_rss as f64),
            fmt::bytes(f.kernel_bytes.max(0) as u64 as f64)
        );
        match self {
            View::Bar(b) => {
                b.set_position(f.established.min(f.target));
                b.set_message(msg);
            }
            View::Plain => println!(
                "t={:>5.1}s connections: {}/{} {}",
                f.t,
                fmt::int(f.established),
                fmt::int(f.target),
                msg
            ),
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn note(&self, line: &str) {
        match self {
            View::Bar(b) => b.println(line),
            View::Plain => println!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let View::Bar(b) = self {
            b.abandon();
        }
    }
}
