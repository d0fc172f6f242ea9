//! Evaluating one test run: a `results/NAME/test_<epoch>` folder as `pix2pix test` writes it
//! (`images/<stem>_{real_A,fake_B,real_B}.png`), one row of metrics per image.

use super::metrics::{compare, Image, Metrics};
use crate::checkpoint::write_atomic;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The PNGs of one test image; real_A may be absent (only fake_B and real_B are compared).
#[derive(Clone, Debug)]
pub struct ImagePaths {
    pub stem: String,
    pub real_a: Option<PathBuf>,
    pub fake_b: PathBuf,
    pub real_b: PathBuf,
}

/// One image of a run and its metrics.
#[derive(Clone, Debug)]
pub struct ImageResult {
    pub paths: ImagePaths,
    pub metrics: Metrics,
}

/// A whole run, images sorted by stem.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// `NAME/test_<epoch>`: the last two components of the folder.
    pub name: String,
    pub dir: PathBuf,
    pub images: Vec<ImageResult>,
}

/// Where the PNGs are: `DIR/images` as `test` writes it, or `DIR` itself when the user points at
/// the images folder or a flat folder.
fn images_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("images");
    if sub.is_dir() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// The run's display name: `NAME/test_<epoch>` from the folder's last two components.
pub fn run_name(dir: &Path) -> String {
    let comps: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match comps.len() {
        0 => dir.display().to_string(),
        1 => comps[0].clone(),
        n => format!("{}/{}", comps[n - 2], comps[n - 1]),
    }
}

/// The fake_B/real_B pairs in a run folder, sorted by stem.
pub fn find_pairs(dir: &Path) -> Result<Vec<ImagePaths>> {
    if !dir.is_dir() {
        bail!(
            "result folder {} does not exist (expected results/NAME/test_EPOCH)",
            dir.display()
        );
    }
    let images = images_dir(dir);
    let entries = std::fs::read_dir(&images).with_context(|| format!("listing {}", images.display()))?;
    let mut out = vec![];
    for e in entries {
        let path = e.with_context(|| format!("listing {}", images.display()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix("_fake_B.png") else {
            continue;
        };
        let real_b = images.join(format!("{stem}_real_B.png"));
        if !real_b.is_file() {
            bail!("{} has no matching {}", path.display(), real_b.display());
        }
        let real_a = Some(images.join(format!("{stem}_real_A.png"))).filter(|p| p.is_file());
        out.push(ImagePaths {
            stem: stem.to_string(),
            real_a,
            fake_b: path,
            real_b,
        });
    }
    if out.is_empty() {
        bail!(
            "no image pairs in {}: expected files named <stem>_fake_B.png and <stem>_real_B.png",
            images.display()
        );
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    Ok(out)
}

/// Loads every pair of a run folder and computes its metrics (in parallel: SSIM dominates).
pub fn evaluate_run(dir: &Path) -> Result<RunResult> {
    use rayon::prelude::*;
    let pairs = find_pairs(dir)?;
    let images = pairs
        .into_par_iter()
        .map(|paths| {
            let fake = Image::load(&paths.fake_b)?;
            let real = Image::load(&paths.real_b)?;
            let metrics = compare(&fake, &real)
                .with_context(|| format!("{} against {}", paths.fake_b.display(), paths.real_b.display()))?;
            Ok(ImageResult { paths, metrics })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunResult {
        name: run_name(dir),
        dir: dir.to_path_buf(),
        images,
    })
}

/// Formats a value for CSV: `inf` for PSNR of identical images, otherwise the shortest text that
/// reads back as the same f64 (a cosine dissimilarity of 3e-5 keeps its digits).
pub fn fmt_num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v}")
    }
}

/// `stem,cosine_dissimilarity,l1,psnr,ssim`, one row per image.
pub fn metrics_csv(run: &RunResult) -> String {
    let mut s = String::from("stem,cosine_dissimilarity,l1,psnr,ssim\n");
    for im in &run.images {
        let m = &im.metrics;
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            csv_field(&im.paths.stem),
            fmt_num(m.cosine_dissimilarity),
            fmt_num(m.l1),
            fmt_num(m.psnr),
            fmt_num(m.ssim)
        );
    }
    s
}

/// Writes `DIR/metrics.csv` (replacing an earlier one: it is derived data, not the user's).
pub fn write_metrics_csv(run: &RunResult) -> Result<PathBuf> {
    let path = run.dir.join("metrics.csv");
    write_atomic(&path, metrics_csv(run).as_bytes())?;
    Ok(path)
}

/// Quotes a CSV field when it needs it (a stem may hold a comma).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
