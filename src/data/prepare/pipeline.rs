//! The `prepare` pipeline: scan → read and filter (parallel) → split → frame, cartoonize and
//! write pairs (parallel) → manifest and summary.

use super::filters::{self, colourfulness, detect_face, frame};
use super::haar::{find_cascade, Cascade, FaceBox, CASCADE_INSTALL_HINT};
use super::{cartoonize, list_images, progress, refuse_inside, PrepareArgs, Style};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Why a photo was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drop {
    Unreadable,
    TooSmall,
    Grayscale,
    NoFace,
    SmallFace,
    WriteFailed,
}

impl Drop {
    pub fn name(self) -> &'static str {
        match self {
            Drop::Unreadable => "unreadable",
            Drop::TooSmall => "too_small",
            Drop::Grayscale => "grayscale",
            Drop::NoFace => "no_face",
            Drop::SmallFace => "small_face",
            Drop::WriteFailed => "write_failed",
        }
    }
}

#[derive(Clone, Debug)]
struct Record {
    path: PathBuf,
    name: String,
    width: u32,
    height: u32,
    channels: u8,
    colourfulness: Option<f32>,
    face: Option<FaceBox>,
    face_ratio: Option<f32>,
    dropped: Option<Drop>,
    detail: String,
    split: Option<Split>,
}

/// What `run_prepare` did, also printed.
#[derive(Clone, Debug, Default)]
pub struct PrepareSummary {
    pub read: usize,
    pub kept: usize,
    pub dropped: BTreeMap<String, usize>,
    /// Photos per split (train, val, test).
    pub photos_per_split: [usize; 3],
    /// Pairs written per split (photos × styles).
    pub pairs_per_split: [usize; 3],
    pub seconds: f64,
}

/// `pix2pix prepare IN OUT ...`.
pub fn run_prepare(args: &PrepareArgs) -> Result<()> {
    prepare(args).map(|_| ())
}

fn parse_split(s: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--split '{s}': expected three numbers like 60,20,20"))?;
    if v.len() != 3 || v.iter().any(|x| *x < 0.0) || v.iter().sum::<f64>() <= 0.0 {
        bail!("--split '{s}': expected three non-negative numbers like 60,20,20");
    }
    let t: f64 = v.iter().sum();
    Ok([v[0] / t, v[1] / t, v[2] / t])
}

/// Run the pipeline and return its summary.
pub fn prepare(args: &PrepareArgs) -> Result<PrepareSummary> {
    let start = Instant::now();
    let fractions = parse_split(&args.split)?;
    if args.size < 8 {
        bail!("--size {} is too small (at least 8)", args.size);
    }
    if args.styles.is_empty() {
        bail!("--styles: give at least one style");
    }
    let mut styles = args.styles.clone();
    styles.dedup();
    if !args.input.is_dir() {
        bail!(
            "input folder {} does not exist or is not a folder",
            args.input.display()
        );
    }
    let files = list_images(&args.input)?;
    if files.is_empty() {
        bail!(
            "no image files in {} (looked for {})",
            args.input.display(),
            filters::IMAGE_EXTENSIONS.join(", ")
        );
    }
    refuse_inside(&args.input, &args.output)?;
    check_output(&args.output, args.force)?;
    let persons = match &args.persons {
        Some(p) => Some(read_persons(p, args.person_column.as_deref())?),
        None => None,
    };
    let group_re = args.group_regex.as_deref().map(super::groups::compile).transpose()?;
    if persons.is_none() && group_re.is_none() {
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        if let Some(w) = super::groups::looks_grouped(&names) {
            eprintln!("{w}");
        }
    }
    let cascade = if args.no_face_filter {
        None
    } else {
        let path = find_cascade(args.cascade.as_deref()).with_context(|| {
            format!(
                "no face detector cascade found (looked at $PIX2PIX_FACE_CASCADE and {}); \
                 install it with `{CASCADE_INSTALL_HINT}`, pass --cascade FILE, or use \
                 --no-face-filter",
                super::haar::CASCADE_SEARCH[0]
            )
        })?;
        Some(Cascade::load(&path)?)
    };

    // Phase 1: read and filter.
    let pb = progress(files.len() as u64, "read+filter");
    let mut records: Vec<Record> = files
        .par_iter()
        .map(|p| {
            let r = inspect(p, args, cascade.as_ref());
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();

    // Output names: the file stem, or stem_ext when two inputs share a stem.
    let mut stems: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *stems.entry(stem(&r.path)).or_default() += 1;
    }

    // Split kept photos by group (person or file).
    assign_splits(&mut records, persons.as_ref(), group_re.as_ref(), fractions, args.seed);

    // Phase 2: frame, cartoonize, write.
    let out = &args.output;
    for s in ["train", "val", "test"] {
        std::fs::create_dir_all(out.join(s)).with_context(|| format!("creating {}", out.join(s).display()))?;
    }
    let kept: Vec<usize> = (0..records.len()).filter(|&i| records[i].dropped.is_none()).collect();
    let pb = progress(kept.len() as u64, "cartoonize");
    let written: Vec<(usize, Result<Vec<String>>)> = kept
        .par_iter()
        .map(|&i| {
            let r = &records[i];
            let base = if stems[&stem(&r.path)] > 1 {
                r.name.replace('.', "_")
            } else {
                stem(&r.path)
            };
            let res = write_pairs(r, &base, &styles, args, out);
            pb.inc(1);
            (i, res)
        })
        .collect();
    pb.finish_and_clear();
    let mut outputs: HashMap<usize, Vec<String>> = HashMap::new();
    for (i, res) in written {
        match res {
            Ok(names) => {
                outputs.insert(i, names);
            }
            Err(e) => {
                records[i].dropped = Some(Drop::WriteFailed);
                records[i].detail = format!("{e:#}");
                records[i].split = None;
            }
        }
    }

    write_manifest(&out.join("manifest.csv"), &records, &styles, &outputs)?;

    let mut summary = PrepareSummary {
        read: records.len(),
        ..Default::default()
    };
    for r in &records {
        match (r.dropped, r.split) {
            (Some(d), _) => *summary.dropped.entry(d.name().to_string()).or_default() += 1,
            (None, Some(s)) => {
                summary.kept += 1;
                summary.photos_per_split[s as usize] += 1;
                summary.pairs_per_split[s as usize] += styles.len();
            }
            (None, None) => {}
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    print_summary(&summary, args, &styles, cascade.as_ref());
    Ok(summary)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_output(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("output {} exists and is not a folder", out.display());
        }
        let non_empty = std::fs::read_dir(out)?.next().is_some();
        if non_empty {
            if !force {
                bail!(
                    "output folder {} is not empty; use --force to replace its train/, val/, \
                     test/ and manifest.csv",
                    out.display()
                );
            }
            for s in ["train", "val", "test"] {
                let d = out.join(s);
                if d.is_dir() {
                    std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
                }
            }
            let m = out.join("manifest.csv");
            if m.is_file() {
                std::fs::remove_file(&m)?;
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

fn inspect(path: &Path, args: &PrepareArgs, cascade: Option<&Cascade>) -> Record {
    let mut r = Record {
        path: path.to_path_buf(),
        name: path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        width: 0,
        height: 0,
        channels: 0,
        colourfulness: None,
        face: None,
        face_ratio: None,
        dropped: None,
        detail: String::new(),
        split: None,
    };
    let photo = match filters::load_photo(path) {
        Ok(p) => p,
        Err(e) => {
            r.dropped = Some(Drop::Unreadable);
            r.detail = e.0;
            return r;
        }
    };
    r.width = photo.rgb.width();
    r.height = photo.rgb.height();
    r.channels = photo.channels;
    if photo.bits > 8 {
        r.detail = format!("{}-bit, reduced to 8", photo.bits);
    }
    if r.width.min(r.height) < args.min_size {
        r.dropped = Some(Drop::TooSmall);
        r.detail = format!("{}x{} < --min-size {}", r.width, r.height, args.min_size);
        return r;
    }
    let c = colourfulness(&photo.rgb);
    r.colourfulness = Some(c);
    if filter_reason(c, None, args) == Some(Drop::Grayscale) {
        r.dropped = Some(Drop::Grayscale);
        r.detail = format!(
            "colourfulness {c:.2} < {} ({} channel{})",
            args.min_colourfulness,
            photo.channels,
            if photo.channels == 1 { "" } else { "s" }
        );
        return r;
    }
    if let Some(cascade) = cascade {
        r.face = detect_face(cascade, &photo.rgb);
        r.face_ratio = r.face.map(|f| f.area() / (r.width as f32 * r.height as f32));
        r.dropped = filter_reason(c, Some(r.face_ratio), args);
        match (r.dropped, r.face_ratio) {
            (Some(Drop::NoFace), _) => r.detail = "no face detected".into(),
            (Some(Drop::SmallFace), Some(ratio)) => {
                r.detail = format!("face ratio {ratio:.3} < {}", args.min_face_ratio)
            }
            _ => {}
        }
    }
    r
}

/// Why `args`' filters drop a photo with these measurements (None: kept). `face` is None when no
/// detection ran, `Some(None)` when no face was found, `Some(Some(ratio))` for a face covering
/// `ratio` of the image. `prepare` decides with it, and so can a caller reading `manifest.csv`
/// (which records both measurements even when the filters are off).
pub fn filter_reason(colourfulness: f32, face: Option<Option<f32>>, args: &PrepareArgs) -> Option<Drop> {
    if !args.no_grayscale_filter && colourfulness < args.min_colourfulness {
        return Some(Drop::Grayscale);
    }
    match face {
        Some(None) if !args.keep_no_face => Some(Drop::NoFace),
        Some(Some(ratio)) if ratio < args.min_face_ratio => Some(Drop::SmallFace),
        _ => None,
    }
}

fn write_pairs(r: &Record, base: &str, styles: &[Style], args: &PrepareArgs, out: &Path) -> Result<Vec<String>> {
    let photo = filters::load_photo(&r.path).map_err(|e| anyhow::anyhow!("{}", e.0))?;
    let b = frame(&photo.rgb, r.face, args.margin, args.size);
    let split = r.split.context("no split")?;
    let mut names = Vec::new();
    for &style in styles {
        let a = cartoonize(&b, style);
        let s = args.size;
        let mut pair = image::RgbImage::new(2 * s, s);
        image::imageops::replace(&mut pair, &a, 0, 0);
        image::imageops::replace(&mut pair, &b, s as i64, 0);
        let name = if styles.len() > 1 {
            format!("{base}_{}.png", style.name())
        } else {
            format!("{base}.png")
        };
        let rel = format!("{}/{name}", split.name());
        pair.save_with_format(out.join(&rel), image::ImageFormat::Png)
            .with_context(|| format!("writing {}", out.join(&rel).display()))?;
        names.push(rel);
    }
    Ok(names)
}

/// Read a CSV mapping file name → person id.
fn read_persons(path: &Path, column: Option<&str>) -> Result<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("reading persons CSV {}", path.display()))?;
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.len() < 2 {
        bail!(
            "{}: expected at least two columns (file, person id), found {:?}",
            path.display(),
            headers
        );
    }
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))
    };
    let file_col = find(&["file", "filename", "file_name", "image"]).unwrap_or(0);
    let person_col = match column {
        Some(c) => headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(c))
            .with_context(|| format!("{}: no column '{c}' (columns: {headers:?})", path.display()))?,
        None => find(&["person", "person_id", "id", "name"]).unwrap_or(if file_col == 0 { 1 } else { 0 }),
    };
    let mut map = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        let (Some(f), Some(p)) = (rec.get(file_col), rec.get(person_col)) else {
            bail!("{}: row {} is short", path.display(), i + 2);
        };
        map.insert(f.trim().to_string(), p.trim().to_string());
    }
    Ok(map)
}

/// Deterministic split by group: groups (persons, or single files) sorted, shuffled by `seed`,
/// and filled in order until each split holds its share of the kept photos.
fn assign_splits(
    records: &mut [Record],
    persons: Option<&HashMap<String, String>>,
    group_re: Option<&regex_lite::Regex>,
    fractions: [f64; 3],
    seed: u64,
) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if r.dropped.is_some() {
            continue;
        }
        groups
            .entry(super::groups::group_key(&r.name, persons, group_re))
            .or_default()
            .push(i);
    }
    let mut keys: Vec<String> = groups.keys().cloned().collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    keys.shuffle(&mut rng);
    let n: usize = groups.values().map(|v| v.len()).sum();
    let train_end = fractions[0] * n as f64;
    let val_end = (fractions[0] + fractions[1]) * n as f64;
    let mut done = 0usize;
    for k in keys {
        let members = &groups[&k];
        // Place a group by where its middle falls, so the shares round to the nearest photo.
        let mid = done as f64 + members.len() as f64 / 2.0;
        let split = if mid < train_end {
            Split::Train
        } else if mid < val_end {
            Split::Val
        } else {
            Split::Test
        };
        for &i in members {
            records[i].split = Some(split);
        }
        done += members.len();
    }
}

fn fmt_opt(v: Option<f32>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

fn write_manifest(
    path: &Path,
    records: &[Record],
    styles: &[Style],
    outputs: &HashMap<usize, Vec<String>>,
) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record([
        "file",
        "split",
        "status",
        "reason",
        "detail",
        "style",
        "output",
        "width",
        "height",
        "channels",
        "colourfulness",
        "face_ratio",
        "face_x",
        "face_y",
        "face_w",
        "face_h",
    ])?;
    for (i, r) in records.iter().enumerate() {
        let f = |g: fn(&FaceBox) -> f32| r.face.as_ref().map(|b| format!("{:.0}", g(b)));
        let common = |split: &str, status: &str, reason: &str, style: &str, output: &str| {
            vec![
                r.name.clone(),
                split.to_string(),
                status.to_string(),
                reason.to_string(),
                r.detail.clone(),
                style.to_string(),
                output.to_string(),
                r.width.to_string(),
                r.height.to_string(),
                r.channels.to_string(),
                fmt_opt(r.colourfulness, 2),
                fmt_opt(r.face_ratio, 4),
                f(|b| b.x).unwrap_or_default(),
                f(|b| b.y).unwrap_or_default(),
                f(|b| b.w).unwrap_or_default(),
                f(|b| b.h).unwrap_or_default(),
            ]
        };
        match (r.dropped, r.split, outputs.get(&i)) {
            (None, Some(s), Some(outs)) => {
                for (style, o) in styles.iter().zip(outs) {
                    w.write_record(common(s.name(), "kept", "", style.name(), o))?;
                }
            }
            (Some(d), _, _) => w.write_record(common("", "dropped", d.name(), "", ""))?,
            _ => {}
        }
    }
    w.flush()?;
    Ok(())
}

fn print_summary(s: &PrepareSummary, args: &PrepareArgs, styles: &[Style], c: Option<&Cascade>) {
    let names: Vec<&str> = styles.iter().map(|s| s.name()).collect();
    println!("prepare: {} → {}", args.input.display(), args.output.display());
    match c {
        Some(c) => println!("  face detector: Haar cascade {}", c.path.display()),
        None => println!("  face detector: off (--no-face-filter), central crops"),
    }
    println!("  read         {:>6}", s.read);
    println!("  kept         {:>6}", s.kept);
    let dropped: usize = s.dropped.values().sum();
    println!("  dropped      {:>6}", dropped);
    for (k, v) in &s.dropped {
        println!("    {k:<12} {v:>4}");
    }
    println!(
        "  split (photos) train {} / val {} / test {}  (seed {}, {}{})",
        s.photos_per_split[0],
        s.photos_per_split[1],
        s.photos_per_split[2],
        args.seed,
        args.split,
        if args.persons.is_some() || args.group_regex.is_some() {
            ", by person"
        } else {
            ""
        }
    );
    println!(
        "  pairs written {} ({} × style {}), {}×{} each",
        s.pairs_per_split.iter().sum::<usize>(),
        s.kept,
        names.join(","),
        2 * args.size,
        args.size
    );
    println!("  time         {:.1} s", s.seconds);
    println!("  manifest     {}", args.output.join("manifest.csv").display());
}
