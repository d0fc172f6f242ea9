//! Per-image metrics between a generated image and its target.
//!
//! **Pixel convention.** Every metric here takes images as f32 in **[0, 1]** (8-bit PNG value / 255),
//! the way they sit on disk, not the network's [−1, 1]. That matters for the cosine dissimilarity:
//! it is invariant to scale (x vs 2x gives 0) but not to an offset, so the same pair of images gives
//! a different value on [0, 1] and on [−1, 1] (on [0, 1] every vector lies in the positive orthant,
//! so the value stays in [0, 1]; on [−1, 1] it can reach 2). We follow the study's Eq. 5 on [0, 1]
//! pixel values, so our numbers compare with its Table 3. L1, PSNR and SSIM use data range 1.
//!
//! Sums are accumulated in f64 so that 256×256×3 values do not lose digits.

use super::ssim_core;
use anyhow::{bail, Result};

/// An image as interleaved (HWC) f32 values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// Wraps HWC data; fails when the length does not match the shape.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != width * height * channels {
            bail!(
                "image data has {} values, expected {width}×{height}×{channels}",
                data.len()
            );
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// Reads an image file as RGB in [0, 1] (grey or RGBA files are converted to RGB, dropping
    /// alpha, so a grey fake and an RGB target still compare).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let img = image::open(path)
            .map_err(|e| anyhow::anyhow!("reading image {}: {e}", path.display()))?
            .to_rgb32f();
        let (w, h) = img.dimensions();
        Image::new(w as usize, h as usize, 3, img.into_raw())
    }

    fn same_shape(&self, other: &Image) -> bool {
        (self.width, self.height, self.channels) == (other.width, other.height, other.channels)
    }
}

/// The four numbers we report per image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// 1 − cos(x, y) over the flattened images, in [0, 2] (in [0, 1] for [0, 1] pixels).
    pub cosine_dissimilarity: f64,
    /// Mean absolute difference.
    pub l1: f64,
    /// 10·log10(1 / MSE) in dB; +inf when the images are identical.
    pub psnr: f64,
    /// Mean SSIM (Wang et al. 2004), averaged over channels; see [`ssim`].
    pub ssim: f64,
}

/// All four metrics of `fake` against `real`. Fails when the shapes differ or the images are
/// smaller than the 11×11 SSIM window.
pub fn compare(fake: &Image, real: &Image) -> Result<Metrics> {
    check_shapes(fake, real)?;
    Ok(Metrics {
        cosine_dissimilarity: cosine_dissimilarity(&fake.data, &real.data),
        l1: l1(&fake.data, &real.data),
        psnr: psnr(&fake.data, &real.data),
        ssim: ssim(fake, real)?,
    })
}

fn check_shapes(a: &Image, b: &Image) -> Result<()> {
    if !a.same_shape(b) {
        bail!(
            "size mismatch: {}×{}×{} vs {}×{}×{}",
            a.width,
            a.height,
            a.channels,
            b.width,
            b.height,
            b.channels
        );
    }
    Ok(())
}

/// 1 − x·y / (‖x‖‖y‖) over the flattened values (the study's Eq. 5).
///
/// An all-zero vector has no direction. We define the value as 0 when both are zero (identical
/// images must score 0) and 1 when only one is (as for orthogonal vectors: nothing in common),
/// rather than NaN, so that a black output cannot poison a mean.
pub fn cosine_dissimilarity(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "cosine_dissimilarity: lengths differ");
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (a as f64, b as f64);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    match (xx == 0.0, yy == 0.0) {
        (true, true) => 0.0,
        (true, false) | (false, true) => 1.0,
        // sqrt(xx·yy) rather than sqrt(xx)·sqrt(yy): for x = y it is exactly xx, so identical
        // images give exactly 0. Rounding can push cos a hair past ±1; clamp to keep [0, 2].
        _ => 1.0 - (xy / (xx * yy).sqrt()).clamp(-1.0, 1.0),
    }
}

/// Mean absolute difference.
pub fn l1(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "l1: lengths differ");
    let s: f64 = x.iter().zip(y).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum();
    s / x.len().max(1) as f64
}

/// Mean squared difference.
pub fn mse(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "mse: lengths differ");
    let s: f64 = x.iter().zip(y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    s / x.len().max(1) as f64
}

/// PSNR for data range 1: 10·log10(1 / MSE) dB, +inf for identical images.
pub fn psnr(x: &[f32], y: &[f32]) -> f64 {
    let m = mse(x, y);
    if m == 0.0 {
        f64::INFINITY
    } else {
        -10.0 * m.log10()
    }
}

/// Mean SSIM of two images, **per channel then averaged over channels** (not on luma), with
/// skimage's semantics for `structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False, data_range=1, channel_axis=-1)`: Gaussian window σ = 1.5 truncated
/// at 3.5σ (11 taps), `reflect` borders, K1 = 0.01, K2 = 0.03, and the SSIM map averaged after
/// cropping the 5-pixel border. Checked against scikit-image 0.26 (tests/eval_metrics.rs).
pub fn ssim(x: &Image, y: &Image) -> Result<f64> {
    check_shapes(x, y)?;
    if x.width < ssim_core::WIN || x.height < ssim_core::WIN {
        bail!(
            "SSIM needs images of at least {0}×{0} pixels, got {1}×{2}",
            ssim_core::WIN,
            x.width,
            x.height
        );
    }
    let c = x.channels;
    let plane =
        |img: &Image, ch: usize| -> Vec<f64> { img.data.iter().skip(ch).step_by(c).map(|&v| v as f64).collect() };
    let mut total = 0.0;
    for ch in 0..c {
        total += ssim_core::ssim_plane(&plane(x, ch), &plane(y, ch), x.width, x.height, 1.0);
    }
    Ok(total / c as f64)
}
