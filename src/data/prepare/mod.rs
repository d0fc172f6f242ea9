//! `pix2pix prepare` and `pix2pix cartoonize`: turn a folder of face photos into
//! cartoon|photo training pairs (A on the left, B on the right).
//!
//! - [`cartoon`]: the OpenCV cartoon recipe and its named [`Style`]s.
//! - [`haar`]: a small evaluator of OpenCV Haar cascades (the face detector).
//! - [`filters`]: defensive reading, the grayscale measure, face framing.
//! - [`groups`]: which photos are one person (persons CSV, `--group-regex`).
//! - [`gallery`]: a procedural face and a strip of every style, for the README.

pub mod cartoon;
pub mod filters;
pub mod gallery;
pub mod groups;
pub mod haar;
mod pipeline;

pub use cartoon::{cartoonize, cartoonize_with, CartoonParams, Style};
pub use gallery::{procedural_face, style_gallery};
pub use pipeline::{filter_reason, prepare, run_prepare, Drop as DropReason, PrepareSummary, Split};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Build cartoon|photo training pairs from a folder of face photos.
///
/// Every image file in INPUT (not recursive) is read, filtered (unreadable, too small,
/// grayscale, no face, small face), cropped to a square around the detected face, resized to
/// SIZE, cartoonized and written as one (2·SIZE)×SIZE PNG, cartoon on the left and photo on the
/// right, into OUTPUT/train, OUTPUT/val and OUTPUT/test (60/20/20 by default, deterministic by
/// --seed). OUTPUT/manifest.csv records every file: kept or dropped, why, its face ratio and
/// colourfulness. INPUT is only read, never written.
#[derive(clap::Args, Debug, Clone)]
pub struct PrepareArgs {
    /// Folder of photos (jpg, jpeg, png, bmp, tif, tiff, pnm, ppm, pgm; not recursive).
    #[arg(long = "photos")]
    pub input: PathBuf,
    /// Output dataset root (DATAROOT); must be empty or absent unless --force.
    #[arg(long = "out")]
    pub output: PathBuf,
    /// Side of the square photo and cartoon; each pair is (2·SIZE)×SIZE.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Cartoon style(s), comma-separated. With several, each kept photo gives one pair per style
    /// (named PHOTO_STYLE.png), all in the same split. classic: the OpenCV recipe (2 pyramid
    /// levels, 7 bilateral passes d 9 σc 9 σs 7, median 7, adaptive threshold block 9 C 2);
    /// smooth: 12 passes σc 20 σs 9 and only strong edges (median 9, block 11, C 5); bold: thick lines
    /// (median 5, block 7, mask eroded 1 px); posterized: classic + 6 levels per channel and 30 %
    /// desaturation; sketch: pencil drawing (gray, invert, blur, colour dodge).
    #[arg(long = "styles", alias = "style", value_delimiter = ',', default_value = "classic")]
    pub styles: Vec<Style>,
    /// Seed of the train/val/test shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Split percentages train,val,test.
    #[arg(long, default_value = "60,20,20")]
    pub split: String,
    /// CSV mapping file name → person id (header row; a column named file, filename or image,
    /// else the first). Split by person, so one face never lands in two splits.
    #[arg(long)]
    pub persons: Option<PathBuf>,
    /// Group photos by file name for the split: the first capture group of this regex, matched
    /// against the file name, is the person (e.g. '^([^_]+)_' for 001_03.jpg and 001_08.jpg).
    /// Files in --persons use the CSV; files it does not match are their own group.
    #[arg(long)]
    pub group_regex: Option<String>,
    /// Column of --persons holding the person id (default: the first of person, person_id, id,
    /// name; else the second column).
    #[arg(long)]
    pub person_column: Option<String>,
    /// Keep grayscale photos (default: drop those with colourfulness below --min-colourfulness).
    #[arg(long)]
    pub no_grayscale_filter: bool,
    /// Colourfulness threshold: mean |R−G|+|G−B| on a 64×64 thumbnail; 1-channel files and RGB
    /// files with gray pixels score ~0, colour portraits 10–40.
    #[arg(long, default_value_t = 6.0)]
    pub min_colourfulness: f32,
    /// Do not detect faces at all: no face filters, central square crops.
    #[arg(long)]
    pub no_face_filter: bool,
    /// Keep photos where no face is detected (central crop) instead of dropping them.
    #[arg(long)]
    pub keep_no_face: bool,
    /// Drop photos whose face box covers less than this fraction of the image area (0 = off).
    #[arg(long, default_value_t = 0.08)]
    pub min_face_ratio: f32,
    /// Margin around the face box on each side, as a fraction of the box size, before the
    /// square crop is clamped to the image.
    #[arg(long, default_value_t = 0.6)]
    pub margin: f32,
    /// Drop images whose shorter side is below this many pixels.
    #[arg(long, default_value_t = 64)]
    pub min_size: u32,
    /// OpenCV Haar cascade XML for faces (default: $PIX2PIX_FACE_CASCADE, then
    /// /usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml from Debian's
    /// opencv-data package).
    #[arg(long)]
    pub cascade: Option<PathBuf>,
    /// Write into a non-empty OUTPUT (its train/, val/, test/ and manifest.csv are replaced).
    #[arg(long)]
    pub force: bool,
}

impl PrepareArgs {
    /// Arguments with every default, for library callers and tests.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> PrepareArgs {
        PrepareArgs {
            input: input.into(),
            output: output.into(),
            size: 256,
            styles: vec![Style::Classic],
            seed: 0,
            split: "60,20,20".into(),
            persons: None,
            person_column: None,
            group_regex: None,
            no_grayscale_filter: false,
            min_colourfulness: 6.0,
            no_face_filter: false,
            keep_no_face: false,
            min_face_ratio: 0.08,
            margin: 0.6,
            min_size: 64,
            cascade: None,
            force: false,
        }
    }
}

/// Cartoonize one image or every image of a folder.
///
/// A file gives one PNG (OUTPUT may be a file name or an existing folder); a folder gives a
/// folder of PNGs with the same file names (extension .png). No filtering, no cropping: the
/// output has the input's size.
#[derive(clap::Args, Debug, Clone)]
pub struct CartoonizeArgs {
    /// Input image or folder of images.
    pub input: PathBuf,
    /// Output PNG file, or folder.
    pub output: PathBuf,
    /// classic: the OpenCV recipe; smooth: more smoothing, fewer lines; bold: thick lines;
    /// posterized: flat colours, partly desaturated; sketch: pencil drawing.
    #[arg(long, default_value = "classic")]
    pub style: Style,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}

/// `pix2pix cartoonize IN OUT --style NAME`.
pub fn run_cartoonize(args: &CartoonizeArgs) -> Result<()> {
    let input = &args.input;
    if input.is_dir() {
        let files = list_images(input)?;
        if files.is_empty() {
            bail!("no image files in {}", input.display());
        }
        refuse_inside(input, &args.output)?;
        std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
        let pb = progress(files.len() as u64, "cartoonize");
        let results: Vec<(PathBuf, Result<()>)> = files
            .par_iter()
            .map(|f| {
                let name = f.file_stem().unwrap_or_default();
                let out = args.output.join(Path::new(name).with_extension("png"));
                let r = cartoonize_file(f, &out, args.style, args.force);
                pb.inc(1);
                (f.clone(), r)
            })
            .collect();
        pb.finish_and_clear();
        let mut failed = 0;
        for (f, r) in &results {
            if let Err(e) = r {
                failed += 1;
                eprintln!("skipped {}: {e:#}", f.display());
            }
        }
        println!(
            "cartoonized {} of {} images ({}) into {}",
            results.len() - failed,
            results.len(),
            args.style,
            args.output.display()
        );
        Ok(())
    } else if input.is_file() {
        let out = if args.output.is_dir() {
            let name = input.file_stem().unwrap_or_default();
            args.output.join(Path::new(name).with_extension("png"))
        } else {
            args.output.clone()
        };
        cartoonize_file(input, &out, args.style, args.force)?;
        println!("wrote {}", out.display());
        Ok(())
    } else {
        bail!("input {} does not exist", input.display())
    }
}

fn cartoonize_file(input: &Path, out: &Path, style: Style, force: bool) -> Result<()> {
    if out.exists() && !force {
        bail!("{} exists (use --force to overwrite)", out.display());
    }
    if same_file(input, out) {
        bail!("refusing to overwrite the input {}", input.display());
    }
    let photo = filters::load_photo(input).map_err(|e| anyhow::anyhow!("{}: {}", input.display(), e.0))?;
    let cartoon = cartoonize(&photo.rgb, style);
    cartoon
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", out.display()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Image files (by extension) directly in `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading folder {}", dir.display()))? {
        let p = e?.path();
        if p.is_file() && filters::has_image_extension(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Refuse when `out` is `input` or lies inside it (we never write into the input folder), or
/// the other way round.
fn refuse_inside(input: &Path, out: &Path) -> Result<()> {
    let a = std::path::absolute(input)?;
    let b = std::path::absolute(out)?;
    let a = a.canonicalize().unwrap_or(a);
    // `out` may not exist yet: canonicalize its nearest existing ancestor.
    let mut existing = b.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_owned());
                existing = p;
            }
            _ => break,
        }
    }
    let mut b2 = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for n in rest.iter().rev() {
        b2.push(n);
    }
    if b2.starts_with(&a) {
        bail!(
            "output {} is inside the input folder {}; choose another output folder",
            out.display(),
            input.display()
        );
    }
    if a.starts_with(&b2) {
        bail!(
            "the input folder {} is inside the output {}; choose another output folder",
            input.display(),
            out.display()
        );
    }
    Ok(())
}

fn progress(n: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(n);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
