//! Evaluating one test run: a `results/NAME/test_<epoch>` folder as `pix2pix test` writes it
//! (`images/<stem>_{real_A,fake_B,real_B}.png`, and for CycleGAN also `fake_A`), one row of metrics
//! per image and direction: fake_B against real_B, and fake_A against real_A where a run has them.

use super::metrics::{compare, Image, Metrics};
use crate::checkpoint::write_atomic;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which translation of a run is scored: G(A) = fake_B against real_B (every run), or
/// CycleGAN's second generator, fake_A = G_B(B) against real_A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    AtoB,
    BtoA,
}

impl Direction {
    /// The generated image's label: `fake_B` or `fake_A`.
    pub fn fake(self) -> &'static str {
        match self {
            Direction::AtoB => "fake_B",
            Direction::BtoA => "fake_A",
        }
    }
    /// The image it is scored against: `real_B` or `real_A`.
    pub fn target(self) -> &'static str {
        match self {
            Direction::AtoB => "real_B",
            Direction::BtoA => "real_A",
        }
    }
    /// The generator's input: `real_A` or `real_B`.
    pub fn input(self) -> &'static str {
        match self {
            Direction::AtoB => "real_A",
            Direction::BtoA => "real_B",
        }
    }
    /// The per-image metrics file in the result folder.
    pub fn metrics_file(self) -> &'static str {
        match self {
            Direction::AtoB => "metrics.csv",
            Direction::BtoA => "metrics_fake_A.csv",
        }
    }
}

/// The PNGs of one test image in one direction (AtoB: real_A, fake_B, real_B; BtoA: real_B,
/// fake_A, real_A); the input may be absent (only the fake and its target are compared).
#[derive(Clone, Debug)]
pub struct ImagePaths {
    pub stem: String,
    pub input: Option<PathBuf>,
    pub fake: PathBuf,
    pub target: PathBuf,
}

/// One image of a run and its metrics.
#[derive(Clone, Debug)]
pub struct ImageResult {
    pub paths: ImagePaths,
    pub metrics: Metrics,
}

/// A whole run in one direction, images sorted by stem.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// `NAME/test_<epoch>`: the last two components of the folder (AtoB), with ` fake_A` after
    /// it for BtoA.
    pub name: String,
    pub dir: PathBuf,
    pub direction: Direction,
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
    find_pairs_in(dir, Direction::AtoB)
}

/// The fake/target pairs of `direction` in a run folder, sorted by stem; an error when there are none.
pub fn find_pairs_in(dir: &Path, direction: Direction) -> Result<Vec<ImagePaths>> {
    if !dir.is_dir() {
        bail!(
            "result folder {} does not exist (expected results/NAME/test_EPOCH)",
            dir.display()
        );
    }
    let images = images_dir(dir);
    let entries = std::fs::read_dir(&images).with_context(|| format!("listing {}", images.display()))?;
    let (fake, target, input) = (direction.fake(), direction.target(), direction.input());
    let mut out = vec![];
    for e in entries {
        let path = e.with_context(|| format!("listing {}", images.display()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(&format!("_{fake}.png")) else {
            continue;
        };
        let target_path = images.join(format!("{stem}_{target}.png"));
        if !target_path.is_file() {
            bail!("{} has no matching {}", path.display(), target_path.display());
        }
        let input_path = Some(images.join(format!("{stem}_{input}.png"))).filter(|p| p.is_file());
        out.push(ImagePaths {
            stem: stem.to_string(),
            input: input_path,
            fake: path,
            target: target_path,
        });
    }
    if out.is_empty() {
        bail!(
            "no image pairs in {}: expected files named <stem>_{fake}.png and <stem>_{target}.png",
            images.display()
        );
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    Ok(out)
}

/// Loads every fake_B/real_B pair of a run folder and computes its metrics.
pub fn evaluate_run(dir: &Path) -> Result<RunResult> {
    evaluate_run_in(dir, Direction::AtoB)
}

/// CycleGAN's second direction: fake_A against real_A, or None when the folder has no fake_A
/// (a pix2pix run).
pub fn evaluate_run_fake_a(dir: &Path) -> Result<Option<RunResult>> {
    let has_fake_a = std::fs::read_dir(images_dir(dir))
        .with_context(|| format!("listing {}", images_dir(dir).display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with("_fake_A.png")));
    if !has_fake_a {
        return Ok(None);
    }
    evaluate_run_in(dir, Direction::BtoA).map(Some)
}

/// Loads every pair of `direction` in a run folder and computes its metrics (in parallel: SSIM
/// dominates).
pub fn evaluate_run_in(dir: &Path, direction: Direction) -> Result<RunResult> {
    use rayon::prelude::*;
    let pairs = find_pairs_in(dir, direction)?;
    let images = pairs
        .into_par_iter()
        .map(|paths| {
            let fake = Image::load(&paths.fake)?;
            let real = Image::load(&paths.target)?;
            let metrics = compare(&fake, &real)
                .with_context(|| format!("{} against {}", paths.fake.display(), paths.target.display()))?;
            Ok(ImageResult { paths, metrics })
        })
        .collect::<Result<Vec<_>>>()?;
    let name = match direction {
        Direction::AtoB => run_name(dir),
        Direction::BtoA => format!("{} fake_A", run_name(dir)),
    };
    Ok(RunResult {
        name,
        dir: dir.to_path_buf(),
        direction,
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

/// Writes `DIR/metrics.csv` (fake_A: `DIR/metrics_fake_A.csv`), replacing an earlier one: it is
/// derived data, not the user's.
pub fn write_metrics_csv(run: &RunResult) -> Result<PathBuf> {
    let path = run.dir.join(run.direction.metrics_file());
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
