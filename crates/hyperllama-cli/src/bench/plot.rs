//! The `--plot` SVG: for the sweep, output throughput and TTFT p95 against concurrency (log
//! scale); for the other workloads, bars of output throughput and TTFT p50/p95.
//!
//! Drawn with `plotters`' SVG backend only: text is written as SVG `<text>` elements, so no
//! font files or system libraries are needed.
//!
//! # Invariants
//! - A missing value (no successful request) is drawn as nothing, never as 0.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::prelude::*;

use super::report::Report;

const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 380;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw the plot: {e}")
}

/// Writes the plot of `report` to `path`.
pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let svg = render(report)?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// The plot of `report` as SVG text.
pub fn render(report: &Report) -> anyhow::Result<String> {
    let sweep: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.workload == "sweep" && m.concurrency.is_some())
        .collect();
    let others: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.workload != "sweep")
        .collect();
    let rows = u32::from(!sweep.is_empty()) + u32::from(!others.is_empty());
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * rows.max(1) + 40;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = format!(
            "hyperllama bench: {} ({}, {}) {}",
            report.label, report.model, report.api, report.timestamp
        );
        let root = root.titled(&title, ("sans-serif", 18)).map_err(err)?;
        let panels = root.split_evenly((rows.max(1) as usize, 2));
        let mut next = 0;
        if !sweep.is_empty() {
            let points = |f: &dyn Fn(&super::report::Metrics) -> Option<f64>| -> Vec<(f64, f64)> {
                sweep
                    .iter()
                    .filter_map(|m| Some((m.concurrency? as f64, f(m)?)))
                    .collect()
            };
            line_panel(
                &panels[next],
                "sweep: output tokens/s",
                "tok/s",
                &points(&|m| Some(m.output_tok_s)),
                &BLUE,
            )?;
            line_panel(
                &panels[next + 1],
                "sweep: TTFT p95",
                "ms",
                &points(&|m| m.ttft_ms.p95),
                &RED,
            )?;
            next += 2;
        }
        if !others.is_empty() {
            let names: Vec<String> = others.iter().map(|m| m.key()).collect();
            bar_panel(
                &panels[next],
                "output tokens/s",
                &names,
                &[(
                    others.iter().map(|m| Some(m.output_tok_s)).collect(),
                    BLUE.to_rgba(),
                )],
            )?;
            bar_panel(
                &panels[next + 1],
                "TTFT p95 (light) over p50 (dark), ms",
                &names,
                &[
                    (
                        others.iter().map(|m| m.ttft_ms.p95).collect(),
                        RED.mix(0.35),
                    ),
                    (
                        others.iter().map(|m| m.ttft_ms.p50).collect(),
                        RED.to_rgba(),
                    ),
                ],
            )?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A y-axis label: whole numbers, unless the axis is short.
fn y_label(y: f64, top: f64) -> String {
    if top < 10.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.0}")
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A line of `points` (x = concurrency) on a log x axis.
fn line_panel(
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    color: &RGBColor,
) -> anyhow::Result<()> {
    let x_min = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let (x_min, x_max) = if x_min.is_finite() {
        (x_min, x_max)
    } else {
        (1.0, 1.0)
    };
    let y_top = (y_max * 1.15).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(
            ((x_min / 1.5).max(0.5)..x_max * 1.5).log_scale(),
            0.0..y_top,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("concurrency")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| y_label(*y, y_top))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
        .map_err(err)?;
    Ok(())
}

/// One bar per name; several series are drawn over each other in order (the later ones
/// should be the smaller values, as p50 over p95).
fn bar_panel(
    area: &Area<'_>,
    title: &str,
    names: &[String],
    series: &[(Vec<Option<f64>>, RGBAColor)],
) -> anyhow::Result<()> {
    let n = names.len();
    let y_max = series
        .iter()
        .flat_map(|(v, _)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let y_top = (y_max * 1.15).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(2))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| y_label(*y, y_top))
        .draw()
        .map_err(err)?;
    for (values, color) in series {
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                let x = i as f64;
                Some(Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, (*v)?)],
                    color.filled(),
                ))
            }))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{Metrics, Params, FORMAT};
    use crate::bench::stats::Percentiles;

    #[test]
    fn the_plot_is_svg_with_every_workload() {
        let level = |c: usize, tok_s: f64| Metrics {
            workload: "sweep".into(),
            concurrency: Some(c),
            output_tok_s: tok_s,
            ttft_ms: Percentiles {
                p50: Some(10.0),
                p95: Some(20.0 * c as f64),
                p99: None,
            },
            ..Metrics::default()
        };
        let r = Report {
            format: FORMAT.into(),
            label: "ours".into(),
            url: "http://127.0.0.1:11434".into(),
            api: "openai".into(),
            model: "m".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            params: Params {
                workloads: vec![],
                concurrency: vec![1, 4],
                requests: 3,
                max_tokens: 8,
                seed: 1,
                system_tokens: 1,
                users: 1,
                history_tokens: 1,
                decoders: 1,
                long_tokens: 1,
                prompt_tokens: 0,
                timeout_s: 1,
                burst: 500,
            },
            results: vec![
                level(1, 50.0),
                level(4, 150.0),
                Metrics {
                    workload: "multi-turn".into(),
                    output_tok_s: 40.0,
                    ..Metrics::default()
                },
            ],
        };
        let svg = render(&r).expect("renders");
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("sweep: output tokens/s"));
        assert!(svg.contains("multi-turn"));
        // No workload at all still gives a (titled) SVG.
        let empty = Report {
            results: vec![],
            ..r
        };
        assert!(render(&empty).expect("renders").starts_with("<svg"));
    }
}
