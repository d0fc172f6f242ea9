//! Per-kernel benchmark, kernel-lab style (llm.c's dev/cuda): every conv layer shape of unet_256
//! and the PatchGAN, each role (forward, data gradient, weight gradient), is first checked against
//! the CPU reference for every variant of kernels/conv_tiles.cuh (v1 fp32 SIMT, v2 tf32 and v3 bf16 tensor
//! cores, v4 tf32 and v5 bf16 staged by cp.async, v6 bf16 and v7 tf32 on 128×128 tiles; `--variant`), then the
//! variants are timed side by side in
//! the same run (median of
//! repeated launches, synchronised) and reported as TFLOP/s, the ratio to v1, and the share of the
//! roofline min(peak of that precision, arithmetic intensity × memory bandwidth) of the GPU when
//! its ceilings are known (H100/H200/A100 datasheet figures). Batch norm and Adam get a row each.
//! On a machine without a GPU it times the CPU reference alone, as the baseline. Last, a totals
//! table: per batch, each variant's time summed over the conv rows, as a speedup over v1 and over
//! the precision's default variant (v4 and v7 vs v2; v5 and v6 vs v3).
//!
//!   cargo bench --bench kernels                                  # CPU baseline
//!   cargo bench --bench kernels -- --device cuda --batch 1,8,64  # check + time every variant
//!   cargo bench --bench kernels -- --device cuda-emu             # EMULATED: a reduced shape set
//!
//! Options: --device D, --batch B[,B..] (default 1), --reps N (20; 1 on the emulator), --size S
//! (256, a multiple of 256), --ngf N / --ndf N (64; 4 on the emulator: the reduced shape set),
//! --variant V[,V..] (1-7 or fp32/tf32/bf16 for their default variants; all seven; --precision is
//! the same option),
//! --layers NAME[,NAME..] (a subset, e.g. e2,C4,d3). A variant whose check fails is reported
//! FAILED and not timed; the command then exits non-zero.
//! On the emulated device every time is a host time of the CPU emulation, labelled EMULATED:
//! never a GPU figure.

use pix2pix::device::{ConvVariant, Device, Precision};
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
/// With `reps` 0 it runs `f` once, untimed (for the checks), and returns 0.
fn time(dev: &Device, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    dev.synchronize();
    if reps == 0 {
        return 0.0;
    }
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
    /// None: the check failed, not timed.
    secs: Option<f64>,
    /// (amount, unit): FLOP → TFLOP/s, bytes → GB/s.
    work: (f64, &'static str),
    /// Seconds of v1 on the same shape and role (for the ratio).
    v1_secs: Option<f64>,
    /// The roofline of this row on this GPU, in the row's unit (TFLOP/s or GB/s).
    roof: Option<f64>,
    /// A conv row's batch and variant (for the totals table).
    conv: Option<(usize, ConvVariant)>,
}

/// Datasheet ceilings (dense): fp32 SIMT, tf32 and bf16 tensor TFLOP/s, HBM TB/s.
struct Ceilings {
    gpu: &'static str,
    fp32: f64,
    tf32: f64,
    bf16: f64,
    tb_s: f64,
}

fn ceilings(dev: &Device) -> Option<Ceilings> {
    let Device::Cuda(c) = dev else { return None };
    if c.emulated {
        return None;
    }
    let d = c.describe();
    let table = [
        ("H200", 67.0, 495.0, 989.0, 4.8),
        ("H100", 67.0, 495.0, 989.0, 3.35),
        ("A100", 19.5, 156.0, 312.0, 2.0),
    ];
    table
        .iter()
        .find(|t| d.contains(t.0))
        .map(|&(gpu, fp32, tf32, bf16, tb_s)| Ceilings {
            gpu,
            fp32,
            tf32,
            bf16,
            tb_s,
        })
}

#[derive(Clone, Copy)]
enum Which {
    Fwd,
    Dgrad,
    Wgrad,
}

/// One conv or convT layer at a real shape.
#[derive(Clone)]
struct Layer {
    name: String,
    g: ConvGeom,
    h: usize,
    transposed: bool,
}

/// unet_256's 16 convs and the PatchGAN's 5 at input size `size` (SPEC.md §1a and §2).
fn layers(size: usize, ngf: usize, ndf: usize) -> Vec<Layer> {
    let g = |cin, cout, stride| ConvGeom::new(cin, cout, 4, stride, 1);
    let mut v = vec![];
    let enc = [3, ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf, 8 * ngf, 8 * ngf, 8 * ngf];
    let mut h = size;
    for i in 0..8 {
        v.push(Layer {
            name: format!("e{} conv {}→{} @{h}²", i + 1, enc[i], enc[i + 1]),
            g: g(enc[i], enc[i + 1], 2),
            h,
            transposed: false,
        });
        h /= 2;
    }
    // d8: 8ngf → 8ngf; d7..d2: 2·enc[i+1] → enc[i]; d1: 2ngf → 3.
    for i in (0..8).rev() {
        let cin = if i == 7 { enc[8] } else { 2 * enc[i + 1] };
        v.push(Layer {
            name: format!("d{} convT {cin}→{} @{h}²", i + 1, enc[i]),
            g: g(cin, enc[i], 2),
            h,
            transposed: true,
        });
        h *= 2;
    }
    let dch = [6, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1];
    let mut h = size;
    for i in 0..5 {
        let stride = if i < 3 { 2 } else { 1 };
        v.push(Layer {
            name: format!("C{} conv {}→{} s{stride} @{h}²", i + 1, dch[i], dch[i + 1]),
            g: g(dch[i], dch[i + 1], stride),
            h,
            transposed: false,
        });
        h = ConvGeom::new(1, 1, 4, stride, 1).conv_out(h).unwrap();
    }
    v
}

/// The output of one role of `l` on `d` (weights and inputs from fixed seeds), and its median time.
fn run_conv(d: &Device, l: &Layer, n: usize, which: Which, reps: usize) -> (Vec<f32>, f64) {
    let g = l.g;
    let xs = Shape::new(n, g.cin, l.h, l.h);
    let ys = if l.transposed {
        Shape::new(n, g.cout, g.convt_out(l.h), g.convt_out(l.h))
    } else {
        let o = g.conv_out(l.h).unwrap();
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
    let (x, dy, w) = (d.upload_tensor(xs, &xv), d.upload_tensor(ys, &yv), d.upload(&wv));
    let mut out_t: Tensor = d.zeros_tensor(if matches!(which, Which::Dgrad) { xs } else { ys });
    let mut grads: Storage = d.zeros(g.weight_len());
    let secs = time(d, reps, || match (which, l.transposed) {
        (Which::Fwd, false) => conv::conv2d_forward(d, &g, &w, &p, &x, &mut out_t),
        (Which::Fwd, true) => conv::conv_transpose2d_forward(d, &g, &w, &p, &x, &mut out_t),
        (Which::Dgrad, false) => conv::conv2d_backward(d, &g, &w, &p, None, &x, &dy, Some(&mut out_t), false),
        (Which::Dgrad, true) => conv::conv_transpose2d_backward(d, &g, &w, &p, None, &x, &dy, Some(&mut out_t), false),
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
}

/// The accepted error of a variant against the fp32 CPU reference: its operand rounding (2u, as
/// tests/gpu_conv_variants.rs) plus fp32 accumulation-order growth over the reduction length k.
fn tolerance(p: Precision, k: usize) -> f64 {
    2.0 * p.unit_roundoff() + 1e-5 * (k as f64 / 4096.0).sqrt().max(1.0)
}

/// Rows of one layer and role: every variant on `dev` (checked, then timed), or the CPU alone.
#[allow(clippy::too_many_arguments)]
fn conv_rows(
    dev: &Device,
    l: &Layer,
    n: usize,
    which: Which,
    reps: usize,
    variants: &[ConvVariant],
    ceil: Option<&Ceilings>,
    failed: &mut usize,
) -> Vec<Row> {
    let g = l.g;
    let in_px = n * l.h * l.h;
    let out_px = if l.transposed {
        n * g.convt_out(l.h).pow(2)
    } else {
        n * g.conv_out(l.h).unwrap().pow(2)
    };
    // MACs: conv per output pixel, convT per input pixel (SPEC.md §8's true count).
    let pixels = if l.transposed { in_px } else { out_px };
    let flop = 2.0 * (pixels * g.cin * g.cout * g.k * g.k) as f64;
    // Least memory traffic of the role (fp32 storage): its two inputs and its output, once.
    let bytes = 4.0 * (in_px * g.cin + out_px * g.cout + g.weight_len()) as f64;
    let taps = g.k.div_ceil(g.stride);
    let kname = match which {
        Which::Fwd => "fwd",
        Which::Dgrad => "dgrad",
        Which::Wgrad => "wgrad",
    };
    // Reduction length of the role's GEMM, for the tolerance.
    let klen = match (which, l.transposed) {
        (Which::Fwd, false) | (Which::Dgrad, true) => g.cin * g.k * g.k,
        (Which::Dgrad, false) => g.cout * taps * taps,
        (Which::Fwd, true) => g.cin * taps * taps,
        (Which::Wgrad, _) => pixels,
    };
    let (reference, cpu_secs) = run_conv(&Device::Cpu, l, n, which, if dev.is_cuda() { 0 } else { reps.min(3) });
    if !dev.is_cuda() {
        return vec![Row {
            name: format!("{} {kname} cpu", l.name),
            err: None,
            secs: Some(cpu_secs),
            work: (flop, "TFLOP/s"),
            v1_secs: None,
            roof: None,
            conv: None,
        }];
    }
    let mut rows = vec![];
    let mut v1_secs = None;
    for &v in variants {
        let p = v.precision();
        dev.set_conv_variant(v).expect("conv variant");
        let (out, _) = run_conv(dev, l, n, which, 0);
        let err = rel_err(&out, &reference);
        let ok = err <= tolerance(p, klen);
        if !ok {
            *failed += 1;
        }
        let secs = ok.then(|| run_conv(dev, l, n, which, reps).1);
        if v == ConvVariant::V1 {
            v1_secs = secs;
        }
        let peak = ceil.map(|c| match p {
            Precision::Fp32 => c.fp32,
            Precision::Tf32 => c.tf32,
            Precision::Bf16 => c.bf16,
        });
        let roof = peak.zip(ceil).map(|(pk, c)| pk.min(flop / bytes * c.tb_s));
        rows.push(Row {
            name: format!("{} {kname} {v}", l.name),
            err: Some(err),
            secs,
            work: (flop, "TFLOP/s"),
            v1_secs,
            roof,
            conv: Some((n, v)),
        });
    }
    dev.set_conv_variant(ConvVariant::V1).expect("v1");
    rows
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
            batch_norm_forward_train(d, &p, &params, &mut bufs, &x, &mut y, &mut saved, None);
            batch_norm_backward(d, &p, &params, None, &saved, &x, &dy, &mut dx, None);
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
        secs: Some(secs),
        work: (bytes, "GB/s"),
        v1_secs: None,
        roof: ceilings(dev).map(|c| c.tb_s * 1e3),
        conv: None,
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
        secs: Some(secs),
        work: (28.0 * len as f64, "GB/s"),
        v1_secs: None,
        roof: ceilings(dev).map(|c| c.tb_s * 1e3),
        conv: None,
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
    let list = |flag: &str| get(flag).map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>());
    let dev = Device::parse(&get("--device").unwrap_or_else(|| "cpu".into()))?;
    let emulated = matches!(&dev, Device::Cuda(c) if c.emulated);
    let batches: Vec<usize> = list("--batch").map_or(vec![1], |v| v.iter().map(|s| s.parse().unwrap()).collect());
    let reps: usize = get("--reps").map_or(if emulated { 1 } else { 20 }, |s| s.parse().unwrap());
    let size: usize = get("--size").map_or(256, |s| s.parse().unwrap());
    anyhow::ensure!(
        size.is_multiple_of(256),
        "--size must be a multiple of 256 (unet_256 halves it 8 times)"
    );
    let ngf: usize = get("--ngf").map_or(if emulated { 4 } else { 64 }, |s| s.parse().unwrap());
    let ndf: usize = get("--ndf").map_or(ngf, |s| s.parse().unwrap());
    // `--variant 1,4` (or precision names, for their default variants); every variant by default.
    let variants: Vec<ConvVariant> = match list("--variant").or_else(|| list("--precision")) {
        Some(v) => v.iter().map(|s| ConvVariant::parse(s)).collect::<anyhow::Result<_>>()?,
        None => ConvVariant::ALL.to_vec(),
    };
    let only = list("--layers");
    let ceil = ceilings(&dev);
    println!(
        "device: {}; batch {batches:?}; unet_256 + PatchGAN convs at {size}², ngf {ngf}, ndf {ndf}",
        dev.describe()
    );
    match &ceil {
        Some(c) => println!(
            "ceilings ({} datasheet, dense): fp32 {} / tf32 {} / bf16 {} TFLOP/s, {} TB/s; roof = min(peak, intensity × bandwidth)",
            c.gpu, c.fp32, c.tf32, c.bf16, c.tb_s
        ),
        None if emulated => println!(
            "EMULATED: times are host times of the CPU emulation of the kernels, NOT GPU figures; \
             the checks are real"
        ),
        None => println!("ceilings: unknown for this device (no roofline column)"),
    }
    let mut failed = 0;
    let mut rows = vec![];
    for &n in &batches {
        for l in layers(size, ngf, ndf) {
            let short = l.name.split(' ').next().unwrap().to_string();
            if only.as_ref().is_some_and(|o| !o.contains(&short)) {
                continue;
            }
            for which in [Which::Fwd, Which::Dgrad, Which::Wgrad] {
                let mut r = conv_rows(&dev, &l, n, which, reps, &variants, ceil.as_ref(), &mut failed);
                for row in &mut r {
                    row.name = format!("b{n} {}", row.name);
                }
                rows.extend(r);
            }
        }
    }
    let n = batches[0];
    if only.is_none() {
        rows.push(bn_row(&dev, 128, n, size / 4, reps));
        rows.push(bn_row(&dev, 512, n, size / 16, reps));
        rows.push(adam_row(
            &dev,
            if emulated { 1 << 20 } else { 54_413_955 },
            reps.min(10),
        ));
    }
    let label = if emulated { "EMULATED ms" } else { "ms" };
    println!(
        "{:<52} {:>9} {:>12} {:>10} {:>9} {:>8} {:>7}",
        "kernel", "rel err", label, "achieved", "unit", "× v1", "% roof"
    );
    for r in &rows {
        let err = r.err.map_or("-".into(), |e| format!("{e:.1e}"));
        let scale = if r.work.1 == "TFLOP/s" { 1e12 } else { 1e9 };
        let Some(secs) = r.secs else {
            println!("{:<52} {:>9} {:>12}", r.name, err, "FAILED");
            continue;
        };
        let rate = r.work.0 / secs / scale;
        // On the emulator a rate or ratio would read like a GPU figure: times only.
        let (rate_s, ratio) = if emulated {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{rate:.3}"),
                r.v1_secs.map_or("-".into(), |v| format!("{:.2}", v / secs)),
            )
        };
        let roof = r.roof.map_or("-".into(), |x| format!("{:.1}", 100.0 * rate / x));
        println!(
            "{:<52} {:>9} {:>12.4} {:>10} {:>9} {:>8} {:>7}",
            r.name,
            err,
            secs * 1e3,
            rate_s,
            r.work.1,
            ratio,
            roof
        );
    }
    if dev.is_cuda() {
        conv_totals(&rows, &variants, emulated);
    }
    if failed > 0 {
        anyhow::bail!("{failed} variant checks failed against the CPU reference");
    }
    Ok(())
}

/// The answer the table above spreads over many rows: per batch, each variant's time summed over
/// every conv layer and role benchmarked (each layer once; in a training step the PatchGAN's run
/// three times), beside v1's and beside the default variant of the same precision (v4 against v2
/// and v5 against v3: whether the cp.async pipeline pays; v6 against v3 and v7 against v2:
/// whether 128×128 tiles do). A variant with a failed check has no total.
fn conv_totals(rows: &[Row], variants: &[ConvVariant], emulated: bool) {
    let mut batches: Vec<usize> = rows.iter().filter_map(|r| r.conv.map(|c| c.0)).collect();
    batches.dedup();
    let total = |n: usize, v: ConvVariant| -> Option<f64> {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.conv == Some((n, v))).collect();
        mine.iter()
            .map(|r| r.secs)
            .sum::<Option<f64>>()
            .filter(|_| !mine.is_empty())
    };
    let label = if emulated { "EMULATED ms" } else { "ms" };
    println!();
    println!("conv totals (sum of the rows above per batch and variant; ratios are speedups)");
    println!(
        "{:>6} {:<10} {:>12} {:>8} {:>14}",
        "batch", "variant", label, "× v1", "× its twin"
    );
    for &n in &batches {
        for &v in variants {
            let Some(t) = total(n, v) else {
                println!("{n:>6} {:<10} {:>12}", v.to_string(), "FAILED");
                continue;
            };
            let twin = v.precision().variant();
            let ratio = |base: Option<f64>| match base {
                Some(b) if !emulated => format!("{:.2}", b / t),
                _ => "-".to_string(),
            };
            let vs_twin = if twin == v {
                "-".to_string()
            } else {
                format!("{} (vs v{})", ratio(total(n, twin)), twin.number())
            };
            println!(
                "{n:>6} {:<10} {:>12.3} {:>8} {:>14}",
                v.to_string(),
                t * 1e3,
                ratio(total(n, ConvVariant::V1)),
                vs_twin
            );
        }
    }
}
