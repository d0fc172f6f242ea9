//! The report's figures: Fig. 5 (losses against epochs, one line per batch size), Fig. 10
//! (validation cosine dissimilarity, one line per run), a sample grid per run and the style grids
//! of Figs. 6-8 (one row per person, one column per model).

use super::plan::{Model, RunSpec};
use super::runs::{checkpoints_dir, result_folder};
use crate::report::grid::image_grid;
use crate::report::lines::{plot_panels, Panel, Series};
use crate::report::plot::{read_loss_log, smooth};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Rows in the image grids.
pub const GRID_ROWS: usize = 4;
/// Cell size of the image grids.
const CELL: u32 = 128;
/// At most this many points per line (every k-th of the smoothed curve).
const MAX_POINTS: usize = 1500;

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let k = points.len().div_ceil(MAX_POINTS).max(1);
    let last = points.last().copied();
    let mut v: Vec<(f64, f64)> = points.into_iter().step_by(k).collect();
    if let (Some(l), Some(e)) = (last, v.last()) {
        if *e != l {
            v.push(l);
        }
    }
    v
}

/// Fig. 5: G_GAN, G_L1, D_real, D_fake against epochs (images seen / train images), smoothed,
/// one line per run in `runs` (the batch-size runs). `n_train(r)` is the run's train size.
pub fn fig5(out: &Path, png: &Path, runs: &[RunSpec], n_train: &dyn Fn(&RunSpec) -> usize) -> Result<bool> {
    let names = ["G_GAN", "G_L1", "D_real", "D_fake"];
    let mut panels: Vec<Panel> = names
        .iter()
        .map(|n| Panel {
            caption: format!("{n} (smoothed)"),
            x_desc: "epoch".into(),
            y_desc: "loss".into(),
            series: vec![],
        })
        .collect();
    let mut any = false;
    for r in runs {
        let csv = checkpoints_dir(out).join(r.dir_name()).join("loss_log.csv");
        if !csv.is_file() {
            continue;
        }
        let log = read_loss_log(&csv)?;
        let n = n_train(r).max(1) as f64;
        let x: Vec<f64> = log.images.iter().map(|i| i / n).collect();
        for (panel, ys) in panels.iter_mut().zip(&log.losses) {
            let pts: Vec<(f64, f64)> = x.iter().copied().zip(smooth(ys)).collect();
            any |= !pts.is_empty();
            panel.series.push(Series {
                label: format!("batch {} (run {})", r.batch_size, r.id),
                points: thin(pts),
            });
        }
    }
    if !any {
        return Ok(false);
    }
    plot_panels(png, "Fig. 5: losses by batch size (filtered data)", &panels, 2)?;
    Ok(true)
}

/// Fig. 10: validation cosine dissimilarity after each epoch, one line per run.
pub fn fig10(out: &Path, png: &Path, runs: &[RunSpec]) -> Result<bool> {
    let mut series = vec![];
    for r in runs {
        let csv = checkpoints_dir(out).join(r.dir_name()).join("val_log.csv");
        if !csv.is_file() {
            continue;
        }
        let mut rdr = csv::Reader::from_path(&csv).with_context(|| format!("reading {}", csv.display()))?;
        let mut pts = vec![];
        for rec in rdr.records().flatten() {
            if let (Some(e), Some(c)) = (
                rec.get(0).and_then(|v| v.parse::<f64>().ok()),
                rec.get(2).and_then(|v| v.parse::<f64>().ok()),
            ) {
                pts.push((e, c));
            }
        }
        series.push(Series {
            label: match r.model {
                Model::Pix2Pix => format!("run {} ({}, b{})", r.id, r.data.name(), r.batch_size),
                Model::CycleGan => format!("run {} (cycle_gan, {})", r.id, r.data.name()),
            },
            points: pts,
        });
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(false);
    }
    let panel = Panel {
        caption: "validation cosine dissimilarity (lower is better)".into(),
        x_desc: "epoch".into(),
        y_desc: "cosine dissimilarity".into(),
        series,
    };
    plot_panels(png, "Fig. 10: validation during training", &[panel], 1)?;
    Ok(true)
}

fn image(folder: &Path, stem: &str, label: &str) -> Option<PathBuf> {
    Some(folder.join("images").join(format!("{stem}_{label}.png"))).filter(|p| p.is_file())
}

/// The first `GRID_ROWS` stems of a result folder, sorted.
pub fn stems(folder: &Path) -> Vec<String> {
    crate::eval::find_pairs(folder)
        .map(|v| v.into_iter().take(GRID_ROWS).map(|p| p.stem).collect())
        .unwrap_or_default()
}

fn short(s: &str) -> String {
    s.chars().take(14).collect()
}

/// real_A | fake_B | real_B for the first test images of run `r`.
pub fn sample_grid(out: &Path, png: &Path, r: &RunSpec) -> Result<bool> {
    let folder = result_folder(out, r, "classic");
    let st = stems(&folder);
    if st.is_empty() {
        return Ok(false);
    }
    let cells: Vec<Vec<Option<PathBuf>>> = st
        .iter()
        .map(|s| {
            ["real_A", "fake_B", "real_B"]
                .iter()
                .map(|l| image(&folder, s, l))
                .collect()
        })
        .collect();
    let cols = ["real_A (cartoon)", "fake_B", "real_B (photo)"].map(String::from);
    image_grid(
        png,
        &cols,
        &st.iter().map(|s| short(s)).collect::<Vec<_>>(),
        &cells,
        CELL,
    )?;
    Ok(true)
}

/// Figs. 6-8: the test images cartoonized in `style`, one row per person, one column per model.
pub fn style_grid(out: &Path, png: &Path, style: &str, runs: &[RunSpec]) -> Result<bool> {
    let folders: Vec<(RunSpec, PathBuf)> = runs
        .iter()
        .map(|r| (*r, result_folder(out, r, style)))
        .filter(|(_, f)| f.is_dir())
        .collect();
    let Some((_, first)) = folders.first() else {
        return Ok(false);
    };
    let st = stems(first);
    if st.is_empty() {
        return Ok(false);
    }
    let mut cols = vec![format!("input ({style})")];
    cols.extend(folders.iter().map(|(r, _)| format!("run {}", r.id)));
    cols.push("photo".into());
    let cells: Vec<Vec<Option<PathBuf>>> = st
        .iter()
        .map(|s| {
            let mut row = vec![image(first, s, "real_A")];
            row.extend(folders.iter().map(|(_, f)| image(f, s, "fake_B")));
            row.push(image(first, s, "real_B"));
            row
        })
        .collect();
    image_grid(
        png,
        &cols,
        &st.iter().map(|s| short(s)).collect::<Vec<_>>(),
        &cells,
        CELL,
    )?;
    Ok(true)
}
