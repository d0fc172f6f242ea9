//! The loss plot (the study's Fig. 5): the loss columns of `loss_log.csv` (pix2pix: G_GAN, G_L1,
//! D_real, D_fake; CycleGAN: D_A, G_A, cycle_A, idt_A, D_B, G_B, cycle_B, idt_B) against images
//! seen, raw (thin, light) and smoothed (thick), in two panels because the weighted L1 terms
//! (λ·L1, ~10s) and the GAN losses (~1) do not share a scale.

use crate::checkpoint::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Plot size in pixels.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 800;

/// DejaVu Sans cut down to ASCII (14 KB; licence in DejaVuSans-ascii.LICENSE), embedded so that
/// labels render on machines without fonts and the binary stays self-contained.
static FONT: &[u8] = include_bytes!("DejaVuSans-ascii.ttf");

/// The loss columns we plot, per model (the reference's loss_names); any other column (lr,
/// timings …) is ignored. A log with a `cycle_A` column is CycleGAN's.
const PIX2PIX_LOSSES: [&str; 4] = ["G_GAN", "G_L1", "D_real", "D_fake"];
const CYCLEGAN_LOSSES: [&str; 8] = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"];

/// Weighted L1 terms, drawn in the lower panel; the GAN terms go in the upper one.
fn is_reconstruction(name: &str) -> bool {
    name == "G_L1" || name.starts_with("cycle_") || name.starts_with("idt_")
}

/// The series read from a loss log: x = images seen, one y vector per loss in `names`.
#[derive(Clone, Debug, PartialEq)]
pub struct LossLog {
    pub images: Vec<f64>,
    pub names: Vec<&'static str>,
    pub losses: Vec<Vec<f64>>,
    /// Rows that could not be read (a line cut short by a crash or a concurrent write).
    pub skipped: usize,
}

/// A CSV reader (rows may be cut short: a crash or a concurrent append) and its header.
fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord)> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = rdr
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone();
    Ok((rdr, headers))
}

/// The index of column `name`, or an error naming the file and its header.
fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
        anyhow!(
            "{} has no column {name} (header: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        )
    })
}

/// Reads `loss_log.csv` by column name, so added or reordered columns do not matter.
pub fn read_loss_log(csv_path: &Path) -> Result<LossLog> {
    let (mut rdr, headers) = open_csv(csv_path)?;
    let col = |name: &str| column(&headers, name, csv_path);
    let x_col = col("images")?;
    let names: Vec<&'static str> = if headers.iter().any(|h| h.trim() == "cycle_A") {
        CYCLEGAN_LOSSES.to_vec()
    } else {
        PIX2PIX_LOSSES.to_vec()
    };
    let y_cols = names.iter().map(|n| col(n)).collect::<Result<Vec<usize>>>()?;
    let mut log = LossLog {
        images: vec![],
        losses: vec![vec![]; names.len()],
        names,
        skipped: 0,
    };
    for rec in rdr.records() {
        let Ok(rec) = rec else {
            log.skipped += 1;
            continue;
        };
        let get = |i: usize| rec.get(i).and_then(|v| v.trim().parse::<f64>().ok());
        let ys: Option<Vec<f64>> = y_cols.iter().map(|&i| get(i)).collect();
        match (get(x_col), ys) {
            (Some(x), Some(ys)) => {
                log.images.push(x);
                for (series, v) in log.losses.iter_mut().zip(ys) {
                    series.push(v);
                }
            }
            _ => log.skipped += 1,
        }
    }
    Ok(log)
}

/// Exponential moving average with bias correction (as TensorBoard's smoothing), so the curve
/// starts at the first value instead of climbing from 0. The span grows with the number of points
/// (n/20): about the same visual smoothing for a short test run and a 200-epoch log.
pub fn smooth(v: &[f64]) -> Vec<f64> {
    let span = (v.len() as f64 / 20.0).max(1.0);
    let alpha = 2.0 / (span + 1.0);
    let (mut avg, mut weight) = (0.0, 0.0);
    v.iter()
        .map(|&x| {
            if x.is_finite() {
                avg = (1.0 - alpha) * avg + alpha * x;
                weight = (1.0 - alpha) * weight + alpha;
            }
            if weight > 0.0 {
                avg / weight
            } else {
                f64::NAN
            }
        })
        .collect()
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are ours and checked by the tests; a failure would only lose the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Reads `csv` (a `loss_log.csv`) and writes the two-panel loss plot to `png`, WIDTH×HEIGHT.
/// Cheap enough (a few ms) to call at the end of every epoch.
pub fn plot_losses(csv: &Path, png: &Path) -> Result<()> {
    let log = read_loss_log(csv)?;
    if log.images.is_empty() {
        bail!("{} has no loss rows to plot yet", csv.display());
    }
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut buf = vec![255u8; w * h * 3];
    draw(&log, &mut buf, &csv.display().to_string())
        .map_err(|e| anyhow!("drawing the loss plot of {}: {e}", csv.display()))?;
    write_png(png, &buf, WIDTH, HEIGHT)
}

/// Encodes an RGB buffer (w×h×3) as PNG and writes it atomically.
pub(crate) fn write_png(png: &Path, buf: &[u8], w: u32, h: u32) -> Result<()> {
    let mut bytes = vec![];
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        buf,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("encoding {}", png.display()))?;
    write_atomic(png, &bytes)
}

/// Series colours: D_real green, D_fake red (the pair to watch), G_GAN blue, G_L1 purple; for
/// CycleGAN the A side in those colours (D_A green, G_A blue, cycle_A purple, idt_A brown) and the
/// B side in others (D_B red, G_B orange, cycle_B pink, idt_B grey).
fn colour(name: &str) -> RGBColor {
    match name {
        "G_GAN" | "G_A" => RGBColor(31, 119, 180),
        "D_real" | "D_A" => RGBColor(44, 160, 44),
        "D_fake" | "D_B" => RGBColor(214, 39, 40),
        "G_B" => RGBColor(255, 127, 14),
        "idt_A" => RGBColor(140, 86, 75),
        "cycle_B" => RGBColor(227, 119, 194),
        "idt_B" => RGBColor(127, 127, 127),
        _ => RGBColor(148, 103, 189),
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(log: &LossLog, buf: &mut [u8], title: &str) -> DrawResult {
    register_font();
    let root = BitMapBackend::with_buffer(buf, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("losses: {title}"), ("sans-serif", 18))?;
    let panels = root.split_evenly((2, 1));
    let (rec, gan): (Vec<usize>, Vec<usize>) = (0..log.names.len()).partition(|&i| is_reconstruction(log.names[i]));
    let lower = if log.names.contains(&"G_L1") {
        "G_L1 (lambda * L1)"
    } else {
        "cycle and identity (lambda * L1)"
    };
    panel(&panels[0], log, &gan, "GAN losses")?;
    panel(&panels[1], log, &rec, lower)?;
    root.present()?;
    Ok(())
}

/// Finite (min, max) of the given series, padded 5% so lines do not sit on the frame.
fn y_range(log: &LossLog, which: &[usize]) -> (f64, f64) {
    let vals = which
        .iter()
        .flat_map(|&i| log.losses[i].iter())
        .filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    log: &LossLog,
    which: &[usize],
    caption: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let finite_x = log.images.iter().copied().filter(|v| v.is_finite());
    let x0 = finite_x.clone().fold(f64::INFINITY, f64::min);
    let x1 = finite_x.fold(f64::NEG_INFINITY, f64::max);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let (y0, y1) = y_range(log, which);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("images seen")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("loss")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for &i in which {
        let name = log.names[i];
        let c = colour(name);
        let points = |ys: &[f64]| -> Vec<(f64, f64)> {
            log.images
                .iter()
                .zip(ys)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(&x, &y)| (x, y))
                .collect()
        };
        chart.draw_series(LineSeries::new(points(&log.losses[i]), c.mix(0.3).stroke_width(1)))?;
        chart
            .draw_series(LineSeries::new(points(&smooth(&log.losses[i])), c.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// Plots columns of a CSV against `x_col`, one panel per column, points joined by lines (the
/// validation curves of the study's Fig. 10). Rows that do not parse are skipped.
pub fn plot_columns(csv_path: &Path, x_col: &str, cols: &[&str], png: &Path, title: &str) -> Result<()> {
    let (mut rdr, headers) = open_csv(csv_path)?;
    let find = |name: &str| column(&headers, name, csv_path);
    let xi = find(x_col)?;
    let yi: Vec<usize> = cols.iter().map(|c| find(c)).collect::<Result<_>>()?;
    let mut series: Vec<Vec<(f64, f64)>> = vec![vec![]; cols.len()];
    for rec in rdr.records().flatten() {
        let get = |i: usize| {
            rec.get(i)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        if let Some(x) = get(xi) {
            for (s, &i) in series.iter_mut().zip(&yi) {
                if let Some(y) = get(i) {
                    s.push((x, y));
                }
            }
        }
    }
    if series.iter().all(|s| s.is_empty()) {
        bail!("{} has no rows to plot yet", csv_path.display());
    }
    let (w, h) = (WIDTH, 300 * cols.len() as u32 + 40);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    (|| -> DrawResult {
        register_font();
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 18))?;
        for ((area, pts), name) in root.split_evenly((cols.len(), 1)).iter().zip(&series).zip(cols) {
            let (x0, x1) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (y0, y1) = pts
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let (x0, x1) = if x0 < x1 { (x0, x1) } else { (x0 - 1.0, x0 + 1.0) };
            let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
            let (y0, y1) = if y0.is_finite() {
                (y0 - pad, y1 + pad)
            } else {
                (0.0, 1.0)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(*name, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(x_col)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            let c = colour(name);
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        root.present()?;
        Ok(())
    })()
    .map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
    write_png(png, &buf, w, h)
}
