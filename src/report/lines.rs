//! Multi-panel line figures with one labelled line per series (the study's Fig. 5: one line per
//! batch size in each loss panel; Fig. 10: one line per run).

use super::plot::{register_font, write_png};
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use std::path::Path;

/// One labelled line.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: its caption, axis names and lines.
#[derive(Clone, Debug)]
pub struct Panel {
    pub caption: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
}

/// Pixels per panel.
const PANEL_W: u32 = 640;
const PANEL_H: u32 = 400;

/// The tab10 palette: series `i` gets colour `i % 10`, the same in every panel.
pub fn colour(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// Finite (min, max) over points, padded 5% (or ±0.5 for a flat line).
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5f64.max(lo.abs() * 0.05)
    };
    Some((lo - pad, hi + pad))
}

/// Draws `panels` in a grid of `cols` columns into `png`. Fails when no panel has a point.
pub fn plot_panels(png: &Path, title: &str, panels: &[Panel], cols: usize) -> Result<()> {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols);
    if panels.iter().all(|p| p.series.iter().all(|s| s.points.is_empty())) {
        bail!("{}: nothing to plot (no series has a point)", png.display());
    }
    let (w, h) = (PANEL_W * cols as u32, PANEL_H * rows as u32 + 40);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
        register_font();
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 18))?;
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(panels) {
            let all = || p.series.iter().flat_map(|s| s.points.iter());
            let Some((x0, x1)) = range(all().map(|q| q.0)) else {
                area.draw_text(
                    &format!("{}: no data", p.caption),
                    &("sans-serif", 16).into_text_style(area),
                    (20, 20),
                )?;
                continue;
            };
            let (y0, y1) = range(all().map(|q| q.1)).unwrap_or((0.0, 1.0));
            let mut chart = ChartBuilder::on(area)
                .caption(&p.caption, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(p.x_desc.as_str())
                .y_desc(p.y_desc.as_str())
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, s) in p.series.iter().enumerate() {
                let c = colour(i);
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|q| q.0.is_finite() && q.1.is_finite())
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                if pts.len() < 12 {
                    chart.draw_series(pts.iter().map(|&q| Circle::new(q, 3, c.filled())))?;
                }
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })()
    .map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
    write_png(png, &buf, w, h)
}
