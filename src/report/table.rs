//! The comparison table (the study's Table 3): one row per run, mean ± std of each metric, as
//! aligned text for the terminal, CSV for scripts and an HTML fragment for the page.

use super::html::esc;
use crate::eval::run::csv_field;
use crate::eval::{fmt_num, Stat, Summary};
use std::fmt::Write as _;

/// Decimals shown per metric: PSNR is in dB (tens), the others are in [0, 2].
fn decimals(metric: &str) -> usize {
    if metric == "psnr" {
        2
    } else {
        4
    }
}

/// `mean ± std`, with `inf` for an infinite PSNR and `n/a` for an undefined spread.
pub fn fmt_stat(metric: &str, s: Stat) -> String {
    let d = decimals(metric);
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v:.d$}")
        } else if v.is_nan() {
            "n/a".to_string()
        } else {
            fmt_num(v)
        }
    };
    format!("{} ± {}", num(s.mean), num(s.std))
}

/// Aligned text table.
pub fn text(rows: &[Summary]) -> String {
    let mut cells: Vec<Vec<String>> = vec![["run", "images", "cosine_dissimilarity", "l1", "psnr", "ssim"]
        .iter()
        .map(|s| s.to_string())
        .collect()];
    for r in rows {
        let mut row = vec![r.name.clone(), r.images.to_string()];
        row.extend(r.stats().iter().map(|(m, s)| fmt_stat(m, *s)));
        cells.push(row);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// CSV with a mean and a std column per metric, full precision.
pub fn csv(rows: &[Summary]) -> String {
    let mut out = String::from("run,images");
    for m in ["cosine_dissimilarity", "l1", "psnr", "ssim"] {
        let _ = write!(out, ",{m}_mean,{m}_std");
    }
    out.push('\n');
    for r in rows {
        let _ = write!(out, "{},{}", csv_field(&r.name), r.images);
        for (_, s) in r.stats() {
            let _ = write!(out, ",{},{}", fmt_num(s.mean), fmt_num(s.std));
        }
        out.push('\n');
    }
    out
}

/// An HTML `<table>` with the same cells as [`text`].
pub fn html(rows: &[Summary]) -> String {
    let mut out = String::from(
        "<table class=\"metrics\">\n<tr><th>run</th><th>images</th><th>cosine dissimilarity ↓</th>\
         <th>L1 ↓</th><th>PSNR (dB) ↑</th><th>SSIM ↑</th></tr>\n",
    );
    for r in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", esc(&r.name), r.images);
        for (m, s) in r.stats() {
            let _ = write!(out, "<td>{}</td>", esc(&fmt_stat(m, s)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}
