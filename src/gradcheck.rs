//! `gradcheck`: one full training step of any model on two devices from the same seed and batch,
//! and a comparison of every loss, every visual (fake_B …), every parameter gradient, every updated
//! weight and running statistic of every network.
//! The users' check that the CUDA path computes what the CPU reference computes.

use crate::device::{Device, Precision};
use crate::models::ModelConfig;
use crate::nn::params::{Kind, ParamStore};
use crate::tensor::Shape;
use anyhow::Result;

/// One compared quantity.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub numel: usize,
    /// ‖reference‖₂.
    pub norm: f64,
    /// ‖test − reference‖₂ / ‖reference‖₂ (absolute error when the reference is zero).
    pub rel_err: f64,
    pub max_abs_err: f64,
    pub worst_index: usize,
}

/// Below this norm a reference is zero up to fp32 rounding (e.g. the gradient of a conv bias that
/// an InstanceNorm follows: the norm removes the mean, so the true gradient is exactly 0), and its
/// relative error compares rounding noise with rounding noise.
pub const NOISE_FLOOR: f64 = 1e-6;

impl Row {
    /// Within `tol`: relative error at most `tol`, or both sides zero up to rounding (the
    /// reference's norm and the largest difference under [`NOISE_FLOOR`]).
    pub fn passes(&self, tol: f64) -> bool {
        self.rel_err <= tol || self.is_noise()
    }

    /// Both sides zero up to rounding: its relative error says nothing.
    pub fn is_noise(&self) -> bool {
        self.norm < NOISE_FLOOR && self.max_abs_err < NOISE_FLOOR
    }
}

/// Compares `test` with `reference` element by element.
pub fn compare(name: &str, test: &[f32], reference: &[f32]) -> Row {
    assert_eq!(test.len(), reference.len(), "{name}: lengths differ");
    let (mut num, mut den, mut max, mut worst) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for (i, (&t, &r)) in test.iter().zip(reference).enumerate() {
        let d = (t as f64 - r as f64).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        num += d * d;
        den += (r as f64) * (r as f64);
        if d > max {
            max = d;
            worst = i;
        }
    }
    let rel_err = if den > 0.0 { (num / den).sqrt() } else { num.sqrt() };
    Row {
        name: name.into(),
        numel: test.len(),
        norm: den.sqrt(),
        rel_err,
        max_abs_err: max,
        worst_index: worst,
    }
}

/// A deterministic, image-like batch in [−1, 1] (smooth colour fields), so no file is needed.
pub fn synthetic_batch(shape: Shape, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let f = seed as f32 * 0.37;
    let mut a = vec![0.0; shape.numel()];
    let mut b = vec![0.0; shape.numel()];
    for (i, (av, bv)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
        let x = (i % shape.w) as f32 / shape.w as f32;
        let y = ((i / shape.w) % shape.h) as f32 / shape.h as f32;
        let c = ((i / shape.hw()) % shape.c) as f32;
        let n = (i / shape.chw()) as f32;
        let v = (6.0 * x + 2.0 * c + f + n).sin() * 0.6 + (5.0 * y - c + 0.5 * n).cos() * 0.35;
        *bv = v.clamp(-1.0, 1.0);
        *av = ((v * 2.0).round() / 2.0).clamp(-1.0, 1.0);
    }
    (a, b)
}

fn store_rows(rows: &mut Vec<Row>, prefix: &str, test: &ParamStore, reference: &ParamStore) {
    let (t, r) = (test.host(), reference.host());
    for e in &reference.entries {
        let name = format!("{prefix}{}", e.name);
        match e.kind {
            Kind::Param => rows.push(compare(
                &format!("{name}.grad"),
                &t.grad[e.span.range()],
                &r.grad[e.span.range()],
            )),
            Kind::Buffer => rows.push(compare(&name, &t.buffers[e.span.range()], &r.buffers[e.span.range()])),
            Kind::Counter => {}
        }
    }
    rows.push(compare(
        &format!("{prefix}* (all weights after Adam)"),
        &t.data,
        &r.data,
    ));
}

/// The default tolerance of `pix2pix gradcheck` against the fp32 CPU reference, per precision of
/// the device under test. fp32: reduction order through a whole step (~30 layers forward and
/// backward) grows past the per-op 1e-5 bound. tf32 and bf16: each conv's operands carry a rounding
/// error of up to 2⁻¹¹ and 2⁻⁸ (per-op relative errors ~3e-4 and ~2e-3, tests/gpu_conv_variants.rs),
/// and through the step's BatchNorms at 2×2 and 1×1 and its ReLU masks the gradients of the inner
/// layers move by far more: measured worst rows 0.08-0.10 (tf32) and 0.47-0.64 (bf16) on
/// unet_128 ngf 8 at 128² (benches/RESULTS.md, "Tensor-core convolutions"). The bounds sit above
/// those; at bf16 the whole-step check catches only gross errors, the per-op tests the exact ones.
pub fn default_tol(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-3,
        Precision::Tf32 => 0.25,
        Precision::Bf16 => 1.0,
    }
}

/// Runs one step of the same model on `test_dev` and `ref_dev` and compares everything.
pub fn run(cfg: &ModelConfig, shape: Shape, seed: u64, test_dev: &Device, ref_dev: &Device) -> Result<Vec<Row>> {
    let (a, b) = synthetic_batch(shape, seed);
    let mut models = vec![];
    for dev in [test_dev, ref_dev] {
        let mut m = cfg.build(dev, seed)?;
        m.check_batch(shape, shape)?;
        let (ta, tb) = (dev.upload_tensor(shape, &a), dev.upload_tensor(shape, &b));
        m.step(dev, &ta, &tb, 2e-4);
        dev.synchronize();
        models.push(m);
    }
    let (t, r) = (&models[0], &models[1]);
    let mut rows = vec![];
    let (lt, lr) = (t.losses(test_dev), r.losses(ref_dev));
    for (i, name) in r.loss_names().iter().enumerate() {
        rows.push(compare(&format!("loss {name}"), &lt[i..i + 1], &lr[i..i + 1]));
    }
    for ((name, vt), (_, vr)) in t.visuals(test_dev).iter().zip(r.visuals(ref_dev).iter()) {
        rows.push(compare(name, vt, vr));
    }
    for ((name, pt), (_, pr)) in t.networks().into_iter().zip(r.networks()) {
        store_rows(&mut rows, &format!("net{name}."), pt, pr);
    }
    Ok(rows)
}

/// The table, worst first within each section; a ✗ marks rows over `tol`.
pub fn render(rows: &[Row], tol: f64) -> String {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(10).min(90);
    let mut s = format!(
        "{:<w$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}\n",
        "quantity", "elements", "‖ref‖", "rel err", "max |Δ|", "at"
    );
    s += &format!("{}\n", "-".repeat(w + 58));
    for r in rows {
        let name = if r.name.len() > w {
            format!("…{}", &r.name[r.name.len() - w + 1..])
        } else {
            r.name.clone()
        };
        let mark = if !r.passes(tol) { "✗" } else { "" };
        s += &format!(
            "{name:<w$}  {:>10}  {:>10.3e}  {:>10.2e}  {:>10.2e}  {:>8} {mark}\n",
            r.numel, r.norm, r.rel_err, r.max_abs_err, r.worst_index
        );
    }
    s
}
