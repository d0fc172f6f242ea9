//! Reading any supported image as 8-bit RGB, and writing tensors back out as PNG.

use anyhow::{bail, Context, Result};
use image::{DynamicImage, ImageEncoder, RgbImage};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Decode `path` (format sniffed from the bytes, as PIL does) and convert it to 8-bit RGB the way
/// PIL's `.convert('RGB')` does: gray is replicated, alpha is dropped (not composited), and 16-bit
/// samples keep their high byte (PIL's unpacker for 16-bit RGB PNGs).
/// Note: for 16-bit *grayscale* PIL's convert clips to 255 instead of scaling; we scale, which is
/// what anyone feeding such files means.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let img = reader
        .decode()
        .with_context(|| format!("cannot decode {} as an image", path.display()))?;
    Ok(to_rgb8(img))
}

/// Decode an in-memory encoded image (used by tests and the in-memory loader).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read image bytes")?
        .decode()
        .context("cannot decode image bytes")?;
    Ok(to_rgb8(img))
}

fn to_rgb8(img: DynamicImage) -> RgbImage {
    let high_byte = |v: u16| (v >> 8) as u8;
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(g) => RgbImage::from_fn(g.width(), g.height(), |x, y| {
            let v = high_byte(g.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(g) => RgbImage::from_fn(g.width(), g.height(), |x, y| {
            let v = high_byte(g.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(c) => RgbImage::from_fn(c.width(), c.height(), |x, y| {
            let p = c.get_pixel(x, y).0;
            image::Rgb([high_byte(p[0]), high_byte(p[1]), high_byte(p[2])])
        }),
        DynamicImage::ImageRgba16(c) => RgbImage::from_fn(c.width(), c.height(), |x, y| {
            let p = c.get_pixel(x, y).0;
            image::Rgb([high_byte(p[0]), high_byte(p[1]), high_byte(p[2])])
        }),
        // 8-bit gray, gray+alpha and RGBA: the image crate replicates gray and drops alpha.
        other => other.to_rgb8(),
    }
}

/// Tensor → bytes with the reference's test-time conversion (`util.tensor2im`):
/// (x + 1) / 2 · 255 in f32, then a truncating cast. The saturating `as u8` only guards values
/// outside [−1, 1] (and NaN → 0); inside the range it is the reference's plain cast.
fn to_u8(x: f32) -> u8 {
    ((x + 1.0) / 2.0 * 255.0) as u8
}

/// `chw` holds 3 (or 1, replicated like the reference) channels of h × w in [−1, 1].
fn chw_to_rgb(chw: &[f32], h: usize, w: usize) -> Result<RgbImage> {
    let plane = h * w;
    if plane == 0 {
        bail!("cannot save an empty {w}x{h} image");
    }
    let c = chw.len() / plane;
    if chw.len() != c * plane || !(c == 1 || c == 3) {
        bail!(
            "expected 1 or 3 channels of {h}x{w} = {plane} values, got {} values",
            chw.len()
        );
    }
    let ch = |k: usize| if c == 1 { 0 } else { k };
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb([0, 1, 2].map(|k| to_u8(chw[ch(k) * plane + i])))
    }))
}

/// Save a CHW tensor in [−1, 1] as a PNG, atomically (temp file + rename).
pub fn save_image(path: &Path, chw: &[f32], h: usize, w: usize) -> Result<()> {
    let img = chw_to_rgb(chw, h, w).with_context(|| format!("saving {}", path.display()))?;
    save_rgb_png(path, &img)
}

/// Save A and B (CHW tensors in [−1, 1], both h × w) side by side as one A|B PNG, the layout the
/// aligned dataset reads.
pub fn save_pair(path: &Path, a: &[f32], b: &[f32], h: usize, w: usize) -> Result<()> {
    let ctx = || format!("saving {}", path.display());
    let a = chw_to_rgb(a, h, w).with_context(ctx)?;
    let b = chw_to_rgb(b, h, w).with_context(ctx)?;
    save_rgb_png(path, &hconcat(&a, &b))
}

/// Put two images of the same height side by side.
pub fn hconcat(a: &RgbImage, b: &RgbImage) -> RgbImage {
    assert_eq!(a.height(), b.height(), "hconcat needs equal heights");
    let aw = a.width();
    RgbImage::from_fn(aw + b.width(), a.height(), |x, y| {
        if x < aw {
            *a.get_pixel(x, y)
        } else {
            *b.get_pixel(x - aw, y)
        }
    })
}

/// Encode `img` as PNG and write it atomically: a crash mid-write leaves at most a stray
/// `.tmp` file, never a truncated PNG under the real name.
pub fn save_rgb_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to a temp file beside `path`, flush it to disk, then rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_truncates_like_the_reference() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 127); // 127.5 truncates
        assert_eq!(to_u8(3.0), 255);
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(f32::NAN), 0);
        // Every 8-bit value survives normalise → save unchanged.
        for v in 0..=255u8 {
            let x = (v as f32 / 255.0 - 0.5) / 0.5;
            let back = to_u8(x);
            assert!(back == v || back + 1 == v, "{v} -> {back}");
        }
    }
}
