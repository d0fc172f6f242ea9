//! A strip of every style, from a face the code draws itself (so the README needs no
//! third-party photo) or from a given photo.

use super::cartoon::{cartoonize, Style};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// A simple procedural portrait, `size × size`: a gradient backdrop, shoulders, neck, hair, an
/// oval face with soft shading, eyes, brows, nose and mouth, plus a little deterministic noise so
/// the smoothing has something to remove.
pub fn procedural_face(size: u32) -> RgbImage {
    let s = size as f32;
    let mut img = RgbImage::from_fn(size, size, |_, y| {
        let t = y as f32 / s;
        Rgb([
            (90.0 + 60.0 * t) as u8,
            (130.0 + 40.0 * t) as u8,
            (180.0 - 30.0 * t) as u8,
        ])
    });
    // Signed "inside" test of an ellipse centred at (cx, cy) with radii (rx, ry), all in [0, 1].
    let ell = |x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32| {
        let dx = (x - cx) / rx;
        let dy = (y - cy) / ry;
        dx * dx + dy * dy
    };
    let skin = [224.0, 178.0, 146.0];
    for py in 0..size {
        for px in 0..size {
            let (x, y) = ((px as f32 + 0.5) / s, (py as f32 + 0.5) / s);
            let mut c: Option<[f32; 3]> = None;
            // Shoulders (shirt) and neck.
            if ell(x, y, 0.5, 1.08, 0.46, 0.3) < 1.0 {
                c = Some([40.0, 60.0, 110.0]);
                if (x - 0.5).abs() < 0.05 + (y - 0.8) * 0.3 && y > 0.8 {
                    c = Some([235.0, 235.0, 240.0]);
                }
            }
            if (x - 0.5).abs() < 0.09 && y > 0.6 && y < 0.84 {
                c = Some([200.0, 155.0, 125.0]);
            }
            // Hair behind the head.
            if ell(x, y, 0.5, 0.4, 0.27, 0.3) < 1.0 && y < 0.52 {
                c = Some([70.0, 45.0, 30.0]);
            }
            // Face with shading towards the right.
            let e = ell(x, y, 0.5, 0.47, 0.21, 0.27);
            if e < 1.0 && !(y < 0.3 && ell(x, y, 0.5, 0.36, 0.25, 0.16) < 1.0) {
                let shade = 1.0 - 0.18 * ((x - 0.42) / 0.3).max(0.0) - 0.08 * e;
                c = Some([skin[0] * shade, skin[1] * shade, skin[2] * shade]);
                // Cheeks.
                for cx in [0.38, 0.62] {
                    if ell(x, y, cx, 0.57, 0.05, 0.035) < 1.0 {
                        c = Some([225.0, 150.0, 135.0]);
                    }
                }
            }
            for cx in [0.415, 0.585] {
                // Brows, eye whites, iris, pupil.
                if ell(x, y, cx, 0.4, 0.05, 0.012) < 1.0 {
                    c = Some([60.0, 40.0, 28.0]);
                }
                if ell(x, y, cx, 0.45, 0.045, 0.022) < 1.0 {
                    c = Some([245.0, 245.0, 240.0]);
                    if ell(x, y, cx, 0.45, 0.02, 0.02) < 1.0 {
                        c = Some([70.0, 110.0, 60.0]);
                    }
                    if ell(x, y, cx, 0.45, 0.009, 0.009) < 1.0 {
                        c = Some([15.0, 15.0, 15.0]);
                    }
                }
            }
            // Nose shadow and mouth.
            if (x - 0.515).abs() < 0.008 && y > 0.46 && y < 0.55 {
                c = Some([180.0, 130.0, 105.0]);
            }
            if ell(x, y, 0.5, 0.555, 0.035, 0.012) < 1.0 {
                c = Some([175.0, 120.0, 100.0]);
            }
            if ell(x, y, 0.5, 0.625, 0.075, 0.025) < 1.0 && y > 0.615 {
                c = Some([170.0, 60.0, 70.0]);
            }
            if let Some(c) = c {
                img.put_pixel(px, py, Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8)));
            }
        }
    }
    // Deterministic noise (a small LCG), ±6 per channel.
    let mut state: u32 = 12345;
    for p in img.pixels_mut() {
        for v in p.0.iter_mut() {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            let n = ((state >> 24) as i32 % 13) - 6;
            *v = (*v as i32 + n).clamp(0, 255) as u8;
        }
    }
    image::imageops::blur(&img, 0.8)
}

/// Render `[photo | classic | smooth | bold | posterized | sketch]` as one PNG strip of 192 px
/// tiles at `out`. Without `photo`, the photo is [`procedural_face`]. If `out` is an existing
/// folder, the strip is written there as `styles.png`, with one PNG per style beside it.
pub fn style_gallery(out: &Path, photo: Option<&Path>) -> Result<()> {
    const TILE: u32 = 192;
    let face = match photo {
        Some(p) => {
            let ph = super::filters::load_photo(p).map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.0))?;
            super::filters::frame(&ph.rgb, None, 0.0, TILE)
        }
        None => procedural_face(TILE),
    };
    let tiles: Vec<(String, RgbImage)> = std::iter::once(("photo".to_string(), face.clone()))
        .chain(Style::ALL.iter().map(|&s| (s.name().to_string(), cartoonize(&face, s))))
        .collect();
    let gap = 4;
    let n = tiles.len() as u32;
    let mut strip = RgbImage::from_pixel(n * TILE + (n - 1) * gap, TILE, Rgb([255, 255, 255]));
    for (i, (_, t)) in tiles.iter().enumerate() {
        image::imageops::replace(&mut strip, t, (i as u32 * (TILE + gap)) as i64, 0);
    }
    let (strip_path, dir) = if out.is_dir() {
        (out.join("styles.png"), Some(out))
    } else {
        (out.to_path_buf(), None)
    };
    if let Some(parent) = strip_path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    strip
        .save_with_format(&strip_path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", strip_path.display()))?;
    if let Some(dir) = dir {
        for (name, t) in &tiles {
            let p = dir.join(format!("style_{name}.png"));
            t.save_with_format(&p, image::ImageFormat::Png)
                .with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}
