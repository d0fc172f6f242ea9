//! Labelled image grids: one PNG with a header of column labels, a strip of row labels and one
//! cell per (row, column) image (the study's sample grids and Figs. 6-8). A `.jpg` path is
//! written as JPEG (quality 85: a grid of photos is 5-10× smaller than as PNG), anything else as PNG.

use super::plot::{register_font, write_png};
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const HEADER: u32 = 28;
const ROW_LABEL: u32 = 110;
const GAP: u32 = 2;

/// Writes a grid of `cells[row][col]` (a missing image is a gray cell), each resized to
/// `cell`×`cell`, under `col_labels` and beside `row_labels`.
pub fn image_grid(
    png: &Path,
    col_labels: &[String],
    row_labels: &[String],
    cells: &[Vec<Option<PathBuf>>],
    cell: u32,
) -> Result<()> {
    if cells.is_empty() || col_labels.is_empty() {
        bail!("{}: a grid needs at least one row and one column", png.display());
    }
    let (nr, nc) = (cells.len() as u32, col_labels.len() as u32);
    let w = ROW_LABEL + nc * (cell + GAP);
    let h = HEADER + nr * (cell + GAP);
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (r, row) in cells.iter().enumerate() {
        for c in 0..nc as usize {
            let x = ROW_LABEL + c as u32 * (cell + GAP);
            let y = HEADER + r as u32 * (cell + GAP);
            let tile = match row.get(c).and_then(|p| p.as_ref()) {
                Some(p) => {
                    let img = image::open(p)
                        .with_context(|| format!("reading {} for {}", p.display(), png.display()))?
                        .to_rgb8();
                    image::imageops::resize(&img, cell, cell, image::imageops::FilterType::Triangle)
                }
                None => image::RgbImage::from_pixel(cell, cell, image::Rgb([220, 220, 220])),
            };
            image::imageops::replace(&mut canvas, &tile, x as i64, y as i64);
        }
    }
    let mut buf = canvas.into_raw();
    (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
        register_font();
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let style = ("sans-serif", 14).into_text_style(&root);
        for (c, label) in col_labels.iter().enumerate() {
            let x = ROW_LABEL + c as u32 * (cell + GAP) + 4;
            root.draw_text(label, &style, (x as i32, 6))?;
        }
        for (r, label) in row_labels.iter().enumerate() {
            let y = HEADER + r as u32 * (cell + GAP) + cell / 2 - 7;
            root.draw_text(label, &style, (4, y as i32))?;
        }
        root.present()?;
        Ok(())
    })()
    .map_err(|e| anyhow!("labelling {}: {e}", png.display()))?;
    if png.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")) {
        let mut bytes = vec![];
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
            .encode(&buf, w, h, image::ExtendedColorType::Rgb8)
            .with_context(|| format!("encoding {}", png.display()))?;
        crate::checkpoint::write_atomic(png, &bytes)
    } else {
        write_png(png, &buf, w, h)
    }
}
