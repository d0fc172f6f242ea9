//! The study's data: one `prepare` run over the photos with the filters measuring but not dropping
//! (every style, one person-split), then the three training sets and the style test sets derived
//! from its manifest, so every run shares the same split and the same framing:
//!
//! - `original`: every photo, classic cartoons (run 1);
//! - `filtered`: the photos prepare's default filters keep (runs 2-4, 6), with `test_<style>` for
//!   the out-of-distribution tests;
//! - `augmented`: filtered, the train photos in the 4 training styles (run 5).

use super::plan::{TEST_STYLES, TRAIN_STYLES};
use super::records::{command, StageRecord};
use super::StudyConfig;
use crate::data::prepare::{filter_reason, list_images, prepare, PrepareArgs, Style};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn data_root(out: &Path) -> PathBuf {
    out.join("data")
}
pub fn master_dir(out: &Path) -> PathBuf {
    data_root(out).join("master")
}
pub fn variant_dir(out: &Path, variant: &str) -> PathBuf {
    data_root(out).join(variant)
}
/// `photos.csv`: one row per kept photo of the master set, with the filter that would drop it.
pub fn photos_csv(out: &Path) -> PathBuf {
    data_root(out).join("photos.csv")
}

/// The photo folder prepare reads: the user's, or a folder of links to an evenly spaced subset.
fn photo_folder(cfg: &StudyConfig, notes: &mut Vec<String>) -> Result<PathBuf> {
    let Some(max) = cfg.params.max_photos else {
        return Ok(cfg.photos.clone());
    };
    let files = list_images(&cfg.photos)?;
    if files.len() <= max {
        return Ok(cfg.photos.clone());
    }
    let dir = data_root(&cfg.out).join("photos");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for k in 0..max {
        let src = &files[k * files.len() / max];
        let abs = std::path::absolute(src)?;
        let dst = dir.join(src.file_name().context("photo without a file name")?);
        link_or_copy(&abs, &dst, true)?;
    }
    notes.push(format!(
        "{max} of the {} photos of {} (evenly spaced in name order) linked into {}",
        files.len(),
        cfg.photos.display(),
        dir.display()
    ));
    Ok(dir)
}

/// Symlink (for photos) or hard link (for pairs), copying when the file system refuses.
fn link_or_copy(src: &Path, dst: &Path, symlink: bool) -> Result<()> {
    #[cfg(unix)]
    let linked = if symlink {
        std::os::unix::fs::symlink(src, dst).is_ok()
    } else {
        std::fs::hard_link(src, dst).is_ok()
    };
    #[cfg(not(unix))]
    let linked = !symlink && std::fs::hard_link(src, dst).is_ok();
    if !linked {
        std::fs::copy(src, dst).with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// The master prepare's arguments: every style, filters measuring but not dropping.
pub fn master_args(cfg: &StudyConfig, photos: &Path) -> PrepareArgs {
    let mut a = PrepareArgs::new(photos, master_dir(&cfg.out));
    a.size = cfg.params.size;
    a.styles = TEST_STYLES
        .iter()
        .map(|s| s.parse::<Style>().expect("known style"))
        .collect();
    a.seed = cfg.seed;
    a.persons = cfg.persons.clone();
    a.person_column = cfg.person_column.clone();
    a.group_regex = cfg.group_regex.clone();
    a.no_grayscale_filter = true;
    a.keep_no_face = true;
    a.min_face_ratio = 0.0;
    a.no_face_filter = cfg.no_face_filter;
    a.cascade = cfg.cascade.clone();
    a.force = true;
    a
}

fn prepare_command(a: &PrepareArgs) -> String {
    let mut w: Vec<String> = vec!["prepare".into(), "--photos".into(), a.input.display().to_string()];
    w.extend(["--out".into(), a.output.display().to_string()]);
    w.extend(["--size".into(), a.size.to_string()]);
    w.extend(["--styles".into(), TEST_STYLES.join(",")]);
    w.extend(["--seed".into(), a.seed.to_string(), "--split".into(), a.split.clone()]);
    if let Some(p) = &a.persons {
        w.extend(["--persons".into(), p.display().to_string()]);
    }
    if let Some(c) = &a.person_column {
        w.extend(["--person-column".into(), c.clone()]);
    }
    if let Some(r) = &a.group_regex {
        w.extend(["--group-regex".into(), r.clone()]);
    }
    w.extend(["--no-grayscale-filter".into(), "--keep-no-face".into()]);
    w.extend(["--min-face-ratio".into(), "0".into()]);
    if a.no_face_filter {
        w.push("--no-face-filter".into());
    }
    if let Some(c) = &a.cascade {
        w.extend(["--cascade".into(), c.display().to_string()]);
    }
    w.push("--force".into());
    command(&w)
}

/// Options the data stage's outputs depend on.
pub fn stage_options(cfg: &StudyConfig) -> String {
    format!(
        "photos={} persons={:?} person_column={:?} group_regex={:?} size={} max_photos={:?} seed={} no_face_filter={} cascade={:?}",
        cfg.photos.display(),
        cfg.persons,
        cfg.person_column,
        cfg.group_regex,
        cfg.params.size,
        cfg.params.max_photos,
        cfg.seed,
        cfg.no_face_filter,
        cfg.cascade
    )
}

/// One kept photo of the master set.
#[derive(Clone, Debug)]
pub struct PhotoRow {
    /// The pair's name without the style (the test stem of every result folder).
    pub stem: String,
    pub split: String,
    /// Why prepare's default filters would drop it: grayscale, no_face, small_face; "" if kept.
    pub reason: String,
    /// style → the pair's path relative to the master folder.
    pub outputs: BTreeMap<String, String>,
}

fn read_master(cfg: &StudyConfig) -> Result<Vec<PhotoRow>> {
    let path = master_dir(&cfg.out).join("manifest.csv");
    let mut rdr = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    let h = rdr.headers()?.clone();
    let col = |n: &str| {
        h.iter()
            .position(|x| x == n)
            .with_context(|| format!("{} has no column {n}", path.display()))
    };
    let (file, split, status, style, output, colour, ratio) = (
        col("file")?,
        col("split")?,
        col("status")?,
        col("style")?,
        col("output")?,
        col("colourfulness")?,
        col("face_ratio")?,
    );
    let defaults = PrepareArgs::new("", "");
    let mut rows: BTreeMap<String, PhotoRow> = BTreeMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        if &rec[status] != "kept" {
            continue;
        }
        let c: f32 = rec[colour]
            .parse()
            .with_context(|| format!("{}: row {}: colourfulness {:?}", path.display(), i + 2, &rec[colour]))?;
        let face = (!cfg.no_face_filter).then(|| rec[ratio].parse::<f32>().ok());
        let reason = filter_reason(c, face, &defaults).map_or("", |d| d.name());
        let out = rec[output].to_string();
        let file_stem = Path::new(&out)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stem = file_stem
            .strip_suffix(&format!("_{}", &rec[style]))
            .unwrap_or(&file_stem)
            .to_string();
        let row = rows.entry(rec[file].to_string()).or_insert_with(|| PhotoRow {
            stem,
            split: rec[split].to_string(),
            reason: reason.to_string(),
            outputs: BTreeMap::new(),
        });
        row.outputs.insert(rec[style].to_string(), out);
    }
    Ok(rows.into_values().collect())
}

/// Reads `photos.csv` (written by the data stage): stem → (split, reason).
pub fn read_photos_csv(out: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let path = photos_csv(out);
    let mut rdr = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut m = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("reading {}", path.display()))?;
        m.insert(rec[0].to_string(), (rec[1].to_string(), rec[2].to_string()));
    }
    Ok(m)
}

/// Runs the data stage: subset, master prepare, derived sets, photos.csv.
pub fn run_data_stage(cfg: &StudyConfig, rec: &mut StageRecord) -> Result<()> {
    let photos = photo_folder(cfg, &mut rec.notes)?;
    let args = master_args(cfg, &photos);
    rec.commands.push(prepare_command(&args));
    let summary = prepare(&args)?;
    if summary.kept == 0 {
        bail!(
            "prepare kept no photo of {}: see {}",
            photos.display(),
            master_dir(&cfg.out).join("manifest.csv").display()
        );
    }
    let rows = read_master(cfg)?;
    let master = master_dir(&cfg.out);
    for v in ["original", "filtered", "augmented"] {
        let d = variant_dir(&cfg.out, v);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    let put = |variant: &str, phase: &str, name: &str, rel: &str| -> Result<()> {
        let dir = variant_dir(&cfg.out, variant).join(phase);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        link_or_copy(&master.join(rel), &dir.join(name), false)
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut csv = String::from("stem,split,would_drop\n");
    for r in &rows {
        csv += &format!("{},{},{}\n", crate::eval::run::csv_field(&r.stem), r.split, r.reason);
        let file = format!("{}.png", r.stem);
        let classic = r.outputs.get("classic").context("master set without classic pairs")?;
        put("original", &r.split, &file, classic)?;
        *counts.entry(format!("original/{}", r.split)).or_default() += 1;
        if !r.reason.is_empty() {
            *counts
                .entry(format!("dropped by the filters: {}", r.reason))
                .or_default() += 1;
            continue;
        }
        put("filtered", &r.split, &file, classic)?;
        *counts.entry(format!("filtered/{}", r.split)).or_default() += 1;
        if r.split == "train" {
            for s in TRAIN_STYLES {
                let rel = r.outputs.get(s).with_context(|| format!("{}: no {s} pair", r.stem))?;
                put("augmented", "train", &format!("{}_{s}.png", r.stem), rel)?;
                *counts.entry("augmented/train".into()).or_default() += 1;
            }
        } else {
            put("augmented", &r.split, &file, classic)?;
            *counts.entry(format!("augmented/{}", r.split)).or_default() += 1;
        }
        if r.split == "test" {
            for s in &TEST_STYLES[1..] {
                let rel = r.outputs.get(*s).with_context(|| format!("{}: no {s} pair", r.stem))?;
                put("filtered", &format!("test_{s}"), &file, rel)?;
            }
        }
    }
    crate::checkpoint::write_atomic(&photos_csv(&cfg.out), csv.as_bytes())?;
    for (k, v) in &counts {
        rec.notes.push(format!("{k}: {v}"));
    }
    for need in ["filtered/train", "filtered/test", "original/test"] {
        if counts.get(need).copied().unwrap_or(0) == 0 {
            bail!(
                "after the filters, {need} is empty ({} photos kept by prepare; see {}): use more photos",
                rows.len(),
                photos_csv(&cfg.out).display()
            );
        }
    }
    rec.commands.push(format!(
        "(study) derive {}/{{original,filtered,augmented}} from {}: original = every kept photo (classic); \
         filtered = photos passing prepare's default filters (colourfulness ≥ 6, a face covering ≥ 0.08 of the image), \
         with test_{{smooth,bold,posterized,sketch}}; augmented = filtered with train in {}; hard links, list in {}",
        data_root(&cfg.out).display(),
        master.join("manifest.csv").display(),
        TRAIN_STYLES.join(","),
        photos_csv(&cfg.out).display()
    ));
    Ok(())
}

/// Images in `dir` (0 when it does not exist).
pub fn count_images(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| crate::data::aligned::is_image_file(&e.path()))
                .count()
        })
        .unwrap_or(0)
}
