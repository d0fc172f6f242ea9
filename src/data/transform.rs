//! SPEC §6 per-sample work: split A|B, draw the shared random parameters, and run the transform
//! chain (resize / scale / crop / flip / ToTensor / Normalize) on each half.

use super::options::{DataOptions, Direction, Preprocess};
use super::resample::resize_bicubic;
use anyhow::{bail, Result};
use image::RgbImage;
use rand::Rng;
use std::path::PathBuf;

/// One transformed pair, CHW f32 in [−1, 1]. `a` is the network input (after `direction`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub path: PathBuf,
}

/// The random choices the reference makes once per sample (`get_params`) and applies to both
/// halves, so A and B stay pixel-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleParams {
    pub crop_x: usize,
    pub crop_y: usize,
    pub flip: bool,
}

/// The reference's `get_params(opt, A.size)`: the crop range comes from the size the image will
/// have after the resize step (for scale_width_and_crop, from `load · h // w`, as the reference
/// computes it even though the real height is also kept ≥ crop_size). Always draws x, y, flip in
/// that order so the random stream does not depend on the mode.
pub fn draw_params(opts: &DataOptions, w: usize, h: usize, rng: &mut impl Rng) -> SampleParams {
    let (new_w, new_h) = match opts.preprocess {
        Preprocess::ResizeAndCrop => (opts.load_size, opts.load_size),
        Preprocess::ScaleWidthAndCrop => (opts.load_size, opts.load_size * h / w.max(1)),
        _ => (w, h),
    };
    let crop_x = rng.gen_range(0..=new_w.saturating_sub(opts.crop_size));
    let crop_y = rng.gen_range(0..=new_h.saturating_sub(opts.crop_size));
    let flip = rng.gen::<f64>() > 0.5;
    SampleParams { crop_x, crop_y, flip }
}

/// Split an A|B image: A = columns [0, W/2), B = [W/2, W) with integer W/2 (an odd width gives B
/// the extra column, as in the reference). Returns (input, target) after `direction`.
pub fn split_ab(img: &RgbImage, direction: Direction) -> Result<(RgbImage, RgbImage)> {
    let (w, h) = (img.width(), img.height());
    if w < 2 || h == 0 {
        bail!("image is {w}x{h}: an A|B pair needs a width of at least 2");
    }
    let w2 = w / 2;
    let left = image::imageops::crop_imm(img, 0, 0, w2, h).to_image();
    let right = image::imageops::crop_imm(img, w2, 0, w - w2, h).to_image();
    Ok(match direction {
        Direction::AtoB => (left, right),
        Direction::BtoA => (right, left),
    })
}

/// The reference's `__scale_width`: width → target keeping the aspect ratio, height ≥ crop_size.
fn scale_width(img: &RgbImage, target: usize, crop: usize) -> RgbImage {
    let (ow, oh) = (img.width() as usize, img.height() as usize);
    if ow == target && oh >= crop {
        return img.clone();
    }
    // int(max(target * oh / ow, crop)) with Python's true division.
    let h = (target as f64 * oh as f64 / ow as f64).max(crop as f64) as usize;
    resize_bicubic(img, target, h.max(1))
}

/// Python 3 `round`: halves go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// The reference's `__make_power_2(img, base=4)` used by preprocess `none`.
fn make_multiple_of(img: &RgbImage, base: usize) -> Result<RgbImage> {
    let (ow, oh) = (img.width() as usize, img.height() as usize);
    let h = round_half_even(oh as f64 / base as f64) as usize * base;
    let w = round_half_even(ow as f64 / base as f64) as usize * base;
    if h == oh && w == ow {
        return Ok(img.clone());
    }
    if h == 0 || w == 0 {
        bail!("a {ow}x{oh} half rounds to {w}x{h} with preprocess none: too small");
    }
    Ok(resize_bicubic(img, w, h))
}

/// The reference's `__crop`: only when the image is larger than the window in some side; like
/// PIL's `crop`, pixels outside the image come out black.
fn crop(img: &RgbImage, x: usize, y: usize, size: usize) -> RgbImage {
    let (ow, oh) = (img.width() as usize, img.height() as usize);
    if !(ow > size || oh > size) {
        return img.clone();
    }
    RgbImage::from_fn(size as u32, size as u32, |cx, cy| {
        let (sx, sy) = (x + cx as usize, y + cy as usize);
        if sx < ow && sy < oh {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// The 8-bit part of the chain for one half: resize or scale, crop, multiple-of-4, flip.
pub fn transform_half(img: &RgbImage, params: &SampleParams, opts: &DataOptions) -> Result<RgbImage> {
    let mut out = match opts.preprocess {
        Preprocess::ResizeAndCrop => resize_bicubic(img, opts.load_size, opts.load_size),
        Preprocess::ScaleWidth | Preprocess::ScaleWidthAndCrop => scale_width(img, opts.load_size, opts.crop_size),
        Preprocess::Crop | Preprocess::None => img.clone(),
    };
    if opts.preprocess.crops() {
        out = crop(&out, params.crop_x, params.crop_y, opts.crop_size);
    }
    if opts.preprocess == Preprocess::None {
        out = make_multiple_of(&out, 4)?;
    }
    if !opts.no_flip && params.flip {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    Ok(out)
}

/// ToTensor (÷255, HWC → CHW) then Normalize(0.5, 0.5), in f32 exactly as torchvision does.
pub fn to_tensor_normalized(img: &RgbImage) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
    out
}

/// The whole per-sample chain on a decoded A|B image with already-drawn parameters.
pub fn make_sample(ab: &RgbImage, params: &SampleParams, opts: &DataOptions, path: PathBuf) -> Result<Sample> {
    let (a, b) = split_ab(ab, opts.direction)?;
    let a = transform_half(&a, params, opts)?;
    let b = transform_half(&b, params, opts)?;
    if a.dimensions() != b.dimensions() {
        // Only possible for odd widths with modes that keep the size (crop, none).
        bail!(
            "A and B halves differ in size after preprocessing ({}x{} vs {}x{})",
            a.width(),
            a.height(),
            b.width(),
            b.height()
        );
    }
    Ok(Sample {
        c: 3,
        h: a.height() as usize,
        w: a.width() as usize,
        a: to_tensor_normalized(&a),
        b: to_tensor_normalized(&b),
        path,
    })
}

/// Draw the parameters from the A half's size (as the reference does) and transform.
pub fn sample_from_image(ab: &RgbImage, opts: &DataOptions, rng: &mut impl Rng, path: PathBuf) -> Result<Sample> {
    if ab.width() < 2 {
        bail!(
            "image is {}x{}: an A|B pair needs a width of at least 2",
            ab.width(),
            ab.height()
        );
    }
    let params = draw_params(opts, (ab.width() / 2) as usize, ab.height() as usize, rng);
    make_sample(ab, &params, opts, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round() {
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(2.4), 2.0);
        assert_eq!(round_half_even(2.6), 3.0);
        assert_eq!(round_half_even(0.5), 0.0);
    }

    #[test]
    fn crop_pads_like_pil_and_skips_small_images() {
        let img = RgbImage::from_pixel(10, 4, image::Rgb([9, 9, 9]));
        let c = crop(&img, 2, 0, 6);
        assert_eq!(c.dimensions(), (6, 6));
        assert_eq!(c.get_pixel(0, 3).0, [9, 9, 9]);
        assert_eq!(c.get_pixel(0, 4).0, [0, 0, 0]);
        let small = RgbImage::new(5, 5);
        assert_eq!(crop(&small, 0, 0, 6).dimensions(), (5, 5));
    }

    #[test]
    fn scale_width_keeps_aspect_and_min_height() {
        let img = RgbImage::new(40, 20);
        assert_eq!(scale_width(&img, 20, 8).dimensions(), (20, 10));
        assert_eq!(scale_width(&img, 20, 16).dimensions(), (20, 16));
    }

    #[test]
    fn none_rounds_to_multiples_of_four() {
        let img = RgbImage::new(10, 7);
        // 10/4 = 2.5 → 2 (half to even) → 8; 7/4 = 1.75 → 2 → 8.
        assert_eq!(make_multiple_of(&img, 4).unwrap().dimensions(), (8, 8));
        assert!(make_multiple_of(&RgbImage::new(1, 1), 4).is_err());
    }
}
