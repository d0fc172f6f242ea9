//! The comparison page: the metrics table, then the same test images side by side across runs
//! (real_A, each run's fake_B with its cosine dissimilarity, real_B), linking to the images where
//! `pix2pix test` left them (nothing is copied).

use super::html::{esc, relative_path, url};
use super::table;
use crate::checkpoint::write_atomic;
use crate::eval::{ImageResult, RunResult, Summary};
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

/// Writes `out/index.html` and returns its path. `summaries` are the runs' table rows.
pub fn write_page(out: &Path, runs: &[RunResult], summaries: &[Summary], max_images: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
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

    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pix2pix: comparison of {} runs</title>\
         <style>{STYLE}</style></head><body>",
        runs.len()
    );
    let _ = writeln!(h, "<h2>Metrics (mean ± std over each run's test images)</h2>");
    h.push_str(&table::html(summaries));
    let _ = writeln!(
        h,
        "<p>Pixels in [0, 1]; cosine dissimilarity = 1 − cos(fake_B, real_B) over the flattened image; \
         PSNR with data range 1; SSIM per channel (Gaussian window σ = 1.5) averaged over RGB.</p>"
    );
    let _ = writeln!(
        h,
        "<h2>Test images</h2>\n<p>{} shown of {} present in every run; {} left out because they are missing \
         in some run.</p>",
        sel.stems.len(),
        sel.common,
        sel.dropped
    );
    h.push_str("<table>\n<tr><th>image</th><th>real_A (input)</th>");
    for r in runs {
        let _ = write!(h, "<th>{}<br>fake_B</th>", esc(&r.name));
    }
    h.push_str("<th>real_B (target)</th></tr>\n");
    for stem in &sel.stems {
        let first = by_stem[0][stem.as_str()];
        let _ = write!(h, "<tr><td>{}</td>", esc(stem));
        match &first.paths.real_a {
            Some(a) => h.push_str(&img(a, "real_A")?),
            None => h.push_str("<td>(no real_A)</td>"),
        }
        for m in &by_stem {
            let im = m[stem.as_str()];
            let cap = format!("cos. dissim. {:.4}", im.metrics.cosine_dissimilarity);
            h.push_str(&img(&im.paths.fake_b, &cap)?);
        }
        h.push_str(&img(&first.paths.real_b, "real_B")?);
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</body></html>\n");
    let page = out.join("index.html");
    write_atomic(&page, h.as_bytes())?;
    Ok(page)
}
