//! Shared test helpers: seeded random tensors and central finite differences.
#![allow(dead_code)]

pub mod planted;

use pix2pix::device::Device;
use pix2pix::ops::norm::BnParams;
use pix2pix::tensor::{Shape, Span, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Norm parameters at offsets inside larger buffers, as in a network's flat storage: γ at 3 and
/// β at 3 + c of the parameters, the running mean at 1 and variance at 1 + c of the buffers
/// (so a kernel that ignores a span's offset reads the wrong values).
pub fn bn_params_at_offsets(c: usize) -> BnParams {
    BnParams {
        weight: Span { off: 3, len: c },
        bias: Span { off: 3 + c, len: c },
        running_mean: Span { off: 1, len: c },
        running_var: Span { off: 1 + c, len: c },
        eps: 1e-5,
        momentum: 0.1,
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1], kept at least `gap` away from zero (so ReLU-like kinks and L1's
/// sign are not straddled by a finite-difference step).
pub fn random_vec(r: &mut ChaCha8Rng, len: usize, gap: f32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let v: f32 = r.gen_range(gap..1.0);
            if r.gen_bool(0.5) {
                v
            } else {
                -v
            }
        })
        .collect()
}

pub fn cpu_tensor(shape: Shape, v: Vec<f32>) -> Tensor {
    Device::Cpu.upload_tensor(shape, &v)
}

pub fn random_tensor(r: &mut ChaCha8Rng, shape: Shape) -> Tensor {
    cpu_tensor(shape, random_vec(r, shape.numel(), 0.05))
}

/// Relative error ‖a − b‖ / ‖b‖ (b the reference).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Central finite differences of `loss` (an f64 accumulation over an f32 forward) with respect to
/// the entries `idx` of `x`, compared with `analytic`. Panics with a table of the worst entries
/// when ‖fd − analytic‖/‖fd‖ exceeds `tol`. Returns the relative error.
pub fn check_fd(
    what: &str,
    x: &mut [f32],
    idx: &[usize],
    analytic: &[f32],
    eps: f32,
    tol: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) -> f64 {
    let mut fd = Vec::with_capacity(idx.len());
    let mut an = Vec::with_capacity(idx.len());
    for &i in idx {
        let orig = x[i];
        x[i] = orig + eps;
        let lp = loss(x);
        x[i] = orig - eps;
        let lm = loss(x);
        x[i] = orig;
        fd.push(((lp - lm) / (2.0 * eps as f64)) as f32);
        an.push(analytic[i]);
    }
    let err = rel_err(&an, &fd);
    if err > tol || err.is_nan() {
        let mut worst: Vec<(usize, f32, f32)> = idx
            .iter()
            .zip(fd.iter().zip(&an))
            .map(|(&i, (&f, &a))| (i, f, a))
            .collect();
        worst.sort_by(|a, b| (b.1 - b.2).abs().partial_cmp(&(a.1 - a.2).abs()).unwrap());
        panic!(
            "{what}: finite differences disagree, rel err {err:.3e} > {tol:.0e}; worst (index, fd, analytic): {:?}",
            &worst[..worst.len().min(6)]
        );
    }
    println!("{what}: rel err {err:.2e} over {} entries", idx.len());
    err
}

/// Up to `n` indices spread over 0..len.
pub fn sample_indices(r: &mut ChaCha8Rng, len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    (0..n).map(|_| r.gen_range(0..len)).collect()
}

/// Σ w·y in f64: a scalar loss whose gradient with respect to y is w.
pub fn dot(w: &[f32], y: &[f32]) -> f64 {
    w.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The CUDA device the GPU tests run on, the same test bodies for every device:
/// `PIX2PIX_TEST_DEVICE` when set (`cuda`, `cuda:N`, `cuda-emu`, `cuda-emu:memcheck`, ...); else the
/// real GPU when a CUDA driver is installed; else the emulated CUDA device (device/emu). None (the
/// test prints why and passes) only when that device cannot be had and nothing requires it: a
/// build with PIX2PIX_REQUIRE_CUDA=1 (CI) or PIX2PIX_REQUIRE_GPU set fails instead.
pub fn cuda_device() -> Option<Device> {
    use pix2pix::device::cuda::embedded;
    let spec = std::env::var("PIX2PIX_TEST_DEVICE").ok().unwrap_or_else(|| {
        // SAFETY: only tries to dlopen libcuda and reports whether it could.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            "cuda".into()
        } else {
            "cuda-emu".into()
        }
    });
    match Device::parse(&spec) {
        Ok(d) => {
            println!("device: {}", d.describe());
            Some(d)
        }
        Err(e) => {
            let required = std::env::var_os("PIX2PIX_REQUIRE_GPU").is_some()
                || (embedded::REQUIRED && spec.starts_with("cuda-emu"))
                || std::env::var_os("PIX2PIX_TEST_DEVICE").is_some();
            if required {
                panic!("device {spec} is required but unusable: {e:#}");
            }
            println!("skipped: {spec}: {e:#}");
            None
        }
    }
}
