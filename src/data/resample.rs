//! Bicubic resize that reproduces Pillow's `Image.resize(size, Image.BICUBIC)` bit for bit.
//!
//! The reference resizes every training image with PIL, so matching it exactly keeps our
//! inputs identical to the reference's. This is Pillow's `ImagingResample` (libImaging/Resample.c)
//! for 8-bit images: a separable convolution, horizontal pass first, whose filter support grows
//! with the downscale factor (so downscaling averages instead of aliasing); the f64 weights are
//! normalised per output pixel, turned into fixed point with `PRECISION_BITS` = 22, and each pass
//! rounds and clips to u8 before the next one reads it.

use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampler: 32 − 8 − 2 bits.
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (Keys, a = −0.5); its support is 2 input pixels at scale 1.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}
const BICUBIC_SUPPORT: f64 = 2.0;

/// Per-output-pixel taps: the first input index, and fixed-point weights for consecutive inputs.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a full-image box [0, in_size).
fn precompute(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `(int)` in C truncates toward zero; both bounds are then clamped to the image.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                // Round half away from zero, as Pillow does with its ±0.5 and a C cast.
                let scaled = w * (1u64 << PRECISION_BITS) as f64;
                if scaled < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

/// The rounding offset every accumulator starts from (one half in fixed point).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Pillow's `clip8`: drop the fixed-point fraction and saturate to 0..=255.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize an RGB image to `out_w` × `out_h` exactly as Pillow's bicubic `resize` does.
/// Returns a copy when the size is unchanged (Pillow does the same, so no blur is introduced).
///
/// Panics if either output side is zero; callers check sizes and turn them into errors.
pub fn resize_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    assert!(out_w > 0 && out_h > 0, "resize to an empty image");
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let mut data: Vec<u8> = img.as_raw().clone();
    let mut w = in_w;
    if out_w != in_w {
        data = horizontal(&data, in_w, in_h, out_w);
        w = out_w;
    }
    if out_h != in_h {
        data = vertical(&data, w, in_h, out_h);
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, data).expect("buffer size matches by construction")
}

fn horizontal(src: &[u8], in_w: usize, h: usize, out_w: usize) -> Vec<u8> {
    let taps = precompute(in_w, out_w);
    let mut out = vec![0u8; out_w * h * 3];
    for (row, orow) in src.chunks_exact(in_w * 3).zip(out.chunks_exact_mut(out_w * 3)) {
        for ((&x0, k), o) in taps.first.iter().zip(&taps.weights).zip(orow.chunks_exact_mut(3)) {
            // i32 like Pillow: |sum| ≤ 255 · Σ|k| + 2^21 stays far below 2^31 for bicubic.
            let mut acc = [HALF; 3];
            for (p, &kw) in row[x0 * 3..(x0 + k.len()) * 3].chunks_exact(3).zip(k) {
                acc[0] += p[0] as i32 * kw;
                acc[1] += p[1] as i32 * kw;
                acc[2] += p[2] as i32 * kw;
            }
            o.copy_from_slice(&acc.map(clip8));
        }
    }
    out
}

fn vertical(src: &[u8], w: usize, in_h: usize, out_h: usize) -> Vec<u8> {
    let taps = precompute(in_h, out_h);
    let stride = w * 3;
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i32; stride];
    for (yy, (&y0, k)) in taps.first.iter().zip(&taps.weights).enumerate() {
        acc.fill(HALF);
        // Row-major accumulation: the same sums as Pillow's per-pixel loop, friendlier to caches.
        for (i, &kw) in k.iter().enumerate() {
            let row = &src[(y0 + i) * stride..(y0 + i + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kw;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(256, 286), (286, 256), (13, 5), (7, 29)] {
            let taps = precompute(i, o);
            for k in &taps.weights {
                let s: i64 = k.iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o}: {s}");
            }
        }
    }

    #[test]
    fn same_size_is_a_copy_and_constant_stays_constant() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bicubic(&img, 7, 5), img);
        let flat = RgbImage::from_pixel(9, 6, image::Rgb([200, 10, 77]));
        let up = resize_bicubic(&flat, 20, 13);
        assert!(up.pixels().all(|p| p.0 == [200, 10, 77]));
    }
}
