//! Reading photos defensively, the grayscale measure and the face framing.

use super::haar::{Cascade, FaceBox};
use image::{DynamicImage, GenericImageView, RgbImage};
use std::path::Path;

/// File extensions treated as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "tif", "tiff", "pnm", "ppm", "pgm", "pbm"];

pub fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A decoded photo and what the file held.
pub struct Photo {
    pub rgb: RgbImage,
    /// Channels in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
    pub channels: u8,
    pub bits: u8,
}

/// Why a file could not be used as a photo.
#[derive(Debug)]
pub struct Unreadable(pub String);

/// Read and decode a photo. Alpha is composited over white; 16-bit samples are reduced to 8 bits;
/// gray files become RGB with equal channels. A JPEG whose data stops before the end-of-image
/// marker is refused as truncated (the decoder would otherwise fill the missing rows with gray).
pub fn load_photo(path: &Path) -> Result<Photo, Unreadable> {
    let bytes = std::fs::read(path).map_err(|e| Unreadable(format!("cannot read: {e}")))?;
    decode_photo(&bytes)
}

pub fn decode_photo(bytes: &[u8]) -> Result<Photo, Unreadable> {
    if bytes.is_empty() {
        return Err(Unreadable("empty file".into()));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Unreadable(e.to_string()))?;
    let format = reader.format();
    let Some(format) = format else {
        return Err(Unreadable("not an image (unknown format)".into()));
    };
    if format == image::ImageFormat::Jpeg && !jpeg_has_eoi(bytes) {
        return Err(Unreadable("truncated JPEG (no end-of-image marker)".into()));
    }
    let img = reader
        .decode()
        .map_err(|e| Unreadable(format!("cannot decode {format:?}: {e}")))?;
    let color = img.color();
    let channels = color.channel_count();
    let bits = (color.bits_per_pixel() / channels as u16) as u8;
    let rgb = to_rgb_over_white(&img);
    Ok(Photo { rgb, channels, bits })
}

fn jpeg_has_eoi(bytes: &[u8]) -> bool {
    // Allow trailing padding after the marker, as some writers add it.
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn to_rgb_over_white(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = a as u32;
        let mix = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(r), mix(g), mix(b)])
    })
}

/// Colourfulness: mean of `|R − G| + |G − B|` over a 64×64 thumbnail. Gray photos (1-channel
/// files, and RGB files that hold gray pixels) score near 0; colour portraits score 10–40.
pub fn colourfulness(img: &RgbImage) -> f32 {
    if img.width() == 0 || img.height() == 0 {
        return 0.0;
    }
    let thumb = image::imageops::resize(img, 64, 64, image::imageops::FilterType::Triangle);
    let sum: u64 = thumb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            (r.abs_diff(g) as u64) + (g.abs_diff(b) as u64)
        })
        .sum();
    sum as f32 / (64.0 * 64.0)
}

/// Detect the largest face. Large images are shrunk to a longer side of at most 480 px first.
pub fn detect_face(cascade: &Cascade, img: &RgbImage) -> Option<FaceBox> {
    let gray = super::cartoon::to_gray(img);
    let longer = gray.width().max(gray.height());
    let scale = if longer > 480 { 480.0 / longer as f32 } else { 1.0 };
    let small = if scale < 1.0 {
        image::imageops::resize(
            &gray,
            ((gray.width() as f32 * scale).round() as u32).max(1),
            ((gray.height() as f32 * scale).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        gray
    };
    let faces = cascade.detect(&small, 24, 3);
    faces.first().map(|f| FaceBox {
        x: f.x / scale,
        y: f.y / scale,
        w: f.w / scale,
        h: f.h / scale,
    })
}

/// The square crop `(x, y, side)`: around the face with `margin` (a fraction of the face size on
/// each side) and clamped to the image, or the central square without a face.
pub fn crop_square(w: u32, h: u32, face: Option<FaceBox>, margin: f32) -> (u32, u32, u32) {
    let short = w.min(h);
    match face {
        None => ((w - short) / 2, (h - short) / 2, short),
        Some(f) => {
            let side = (f.w.max(f.h) * (1.0 + 2.0 * margin)).round() as u32;
            let side = side.clamp(1, short);
            let cx = f.x + f.w / 2.0;
            let cy = f.y + f.h / 2.0;
            let x = (cx - side as f32 / 2.0).round().clamp(0.0, (w - side) as f32) as u32;
            let y = (cy - side as f32 / 2.0).round().clamp(0.0, (h - side) as f32) as u32;
            (x, y, side)
        }
    }
}

/// Crop and resize to `size × size`.
pub fn frame(img: &RgbImage, face: Option<FaceBox>, margin: f32, size: u32) -> RgbImage {
    let (x, y, side) = crop_square(img.width(), img.height(), face, margin);
    let crop = image::imageops::crop_imm(img, x, y, side, side).to_image();
    if side == size {
        crop
    } else {
        image::imageops::resize(&crop, size, size, image::imageops::FilterType::CatmullRom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_has_zero_colourfulness() {
        let img = RgbImage::from_fn(80, 90, |x, y| {
            let v = ((x * 3 + y) % 256) as u8;
            image::Rgb([v, v, v])
        });
        assert_eq!(colourfulness(&img), 0.0);
        let red = RgbImage::from_pixel(10, 10, image::Rgb([200, 40, 40]));
        assert!(colourfulness(&red) > 100.0);
    }

    #[test]
    fn crops_are_clamped_squares() {
        assert_eq!(crop_square(175, 220, None, 0.5), (0, 22, 175));
        let f = FaceBox {
            x: 0.0,
            y: 0.0,
            w: 40.0,
            h: 40.0,
        };
        assert_eq!(crop_square(175, 220, Some(f), 0.5), (0, 0, 80));
        let f = FaceBox {
            x: 150.0,
            y: 190.0,
            w: 60.0,
            h: 60.0,
        };
        let (x, y, s) = crop_square(175, 220, Some(f), 1.0);
        assert_eq!(s, 175);
        assert_eq!((x, y), (0, 45));
    }
}
