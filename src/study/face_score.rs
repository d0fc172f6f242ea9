//! A classifier-style score in the spirit of the study's Table 4 that needs no download: the face
//! detector (prepare's Haar cascade) on every fake_B and its real_B: how often it finds a face in
//! each, and how well the two boxes agree (intersection over union) where it finds both.
//! The study's Inception V3 gender confidence needs weights that cannot be had offline.

use crate::data::prepare::filters::detect_face;
use crate::data::prepare::haar::{Cascade, FaceBox};
use crate::eval::find_pairs;
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct FaceScore {
    pub images: usize,
    pub real_detected: usize,
    pub fake_detected: usize,
    /// Mean IoU of the fake_B and real_B face boxes over images where both have one (NaN: none).
    pub mean_iou: f64,
}

impl FaceScore {
    pub fn real_rate(&self) -> f64 {
        self.real_detected as f64 / self.images.max(1) as f64
    }
    pub fn fake_rate(&self) -> f64 {
        self.fake_detected as f64 / self.images.max(1) as f64
    }
}

fn iou(a: &FaceBox, b: &FaceBox) -> f64 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    let inter = ((x1 - x0).max(0.0) * (y1 - y0).max(0.0)) as f64;
    let union = (a.area() + b.area()) as f64 - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Scores one result folder (`images/<stem>_{fake_B,real_B}.png`).
pub fn score(cascade: &Cascade, folder: &Path) -> Result<FaceScore> {
    let pairs = find_pairs(folder)?;
    let found: Vec<(Option<FaceBox>, Option<FaceBox>)> = pairs
        .par_iter()
        .map(|p| {
            let load = |f: &Path| -> Result<image::RgbImage> {
                Ok(image::open(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .to_rgb8())
            };
            Ok((
                detect_face(cascade, &load(&p.fake)?),
                detect_face(cascade, &load(&p.target)?),
            ))
        })
        .collect::<Result<_>>()?;
    let ious: Vec<f64> = found
        .iter()
        .filter_map(|(f, r)| Some(iou(f.as_ref()?, r.as_ref()?)))
        .collect();
    Ok(FaceScore {
        images: found.len(),
        fake_detected: found.iter().filter(|(f, _)| f.is_some()).count(),
        real_detected: found.iter().filter(|(_, r)| r.is_some()).count(),
        mean_iou: if ious.is_empty() {
            f64::NAN
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        },
    })
}
