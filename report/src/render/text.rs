//! `--format table`: aligned plain text for a terminal.

use crate::doc::Block;

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// Columns separated by two spaces, each as wide as its widest cell.
fn table(head: &[String], rows: &[Vec<String>], out: &mut String) {
    let cols = rows
        .iter()
        .map(Vec::len)
        .chain([head.len()])
        .max()
        .unwrap_or(0);
    let mut w = vec![0; cols];
    for row in std::iter::once(head).chain(rows.iter().map(Vec::as_slice)) {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let line = |row: &[String]| {
        let cells: Vec<String> = row.iter().enumerate().map(|(i, c)| pad(c, w[i])).collect();
        format!("  {}\n", cells.join("  ").trim_end())
    };
    out.push_str(&line(head));
    let total: usize = w.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
    out.push_str(&format!("  {}\n", "-".repeat(total)));
    for r in rows {
        out.push_str(&line(r));
    }
}

pub fn render(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("{t}\n{}\n", "=".repeat(width(t))));
            }
            Block::Notices(ns) => {
                out.push_str("\nNOTICE: missing, damaged or doubtful data:\n");
                for n in ns {
                    out.push_str(&format!("  ! {n}\n"));
                }
            }
            Block::Pairs { title, rows } => {
                out.push_str(&format!("\n{title}\n"));
                let w = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
                for (k, v) in rows {
                    out.push_str(&format!("  {}  {v}\n", pad(k, w)));
                }
            }
            Block::Table { title, head, rows } => {
                out.push_str(&format!("\n{title}\n"));
                table(head, rows, &mut out);
            }
            Block::Limit { sentence, evidence } => {
                out.push_str(&format!(
                    "\nLimiting factor\n  {sentence}\n  evidence: {evidence}\n"
                ));
            }
            Block::Charts(_) => {}
        }
    }
    out
}
