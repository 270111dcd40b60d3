//! Charts of a run's time series, drawn with plotters' SVG backend: connections over time (total,
//! server side, and per client host) and connect rate over time (total and per client host).

use c1m_rundir::Event;
use plotters::prelude::*;
use std::collections::BTreeMap;

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 440;

/// One drawn chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name inside the run directory.
    pub file: String,
    pub title: String,
    pub svg: String,
    pub width: u32,
    pub height: u32,
}

/// Distinct on white and in print; the total comes first and is drawn thickest.
const COLORS: &[RGBColor] = &[
    RGBColor(0x1f, 0x4e, 0x9c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

type Points = Vec<(f64, f64)>;

/// A named line.
struct Line {
    label: String,
    points: Points,
    /// Totals are drawn thicker than the per-host lines.
    bold: bool,
    /// Index into [`COLORS`]; a host keeps its colour across both charts.
    color: usize,
}

/// Both charts of a run; empty when the series has no lines.
pub fn draw(events: &[Event]) -> anyhow::Result<Vec<Chart>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut clients: BTreeMap<&str, (Points, Points)> = BTreeMap::new();
    for e in events {
        for (name, h) in &e.hosts {
            if h.role.contains("client") || h.role.is_empty() {
                let c = clients.entry(name).or_default();
                c.0.push((e.t, h.established as f64));
                c.1.push((e.t, h.connect_rate));
            }
        }
    }
    // The clients start at t=0 with nothing open; the first sample comes a second later.
    let origin = |mut pts: Points| {
        if pts.first().is_some_and(|p| p.0 > 0.0) {
            pts.insert(0, (0.0, 0.0));
        }
        pts
    };
    let clients: BTreeMap<&str, (Points, Points)> = clients
        .into_iter()
        .map(|(k, (c, r))| (k, (origin(c), origin(r))))
        .collect();
    // One client host's line would only repeat the total.
    let per_host = clients.len() > 1;
    let mut conns = vec![
        Line {
            label: "established (all clients)".into(),
            points: origin(events.iter().map(|e| (e.t, e.established as f64)).collect()),
            bold: true,
            color: 0,
        },
        Line {
            label: "open on server(s)".into(),
            points: origin(events.iter().map(|e| (e.t, e.server_open as f64)).collect()),
            bold: false,
            color: 1,
        },
    ];
    let mut rates = vec![Line {
        label: "connect rate (all clients)".into(),
        points: origin(events.iter().map(|e| (e.t, e.connect_rate)).collect()),
        bold: true,
        color: 0,
    }];
    if per_host {
        for (i, (name, (c, r))) in clients.into_iter().enumerate() {
            conns.push(Line {
                label: name.to_string(),
                points: c,
                bold: false,
                color: 2 + i,
            });
            rates.push(Line {
                label: name.to_string(),
                points: r,
                bold: false,
                color: 2 + i,
            });
        }
    }
    Ok(vec![
        Chart {
            file: "connections.svg".into(),
            title: "Connections over time".into(),
            svg: line_chart(
                "Connections over time",
                "connections",
                &conns,
                SeriesLabelPosition::LowerRight,
            )?,
            width: WIDTH,
            height: HEIGHT,
        },
        Chart {
            file: "connect-rate.svg".into(),
            title: "Connect rate over time".into(),
            svg: line_chart(
                "Connect rate over time",
                "connections / s",
                &rates,
                SeriesLabelPosition::UpperRight,
            )?,
            width: WIDTH,
            height: HEIGHT,
        },
    ])
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing chart: {e}")
}

/// Axis labels: `1,200,000` reads better than `1200000.0`.
fn axis_int(v: &f64) -> String {
    super::fmt::num(*v, 0)
}

fn line_chart(
    title: &str,
    y_desc: &str,
    lines: &[Line],
    legend: SeriesLabelPosition,
) -> anyhow::Result<String> {
    let t_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.08;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the clients started")
            .y_desc(y_desc)
            .y_label_formatter(&axis_int)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for line in lines {
            let color = COLORS[line.color % COLORS.len()].to_rgba();
            let style = color.stroke_width(if line.bold { 3 } else { 2 });
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(err)?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A comparison's bar charts: one per charted figure that any run has, one bar per run.
pub fn bars(rows: &[super::model::CompareRow], labels: &[String]) -> anyhow::Result<Vec<Chart>> {
    let mut out = Vec::new();
    for (metric, title, unit) in super::compare::CHARTED {
        let Some(row) = rows.iter().find(|r| r.metric == *metric) else {
            continue;
        };
        if row.values.iter().all(Option::is_none) {
            continue;
        }
        out.push(Chart {
            file: format!("compare-{metric}.svg"),
            title: title.to_string(),
            svg: bar_chart(title, unit, labels, &row.values)?,
            width: WIDTH,
            height: HEIGHT,
        });
    }
    Ok(out)
}

fn bar_chart(
    title: &str,
    unit: &str,
    labels: &[String],
    values: &[Option<f64>],
) -> anyhow::Result<String> {
    let n = values.len().max(1);
    let y_max = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, b| a.max(*b))
        .max(1e-9)
        * 1.15;
    let label_of = |x: &f64| -> String {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&label_of)
            .y_desc(unit)
            .y_label_formatter(&|v: &f64| {
                if y_max < 10.0 {
                    super::fmt::num(*v, 2)
                } else {
                    axis_int(v)
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let color = COLORS[i % COLORS.len()];
            let x = i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, v)],
                    color.filled(),
                )))
                .map_err(err)?;
            let text = if v >= 100.0 {
                axis_int(&v)
            } else {
                super::fmt::num(v, 2)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x + 0.5, v + y_max * 0.02),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
