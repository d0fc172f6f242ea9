//! Per-kernel benchmark, kernel-lab style: each hot op at real unet_256 / PatchGAN shapes is first
//! checked against the CPU reference (relative error printed), then timed on the device (median
//! of repeated launches, synchronised), and reported as achieved TFLOP/s (convolutions) or GB/s
//! (batch norm, Adam) beside the device's ceilings. On a machine without a GPU it times the CPU
//! reference alone, as the baseline.
//!
//!   cargo bench --bench kernels                          # CPU baseline
//!   cargo bench --bench kernels -- --device cuda         # check + time the CUDA kernels
//!
//! The variant in use is v1 (kernels/conv.cu: 64×64×16 shared-memory fp32 tiles, split-K);
//! new variants get a row each, checked the same way before they are timed.

use pix2pix::device::Device;
use pix2pix::ops::adam::{adam_update, AdamStep};
use pix2pix::ops::conv::{self, ConvGeom, ConvParams};
use pix2pix::ops::norm::{batch_norm_backward, batch_norm_forward_train, BnParams, BnSaved};
use pix2pix::tensor::{Shape, Span, Storage, Tensor};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len)
        .map(|i| (pix2pix::ops::activation::uniform(seed, i as u64) - 0.5) * 2.0)
        .collect()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Median seconds of `f` over `reps` runs after one warm-up, synchronising the device each time.
fn time(dev: &Device, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    dev.synchronize();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            dev.synchronize();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

struct Row {
    name: String,
    err: Option<f64>,
    secs: f64,
    /// (amount, unit): FLOP → TFLOP/s, bytes → GB/s.
    work: (f64, &'static str),
}

#[derive(Clone, Copy)]
enum Which {
    Fwd,
    Dgrad,
    Wgrad,
}

/// One conv (or convT) pass at a real layer shape, on `dev` and (for the check) on the CPU.
#[allow(clippy::too_many_arguments)]
fn conv_row(
    dev: &Device,
    name: &str,
    g: ConvGeom,
    n: usize,
    h: usize,
    transposed: bool,
    which: Which,
    reps: usize,
) -> Row {
    let xs = Shape::new(n, g.cin, h, h);
    let ys = if transposed {
        Shape::new(n, g.cout, g.convt_out(h), g.convt_out(h))
    } else {
        let o = g.conv_out(h).unwrap();
        Shape::new(n, g.cout, o, o)
    };
    let p = ConvParams {
        weight: Span {
            off: 0,
            len: g.weight_len(),
        },
        bias: None,
    };
    let (xv, yv, wv) = (values(xs.numel(), 1), values(ys.numel(), 2), values(g.weight_len(), 3));
    let run = |d: &Device| -> (Vec<f32>, f64) {
        let (x, dy, w) = (d.upload_tensor(xs, &xv), d.upload_tensor(ys, &yv), d.upload(&wv));
        let mut out_t: Tensor = d.zeros_tensor(if matches!(which, Which::Dgrad) { xs } else { ys });
        let mut grads: Storage = d.zeros(g.weight_len());
        let r = if d.is_cuda() { reps } else { reps.min(3) };
        let secs = time(d, r, || match (which, transposed) {
            (Which::Fwd, false) => conv::conv2d_forward(d, &g, &w, &p, &x, &mut out_t),
            (Which::Fwd, true) => conv::conv_transpose2d_forward(d, &g, &w, &p, &x, &mut out_t),
            (Which::Dgrad, false) => conv::conv2d_backward(d, &g, &w, &p, None, &x, &dy, Some(&mut out_t), false),
            (Which::Dgrad, true) => {
                conv::conv_transpose2d_backward(d, &g, &w, &p, None, &x, &dy, Some(&mut out_t), false)
            }
            (Which::Wgrad, false) => {
                pix2pix::ops::tensor::fill(d, &mut grads, 0.0);
                conv::conv2d_backward(d, &g, &w, &p, Some(&mut grads), &x, &dy, None, false)
            }
            (Which::Wgrad, true) => {
                pix2pix::ops::tensor::fill(d, &mut grads, 0.0);
                conv::conv_transpose2d_backward(d, &g, &w, &p, Some(&mut grads), &x, &dy, None, false)
            }
        });
        let v = match which {
            Which::Wgrad => d.download(&grads),
            _ => d.download(&out_t.data),
        };
        (v, secs)
    };
    let (out, secs) = run(dev);
    let err = dev.is_cuda().then(|| rel_err(&out, &run(&Device::Cpu).0));
    // MACs: conv per output pixel, convT per input pixel (SPEC.md §8's true count).
    let pixels = if transposed {
        xs.numel() / g.cin
    } else {
        ys.numel() / g.cout
    };
    let flop = 2.0 * (pixels * g.cin * g.cout * g.k * g.k) as f64;
    let w = match which {
        Which::Fwd => "fwd",
        Which::Dgrad => "dgrad",
        Which::Wgrad => "wgrad",
    };
    Row {
        name: format!("{name} {w} v1"),
        err,
        secs,
        work: (flop, "TFLOP/s"),
    }
}

fn bn_row(dev: &Device, c: usize, n: usize, h: usize, reps: usize) -> Row {
    let s = Shape::new(n, c, h, h);
    let p = BnParams {
        weight: Span { off: 0, len: c },
        bias: Span { off: c, len: c },
        running_mean: Span { off: 0, len: c },
        running_var: Span { off: c, len: c },
        eps: 1e-5,
        momentum: 0.1,
    };
    let (xv, gv, pv) = (values(s.numel(), 4), values(s.numel(), 5), values(2 * c, 6));
    let run = |d: &Device| -> (Vec<f32>, f64) {
        let (x, dy, params) = (d.upload_tensor(s, &xv), d.upload_tensor(s, &gv), d.upload(&pv));
        let mut bufs = d.upload(&[vec![0.0; c], vec![1.0; c]].concat());
        let mut saved = BnSaved {
            mean: d.zeros(c),
            invstd: d.zeros(c),
        };
        let (mut y, mut dx) = (d.zeros_tensor(s), d.zeros_tensor(s));
        let r = if d.is_cuda() { reps } else { reps.min(3) };
        let secs = time(d, r, || {
            batch_norm_forward_train(d, &p, &params, &mut bufs, &x, &mut y, &mut saved);
            batch_norm_backward(d, &p, &params, None, &saved, &x, &dy, &mut dx);
        });
        (d.download(&dx.data), secs)
    };
    let (out, secs) = run(dev);
    let err = dev.is_cuda().then(|| rel_err(&out, &run(&Device::Cpu).0));
    // Forward reads x twice (stats, normalise) and writes y; backward reads x and dy twice, writes dx.
    let bytes = 4.0 * s.numel() as f64 * 8.0;
    Row {
        name: format!("batchnorm fwd+bwd {c}ch {n}x{h}² v1"),
        err,
        secs,
        work: (bytes, "GB/s"),
    }
}

fn adam_row(dev: &Device, len: usize, reps: usize) -> Row {
    let (pv, gv) = (values(len, 7), values(len, 8));
    let run = |d: &Device| -> (Vec<f32>, f64) {
        let (mut p, g, mut m, mut v) = (d.upload(&pv), d.upload(&gv), d.zeros(len), d.zeros(len));
        let s = AdamStep {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            step: 1,
        };
        // The check compares one update from the same state; the timing repeats it.
        adam_update(d, &s, &mut p, &g, &mut m, &mut v);
        let out = d.download(&p);
        let r = if d.is_cuda() { reps } else { reps.min(3) };
        let secs = time(d, r, || adam_update(d, &s, &mut p, &g, &mut m, &mut v));
        (out, secs)
    };
    let (out, secs) = run(dev);
    let err = dev.is_cuda().then(|| rel_err(&out, &run(&Device::Cpu).0));
    Row {
        name: format!("adam fused, {len} params v1"),
        err,
        secs,
        work: (28.0 * len as f64, "GB/s"),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dev = Device::parse(&get("--device").unwrap_or_else(|| "cpu".into()))?;
    let n: usize = get("--batch").map_or(1, |s| s.parse().unwrap());
    let reps: usize = get("--reps").map_or(20, |s| s.parse().unwrap());
    println!(
        "device: {}; batch {n}; ceilings (H200): ~60 TFLOP/s fp32 SIMT, ~4.8 TB/s HBM",
        dev.describe()
    );
    let g = |cin, cout, stride| ConvGeom::new(cin, cout, 4, stride, 1);
    let mut rows = vec![];
    for which in [Which::Fwd, Which::Dgrad, Which::Wgrad] {
        rows.push(conv_row(
            &dev,
            "e2 conv 64→128 @128²",
            g(64, 128, 2),
            n,
            128,
            false,
            which,
            reps,
        ));
        rows.push(conv_row(
            &dev,
            "D C4 conv 256→512 s1 @32²",
            g(256, 512, 1),
            n,
            32,
            false,
            which,
            reps,
        ));
        rows.push(conv_row(
            &dev,
            "e6 conv 512→512 @8²",
            g(512, 512, 2),
            n,
            8,
            false,
            which,
            reps,
        ));
        rows.push(conv_row(
            &dev,
            "d3 convT 512→128 @32²",
            g(512, 128, 2),
            n,
            32,
            true,
            which,
            reps,
        ));
        rows.push(conv_row(
            &dev,
            "d7 convT 1024→512 @2²",
            g(1024, 512, 2),
            n,
            2,
            true,
            which,
            reps,
        ));
    }
    rows.push(bn_row(&dev, 128, n, 64, reps));
    rows.push(bn_row(&dev, 512, n, 16, reps));
    rows.push(adam_row(&dev, 54_413_955, reps.min(10)));
    println!("{:<40} {:>10} {:>12} {:>14}", "kernel", "rel err", "ms", "achieved");
    for r in &rows {
        let err = r.err.map_or("-".into(), |e| format!("{e:.1e}"));
        let rate = r.work.0 / r.secs / if r.work.1 == "TFLOP/s" { 1e12 } else { 1e9 };
        println!(
            "{:<40} {:>10} {:>12.4} {:>9.2} {}",
            r.name,
            err,
            r.secs * 1e3,
            rate,
            r.work.1
        );
    }
    Ok(())
}
