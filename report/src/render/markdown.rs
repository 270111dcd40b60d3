//! `--format markdown`: GitHub-flavoured markdown, for issues and notes.

use crate::doc::Block;

/// Cells may not contain `|` or newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(head: &[String], rows: &[Vec<String>], out: &mut String) {
    let cols = rows
        .iter()
        .map(Vec::len)
        .chain([head.len()])
        .max()
        .unwrap_or(0);
    let row = |r: &[String]| {
        let mut cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        cells.resize(cols, String::new());
        format!("| {} |\n", cells.join(" | "))
    };
    out.push_str(&row(head));
    out.push_str(&format!("|{}\n", " --- |".repeat(cols)));
    for r in rows {
        out.push_str(&row(r));
    }
}

pub fn render(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => out.push_str(&format!("## {}\n\n", cell(t))),
            Block::Notices(ns) => {
                out.push_str("> **Notice: missing, damaged or doubtful data.**\n");
                for n in ns {
                    out.push_str(&format!("> - {}\n", cell(n)));
                }
                out.push('\n');
            }
            Block::Pairs { title, rows } => {
                out.push_str(&format!("### {title}\n\n"));
                let head = vec![String::new(), String::new()];
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                table(&head, &rows, &mut out);
                out.push('\n');
            }
            Block::Table { title, head, rows } => {
                out.push_str(&format!("### {title}\n\n"));
                table(head, rows, &mut out);
                out.push('\n');
            }
            Block::Limit { sentence, evidence } => out.push_str(&format!(
                "### Limiting factor\n\n**{}**\n\nEvidence: `{}`\n\n",
                cell(sentence),
                evidence.replace('`', "'")
            )),
            Block::Charts(_) => {}
        }
    }
    out
}
