//! Validation during training (the study's Fig. 10): the generator on DATAROOT/val in the
//! reference's test mode (each image's own BN statistics, seeded dropout), scored by mean cosine
//! dissimilarity and L1 on [0, 1] pixels (as `eval`), plus a strip of sample images for the run's
//! web page. It leaves the run untouched: BN running statistics and counters are restored after.

use crate::data::{save_image, AlignedDataset, DataOptions, Loader};
use crate::device::Device;
use crate::eval::{cosine_dissimilarity, l1};
use crate::models::model::Generator;
use crate::ops::activation::splitmix;
use crate::tensor::Shape;
use anyhow::Result;
use std::path::Path;

/// How many validation images go into the sample strip.
pub const STRIP_ROWS: usize = 4;

#[derive(Clone, Debug)]
pub struct ValResult {
    pub images: usize,
    pub cosine: f64,
    pub l1: f64,
    /// CHW of `[real_A | fake_B | real_B]` rows, one per sample, stacked (3 × rows·h × 3w).
    pub strip: Vec<f32>,
    pub strip_h: usize,
    pub strip_w: usize,
}

/// The val split's loader, or None when DATAROOT/val has no images.
pub fn val_loader(dataroot: &Path, train: &DataOptions) -> Result<Option<Loader>> {
    let Ok(ds) = AlignedDataset::open(dataroot, "val") else {
        return Ok(None);
    };
    let opts = DataOptions {
        load_size: train.crop_size,
        crop_size: train.crop_size,
        direction: train.direction,
        seed: train.seed,
        num_threads: 1,
        ..DataOptions::test()
    };
    Ok(Some(Loader::new(ds, opts)?))
}

/// Scores G on up to `max_images` validation images.
pub fn validate(
    g: &mut dyn Generator,
    dev: &Device,
    loader: &Loader,
    max_images: usize,
    seed: u64,
) -> Result<ValResult> {
    let saved = g.params().snapshot_running_stats();
    let (mut cos, mut l1_sum, mut n) = (0.0, 0.0, 0usize);
    let mut rows: Vec<[Vec<f32>; 3]> = vec![];
    let (mut h, mut w) = (0, 0);
    for b in loader.epoch(0) {
        if n >= max_images {
            break;
        }
        let shape = Shape::new(1, b.c, b.h, b.w);
        if g.check_input(shape).is_err() {
            continue;
        }
        let x = dev.upload_tensor(shape, &b.a);
        let fake = dev.download(&g.translate(dev, &x, true, Some(splitmix(seed, n as u64))).data);
        let to01 = |v: &[f32]| v.iter().map(|x| (x + 1.0) * 0.5).collect::<Vec<f32>>();
        let (f01, r01) = (to01(&fake), to01(&b.b));
        cos += cosine_dissimilarity(&f01, &r01);
        l1_sum += l1(&f01, &r01);
        if rows.len() < STRIP_ROWS {
            (h, w) = (b.h, b.w);
            rows.push([b.a.clone(), fake, b.b.clone()]);
        }
        n += 1;
    }
    g.params_mut().restore_running_stats(saved);
    let (sh, sw) = (rows.len() * h, 3 * w);
    let mut strip = vec![-1.0; 3 * sh * sw];
    for (r, imgs) in rows.iter().enumerate() {
        for (col, img) in imgs.iter().enumerate() {
            for c in 0..3 {
                for y in 0..h {
                    let dst = (c * sh + r * h + y) * sw + col * w;
                    strip[dst..dst + w].copy_from_slice(&img[(c * h + y) * w..(c * h + y + 1) * w]);
                }
            }
        }
    }
    let d = n.max(1) as f64;
    Ok(ValResult {
        images: n,
        cosine: cos / d,
        l1: l1_sum / d,
        strip,
        strip_h: sh,
        strip_w: sw,
    })
}

/// Writes the strip as `dir/images/epochNNN_val.png`; returns its path relative to `dir`.
pub fn save_strip(dir: &Path, epoch: usize, v: &ValResult) -> Result<Option<String>> {
    if v.strip_h == 0 {
        return Ok(None);
    }
    let rel = format!("images/epoch{epoch:03}_val.png");
    save_image(&dir.join(&rel), &v.strip, v.strip_h, v.strip_w)?;
    Ok(Some(rel))
}
