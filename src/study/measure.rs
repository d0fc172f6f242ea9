//! The measured step behind the plan's time estimate: a few pix2pix training steps at batch 1 and
//! 8 on random images, and G forwards, on the study's device; other batch sizes are a straight
//! line through the two measured points (said so wherever they are shown). Run 6 (CycleGAN,
//! batch 1 only) has its own measured step and G_A forward.

use super::plan::ScaleParams;
use crate::device::Device;
use crate::models::patchgan::PatchGanConfig;
use crate::models::pix2pix::{Pix2Pix, Pix2PixOptions};
use crate::models::unet::UnetConfig;
use crate::tensor::Shape;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The batch sizes that are timed; others are interpolated or extrapolated.
pub const MEASURED_BATCHES: [usize; 2] = [1, 8];

#[derive(Clone, Debug, PartialEq)]
pub struct StepTimes {
    /// e.g. `unet_128 ngf 32 ndf 32 128²`.
    pub config: String,
    pub device: String,
    /// Seconds per training step at batch 1 and 8 (CycleGAN: batch 1 only, NaN at 8).
    pub step_s: [f64; 2],
    /// Seconds per G forward (batch 1, the test and validation cost per image).
    pub fwd_s: f64,
}

impl StepTimes {
    /// Seconds per step at `batch`: measured at 1 and 8, linear in between and beyond.
    pub fn step(&self, batch: usize) -> f64 {
        let [t1, t8] = self.step_s;
        if batch == 1 {
            return t1;
        }
        (t1 + (batch as f64 - 1.0) * (t8 - t1) / 7.0).max(t1.min(t8))
    }

    pub fn is_measured(batch: usize) -> bool {
        MEASURED_BATCHES.contains(&batch)
    }

    pub fn csv_rows(&self) -> String {
        let mut s = String::new();
        for (b, t) in MEASURED_BATCHES.iter().zip(self.step_s) {
            if !t.is_finite() {
                continue; // not measured (CycleGAN at batch 8)
            }
            let _ = writeln!(s, "{},{},train_step,{b},{t}", self.config, self.device);
        }
        let _ = writeln!(s, "{},{},g_forward,1,{}", self.config, self.device, self.fwd_s);
        s
    }

    /// Reads the rows of one config back from `csv_rows` output; `batch8`: the config must have
    /// its batch-8 row (pix2pix's), else only batch 1 and the forward are needed.
    pub fn parse(text: &str, config: &str, batch8: bool) -> Option<StepTimes> {
        let mut t = StepTimes {
            config: config.to_string(),
            device: String::new(),
            step_s: [f64::NAN; 2],
            fwd_s: f64::NAN,
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 5 || f[0] != config {
                continue;
            }
            t.device = f[1].to_string();
            let v: f64 = f[4].parse().ok()?;
            match (f[2], f[3]) {
                ("train_step", "1") => t.step_s[0] = v,
                ("train_step", "8") => t.step_s[1] = v,
                ("g_forward", _) => t.fwd_s = v,
                _ => {}
            }
        }
        (t.step_s[0].is_finite() && (t.step_s[1].is_finite() || !batch8) && t.fwd_s.is_finite()).then_some(t)
    }
}

pub fn config_name(p: &ScaleParams) -> String {
    format!("{} ngf {} ndf {} {}²", p.net_g, p.ngf, p.ndf, p.crop_size)
}

/// Times `reps` steps after one warm-up step (allocation, module loading) at each measured batch.
pub fn measure(p: &ScaleParams, dev: &Device, seed: u64, reps: usize) -> Result<StepTimes> {
    let gcfg = UnetConfig::named(p.net_g, p.ngf, true, crate::nn::layers::NormKind::Batch)?;
    let dcfg = PatchGanConfig {
        input_nc: 6,
        ndf: p.ndf,
        n_layers: 3,
        norm: crate::nn::layers::NormKind::Batch,
    };
    let mut m = Pix2Pix::new(gcfg, dcfg, Pix2PixOptions::default(), dev, seed)
        .with_context(|| format!("building {} for the measured step", config_name(p)))?;
    let s = p.crop_size;
    let mut step_s = [0.0; 2];
    for (k, &b) in MEASURED_BATCHES.iter().enumerate() {
        let shape = Shape::new(b, 3, s, s);
        let vals: Vec<f32> = (0..shape.numel())
            .map(|i| (i as f32 * 0.618).fract() * 2.0 - 1.0)
            .collect();
        let a = dev.upload_tensor(shape, &vals);
        let bt = dev.upload_tensor(shape, &vals.iter().rev().copied().collect::<Vec<_>>());
        m.check_batch(shape, shape)?;
        let mut times = vec![];
        for r in 0..=reps {
            let t0 = Instant::now();
            m.step(dev, &a, &bt, 2e-4);
            let l = m.losses(dev);
            if !l.g_l1.is_finite() {
                bail!("the measured step diverged at batch {b}");
            }
            if r > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        step_s[k] = times.iter().sum::<f64>() / times.len() as f64;
    }
    let shape = Shape::new(1, 3, s, s);
    let x = dev.upload_tensor(shape, &vec![0.1; shape.numel()]);
    let mut fwd = vec![];
    for r in 0..=reps {
        let t0 = Instant::now();
        let y = m.g.forward(dev, &x, true, Some(seed ^ r as u64));
        let _ = dev.download(&y.data);
        if r > 0 {
            fwd.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(StepTimes {
        config: config_name(p),
        device: dev.describe().replace(',', ";"),
        step_s,
        fwd_s: fwd.iter().sum::<f64>() / fwd.len() as f64,
    })
}

/// Every measured step of a study: pix2pix at the study's scale, CycleGAN (run 6) when it is
/// selected, and pix2pix at the full protocol's scale (for the projection, `small` only).
#[derive(Clone, Debug)]
pub struct Measured {
    pub pix2pix: StepTimes,
    pub cycle_gan: Option<StepTimes>,
    pub full: Option<StepTimes>,
}

impl Measured {
    /// The step times of run `r`'s model, None when they were not measured (run not selected).
    pub fn of(&self, r: &super::plan::RunSpec) -> Option<&StepTimes> {
        match r.model {
            super::plan::Model::Pix2Pix => Some(&self.pix2pix),
            super::plan::Model::CycleGan => self.cycle_gan.as_ref(),
        }
    }
}

/// Run 6's configuration: `cycle_gan resnet_6blocks ngf 8 ndf 8 128²`.
pub fn cycle_gan_config_name(p: &ScaleParams) -> String {
    format!(
        "cycle_gan {} ngf {} ndf {} {}²",
        p.cycle_gan_net_g, p.ngf, p.ndf, p.crop_size
    )
}

/// Run 6's model as the study trains it (the reference's CycleGAN defaults, InstanceNorm).
pub fn cycle_gan_model(p: &ScaleParams) -> Result<crate::models::ModelConfig> {
    use crate::nn::layers::NormKind;
    Ok(crate::models::ModelConfig::CycleGan {
        g: crate::models::resnet::ResnetConfig::named(p.cycle_gan_net_g, p.ngf, NormKind::Instance, false)?,
        d: PatchGanConfig {
            input_nc: 3,
            ndf: p.ndf,
            n_layers: 3,
            norm: NormKind::Instance,
        },
        opt: crate::models::cyclegan::CycleGanOptions::default(),
    })
}

/// Times `reps` CycleGAN steps (batch 1, after a warm-up step) and G_A forwards, as [`measure`].
pub fn measure_cycle_gan(p: &ScaleParams, dev: &Device, seed: u64, reps: usize) -> Result<StepTimes> {
    let mut m = cycle_gan_model(p)?
        .build(dev, seed)
        .with_context(|| format!("building {} for the measured step", cycle_gan_config_name(p)))?;
    let shape = Shape::new(1, 3, p.crop_size, p.crop_size);
    let vals: Vec<f32> = (0..shape.numel())
        .map(|i| (i as f32 * 0.618).fract() * 2.0 - 1.0)
        .collect();
    let a = dev.upload_tensor(shape, &vals);
    let b = dev.upload_tensor(shape, &vals.iter().rev().copied().collect::<Vec<_>>());
    m.check_batch(shape, shape)?;
    let mut times = vec![];
    for r in 0..=reps {
        let t0 = Instant::now();
        m.step(dev, &a, &b, 2e-4);
        if !m.losses(dev).iter().all(|v| v.is_finite()) {
            bail!("the measured CycleGAN step diverged");
        }
        if r > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let mut fwd = vec![];
    for r in 0..=reps {
        let t0 = Instant::now();
        let y = m.generator_ab().translate(dev, &a, true, None);
        let _ = dev.download(&y.data);
        if r > 0 {
            fwd.push(t0.elapsed().as_secs_f64());
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(StepTimes {
        config: cycle_gan_config_name(p),
        device: dev.describe().replace(',', ";"),
        step_s: [mean(&times), f64::NAN],
        fwd_s: mean(&fwd),
    })
}

/// `OUT/measure.csv`: config, device, what, batch, seconds.
pub fn write_csv(path: &Path, times: &[&StepTimes]) -> Result<()> {
    let mut s = String::from("config,device,what,batch,seconds\n");
    for t in times {
        s += &t.csv_rows();
    }
    crate::checkpoint::write_atomic(path, s.as_bytes())
}

/// Formats seconds as `1 h 02 min`, `3 min 05 s` or `12.3 s`.
pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    let t = s.round() as u64;
    if t >= 3600 {
        format!("{} h {:02} min", t / 3600, (t % 3600) / 60)
    } else if t >= 60 {
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        format!("{s:.1} s")
    }
}

/// Estimated seconds of the data stage: one photo read, its face detected, framed and drawn in
/// the 5 styles, timed, times the photos, over the worker threads.
pub fn prepare_estimate(cfg: &super::StudyConfig, photo: &Path, photos: usize) -> Result<f64> {
    use crate::data::prepare::{cartoonize, filters, haar, Style};
    let cascade = match haar::find_cascade(cfg.cascade.as_deref()).filter(|_| !cfg.no_face_filter) {
        Some(c) => Some(haar::Cascade::load(&c)?),
        None => None,
    };
    let t0 = Instant::now();
    let p = filters::load_photo(photo).map_err(|e| anyhow::anyhow!("{}: {}", photo.display(), e.0))?;
    let face = cascade.as_ref().and_then(|c| filters::detect_face(c, &p.rgb));
    let framed = filters::frame(&p.rgb, face, 0.6, cfg.params.size);
    for s in super::plan::TEST_STYLES {
        let _ = cartoonize(&framed, s.parse::<Style>()?);
    }
    let one = t0.elapsed().as_secs_f64();
    Ok(one * photos as f64 / rayon::current_num_threads().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_round_trip_and_interpolate() {
        let t = StepTimes {
            config: "unet_128 ngf 8 ndf 8 128²".into(),
            device: "cpu (2 threads)".into(),
            step_s: [0.1, 0.8],
            fwd_s: 0.01,
        };
        assert_eq!(StepTimes::parse(&t.csv_rows(), &t.config, true), Some(t.clone()));
        assert!(StepTimes::parse(&t.csv_rows(), "other", true).is_none());
        assert!((t.step(8) - 0.8).abs() < 1e-12);
        assert!((t.step(64) - (0.1 + 63.0 * 0.1)).abs() < 1e-9);
        // A batch-1-only config (CycleGAN) round-trips without a batch-8 row.
        let c = StepTimes {
            config: "cycle_gan resnet_6blocks ngf 8 ndf 8 128²".into(),
            step_s: [0.3, f64::NAN],
            ..t.clone()
        };
        assert!(!c.csv_rows().contains(",train_step,8,"));
        let back = StepTimes::parse(&c.csv_rows(), &c.config, false).unwrap();
        assert_eq!((back.step(1), back.fwd_s), (0.3, 0.01));
        assert!(StepTimes::parse(&c.csv_rows(), &c.config, true).is_none());
        assert_eq!(fmt_duration(3725.0), "1 h 02 min");
        assert_eq!(fmt_duration(65.0), "1 min 05 s");
    }
}
