//! The comparison page: the metrics table, then the same test images side by side across runs
//! (real_A, each run's fake_B with its cosine dissimilarity, real_B; for CycleGAN runs a second
//! table of real_B, fake_A, real_A), linking to the images where `pix2pix test` left them
//! (nothing is copied).

use super::html::{esc, relative_path, url};
use super::table;
use crate::checkpoint::write_atomic;
use crate::eval::{Direction, ImageResult, RunResult, Summary};
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which stems the page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Stems present in every run, sorted, at most `max_images` of them.
    pub stems: Vec<String>,
    /// Stems present in every run (before `max_images`).
    pub common: usize,
    /// Stems present in some runs but not all: left out of the page.
    pub dropped: usize,
}

/// Stems in every run (sorted), the first `max_images` of them shown.
pub fn select(runs: &[RunResult], max_images: usize) -> Selection {
    let sets: Vec<BTreeSet<&str>> = runs
        .iter()
        .map(|r| r.images.iter().map(|i| i.paths.stem.as_str()).collect())
        .collect();
    let all: BTreeSet<&str> = sets.iter().flatten().copied().collect();
    let common: Vec<String> = all
        .iter()
        .filter(|s| sets.iter().all(|set| set.contains(*s)))
        .map(|s| s.to_string())
        .collect();
    Selection {
        dropped: all.len() - common.len(),
        common: common.len(),
        stems: common.into_iter().take(max_images).collect(),
    }
}

const STYLE: &str = "body{font-family:sans-serif}table{border-collapse:collapse}\
td,th{padding:4px;text-align:center;vertical-align:top}\
table.metrics td,table.metrics th{border:1px solid #ccc;padding:4px 10px}\
.cap{font-size:small;color:#333}";

/// Writes `out/index.html` and returns its path. `summaries` are the runs' table rows. The images
/// are shown per direction: fake_B of every run, then fake_A of the runs that have it.
pub fn write_page(out: &Path, runs: &[RunResult], summaries: &[Summary], max_images: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pix2pix: comparison of {} runs</title>\
         <style>{STYLE}</style></head><body>",
        summaries.len()
    );
    let _ = writeln!(h, "<h2>Metrics (mean ± std over each run's test images)</h2>");
    h.push_str(&table::html(summaries));
    let _ = writeln!(
        h,
        "<p>Pixels in [0, 1]; cosine dissimilarity = 1 − cos(fake_B, real_B) over the flattened image \
         (fake_A against real_A for a CycleGAN run's second direction); PSNR with data range 1; SSIM per \
         channel (Gaussian window σ = 1.5) averaged over RGB.</p>"
    );
    for direction in [Direction::AtoB, Direction::BtoA] {
        let group: Vec<RunResult> = runs.iter().filter(|r| r.direction == direction).cloned().collect();
        if !group.is_empty() {
            image_table(&mut h, out, &group, direction, max_images)?;
        }
    }
    h.push_str("</body></html>\n");
    let page = out.join("index.html");
    write_atomic(&page, h.as_bytes())?;
    Ok(page)
}

/// The images of one direction side by side: input, each run's fake, target.
fn image_table(h: &mut String, out: &Path, runs: &[RunResult], direction: Direction, max_images: usize) -> Result<()> {
    let sel = select(runs, max_images);
    let link = |p: &Path| -> Result<String> { Ok(url(&relative_path(out, p)?)) };
    let img = |p: &Path, caption: &str| -> Result<String> {
        let u = link(p)?;
        Ok(format!(
            "<td><a href=\"{0}\"><img src=\"{0}\" width=\"256\"></a><br><span class=\"cap\">{1}</span></td>",
            esc(&u),
            caption
        ))
    };
    let by_stem: Vec<HashMap<&str, &ImageResult>> = runs
        .iter()
        .map(|r| r.images.iter().map(|i| (i.paths.stem.as_str(), i)).collect())
        .collect();
    let (input, fake, target) = (direction.input(), direction.fake(), direction.target());
    let _ = writeln!(
        h,
        "<h2>Test images: {fake}</h2>\n<p>{} shown of {} present in every run; {} left out because they are missing \
         in some run.</p>",
        sel.stems.len(),
        sel.common,
        sel.dropped
    );
    let _ = write!(h, "<table>\n<tr><th>image</th><th>{input} (input)</th>");
    for r in runs {
        let _ = write!(h, "<th>{}<br>{fake}</th>", esc(&r.name));
    }
    let _ = writeln!(h, "<th>{target} (target)</th></tr>");
    for stem in &sel.stems {
        let first = by_stem[0][stem.as_str()];
        let _ = write!(h, "<tr><td>{}</td>", esc(stem));
        match &first.paths.input {
            Some(a) => h.push_str(&img(a, input)?),
            None => {
                let _ = write!(h, "<td>(no {input})</td>");
            }
        }
        for m in &by_stem {
            let im = m[stem.as_str()];
            let cap = format!("cos. dissim. {:.4}", im.metrics.cosine_dissimilarity);
            h.push_str(&img(&im.paths.fake, &cap)?);
        }
        h.push_str(&img(&first.paths.target, target)?);
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    Ok(())
}
