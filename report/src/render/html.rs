//! `--format html`: one self-contained page. Charts are embedded as `data:` URIs and the style
//! sheet is inline, so the page fetches nothing. The markup is also well-formed XML (XHTML
//! syntax), which lets tests parse it strictly.

use crate::charts::Chart;
use crate::doc::Block;
use base64::Engine as _;
use std::collections::BTreeMap;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1150px}\
h1{font-size:1.4em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}\
h3{font-size:1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}\
th{background:#f3f3f3}td.k{font-weight:bold;white-space:nowrap}\
.notice{background:#fff4d6;border:1px solid #e0b000;padding:.5em 1em;margin:.6em 0}\
.limit{background:#eef4ff;border-left:4px solid #3060c0;padding:.5em 1em}\
.evidence{font-family:monospace;font-size:.9em;color:#444}\
img.chart{display:block;margin:.6em 0;max-width:100%;border:1px solid #eee}";

fn table(head: &[String], rows: &[Vec<String>], out: &mut String) {
    out.push_str("<table>\n");
    if head.iter().any(|h| !h.is_empty()) {
        out.push_str("<tr>");
        for h in head {
            out.push_str(&format!("<th>{}</th>", escape(h)));
        }
        out.push_str("</tr>\n");
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{}</td>", escape(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// `charts`: the charts of each run, by run name.
pub fn render(title: &str, blocks: &[Block], charts: &BTreeMap<String, Vec<Chart>>) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Title(t) => out.push_str(&format!("<h2>{}</h2>\n", escape(t))),
            Block::Notices(ns) => {
                out.push_str("<div class=\"notice\"><strong>Notice: missing, damaged or doubtful data.</strong>\n<ul>\n");
                for n in ns {
                    out.push_str(&format!("<li>{}</li>\n", escape(n)));
                }
                out.push_str("</ul></div>\n");
            }
            Block::Pairs { title, rows } => {
                out.push_str(&format!("<h3>{}</h3>\n<table>\n", escape(title)));
                for (k, v) in rows {
                    out.push_str(&format!(
                        "<tr><td class=\"k\">{}</td><td>{}</td></tr>\n",
                        escape(k),
                        escape(v)
                    ));
                }
                out.push_str("</table>\n");
            }
            Block::Table { title, head, rows } => {
                out.push_str(&format!("<h3>{}</h3>\n", escape(title)));
                table(head, rows, &mut out);
            }
            Block::Limit { sentence, evidence } => out.push_str(&format!(
                "<h3>Limiting factor</h3>\n<div class=\"limit\"><p>{}</p><p class=\"evidence\">evidence: {}</p></div>\n",
                escape(sentence),
                escape(evidence)
            )),
            Block::Charts(run) => {
                for c in charts.get(run).into_iter().flatten() {
                    let data = base64::engine::general_purpose::STANDARD.encode(&c.svg);
                    out.push_str(&format!(
                        "<h3>{}</h3>\n<img class=\"chart\" alt=\"{}\" width=\"{}\" height=\"{}\" src=\"data:image/svg+xml;base64,{data}\"/>\n",
                        escape(&c.title),
                        escape(&c.title),
                        c.width,
                        c.height
                    ));
                }
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}
