//! Every op on CUDA against the CPU reference, forward and backward, on random non-zero inputs of
//! several shapes (including real unet_256 / PatchGAN layer shapes). GPU outputs are poisoned with
//! NaN before each call, so an element a kernel forgets to write fails the test. The relative error
//! ‖gpu − cpu‖/‖cpu‖ is printed for every comparison (run with --nocapture to see them).
//!
//! They run on the real GPU when a CUDA driver is installed and otherwise on the emulated CUDA
//! device (`cuda-emu`: the same kernels, launchers and driver calls, on the CPU); PIX2PIX_TEST_DEVICE
//! picks one (e.g. `cuda-emu:memcheck`). A test skips, printing why, only when its device cannot
//! be had and the build did not require CUDA. `embedded_ptx` checks the build itself.
//!
//! Tolerances: 1e-5 unless noted. Elementwise ops, Adam and the dropout mask are bit-for-bit
//! identical by construction (-fmad=false, same expressions), so they are held to 0 or to a few
//! ulps where a libm function (tanh, exp) is involved. Reductions in f64 (batch norm, losses)
//! differ from the CPU's sequential order only in the last bits of an f64.

mod common;

use common::{rel_err, rng};
use pix2pix::device::cuda::embedded;
use pix2pix::device::{emu, Device};
use pix2pix::ops::activation::{activation_backward, activation_forward, dropout_forward, mul, Act};
use pix2pix::ops::adam::{adam_update, AdamStep};
use pix2pix::ops::conv::{
    conv2d_backward, conv2d_forward, conv_transpose2d_backward, conv_transpose2d_forward, ConvGeom, ConvParams,
};
use pix2pix::ops::loss::{gan_loss, l1_loss, LossKind, LossOut};
use pix2pix::ops::norm::{
    batch_norm_backward, batch_norm_forward_eval, batch_norm_forward_train, instance_norm_backward,
    instance_norm_forward, BnSaved,
};
use pix2pix::ops::tensor::{
    add, copy, extract_channels, fill, insert_channels, reflection_pad_backward, reflection_pad_forward,
};
use pix2pix::tensor::{Shape, Span, Storage, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The CUDA device under test (a real GPU, else the emulated one; see common::cuda_device).
fn gpu() -> Option<Device> {
    common::cuda_device()
}

/// The sanitizer builds of the emulator (memcheck, racecheck) are 5-50× slower than the plain one,
/// so there only the cases of up to `SANITIZED_MAX` elements (multiply-adds for a conv) run; every
/// kernel and code path still runs, on the small odd shapes each test also has.
fn fits(work: usize) -> bool {
    const SANITIZED_MAX: usize = 1 << 18;
    let sanitized = matches!(emu::active(), Some(emu::Mode::Memcheck | emu::Mode::Racecheck));
    if sanitized && work > SANITIZED_MAX {
        println!("(case of {work} elements left out under the sanitizer)");
        return false;
    }
    true
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(d) => d,
            None => return,
        }
    };
}

fn rand_vec(r: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    common::random_vec(r, len, 0.01)
}

/// The same values on the CPU and on the GPU.
fn pair(g: &Device, shape: Shape, v: &[f32]) -> (Tensor, Tensor) {
    (Device::Cpu.upload_tensor(shape, v), g.upload_tensor(shape, v))
}

fn rand_pair(g: &Device, r: &mut ChaCha8Rng, shape: Shape) -> (Tensor, Tensor) {
    let v = rand_vec(r, shape.numel());
    pair(g, shape, &v)
}

/// A CPU output (zeros) and a GPU output poisoned with NaN.
fn outputs(g: &Device, shape: Shape) -> (Tensor, Tensor) {
    (
        Device::Cpu.zeros_tensor(shape),
        g.upload_tensor(shape, &vec![f32::NAN; shape.numel()]),
    )
}

fn nan_storage(g: &Device, len: usize) -> Storage {
    g.upload(&vec![f32::NAN; len])
}

fn down(g: &Device, s: &Storage, len: usize) -> Vec<f32> {
    let mut v = g.download(s);
    v.truncate(len);
    v
}

/// Prints and checks ‖gpu − cpu‖/‖cpu‖ ≤ tol (and that the GPU wrote finite values).
fn check(what: &str, gpu: &[f32], cpu: &[f32], tol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    if let Some(i) = gpu.iter().position(|v| !v.is_finite()) {
        panic!("{what}: GPU value {i} is {} (CPU {})", gpu[i], cpu[i]);
    }
    let e = rel_err(gpu, cpu);
    println!("{what:<60} rel err {e:.3e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:e}");
}

fn check_t(what: &str, g: &Device, gpu: &Tensor, cpu: &Tensor, tol: f64) {
    assert_eq!(gpu.shape, cpu.shape);
    check(what, &down(g, &gpu.data, gpu.numel()), cpu.cpu(), tol);
}

// ---------------------------------------------------------------------------------------------
// Elementwise

#[test]
fn activations() {
    let g = gpu_or_skip!();
    let mut r = rng(1);
    for shape in [
        Shape::new(2, 3, 5, 7),
        Shape::new(1, 64, 128, 128),
        Shape::new(1, 1024, 2, 2),
    ] {
        if !fits(shape.numel()) {
            continue;
        }
        for a in [Act::LeakyRelu(0.2), Act::Relu, Act::Tanh, Act::Sigmoid] {
            let (xc, xg) = rand_pair(&g, &mut r, shape);
            let (mut yc, mut yg) = outputs(&g, shape);
            activation_forward(&Device::Cpu, a, &xc, &mut yc);
            activation_forward(&g, a, &xg, &mut yg);
            // LeakyReLU/ReLU are exact; tanh/sigmoid go through libm vs CUDA's expf/tanhf (≤ 2 ulp).
            let tol = if matches!(a, Act::Tanh | Act::Sigmoid) {
                1e-6
            } else {
                0.0
            };
            check_t(&format!("{a:?} forward {shape}"), &g, &yg, &yc, tol);

            let (dyc, dyg) = rand_pair(&g, &mut r, shape);
            let (mut dxc, mut dxg) = outputs(&g, shape);
            activation_backward(&Device::Cpu, a, &xc, &yc, &dyc, &mut dxc);
            // Backward from the CPU's y so that only the backward kernel is compared.
            let yg2 = g.upload_tensor(shape, yc.cpu());
            activation_backward(&g, a, &xg, &yg2, &dyg, &mut dxg);
            check_t(&format!("{a:?} backward {shape}"), &g, &dxg, &dxc, 0.0);
        }
    }
}

#[test]
fn dropout_and_mul() {
    let g = gpu_or_skip!();
    let mut r = rng(2);
    for (shape, seed) in [
        (Shape::new(1, 512, 4, 4), 7u64),
        (Shape::new(1, 512, 16, 16), 0xDEAD_BEEF_1234_5678),
        (Shape::new(3, 5, 7, 9), u64::MAX),
    ] {
        if !fits(shape.numel()) {
            continue;
        }
        let (xc, xg) = rand_pair(&g, &mut r, shape);
        let (mut yc, mut yg) = outputs(&g, shape);
        let (mut mc, mut mg) = outputs(&g, shape);
        dropout_forward(&Device::Cpu, 0.5, seed, &xc, &mut yc, &mut mc);
        dropout_forward(&g, 0.5, seed, &xg, &mut yg, &mut mg);
        let mask = down(&g, &mg.data, shape.numel());
        assert_eq!(mask, mc.cpu(), "dropout mask differs from the CPU's (seed {seed})");
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / mask.len() as f64;
        println!("dropout {shape} seed {seed}: kept {kept:.3}");
        check_t(&format!("dropout forward {shape}"), &g, &yg, &yc, 0.0);

        let (dyc, dyg) = rand_pair(&g, &mut r, shape);
        let (mut dxc, mut dxg) = outputs(&g, shape);
        mul(&Device::Cpu, &dyc, &mc, &mut dxc);
        mul(&g, &dyg, &mg, &mut dxg);
        check_t(&format!("mul (dropout backward) {shape}"), &g, &dxg, &dxc, 0.0);
    }
}

#[test]
fn fill_copy_concat_split() {
    let g = gpu_or_skip!();
    let mut r = rng(3);
    let mut s = nan_storage(&g, 1001);
    fill(&g, &mut s, 0.25);
    assert!(down(&g, &s, 1001).iter().all(|&v| v == 0.25), "fill");

    for (n, c1, c2, h, w) in [(1, 512, 512, 2, 2), (1, 64, 64, 128, 128), (3, 3, 5, 7, 9)] {
        if !fits(n * (c1 + c2) * h * w) {
            continue;
        }
        let (s1, s2, sc) = (
            Shape::new(n, c1, h, w),
            Shape::new(n, c2, h, w),
            Shape::new(n, c1 + c2, h, w),
        );
        let (ac, ag) = rand_pair(&g, &mut r, s1);
        let (bc, bg) = rand_pair(&g, &mut r, s2);
        let (mut cc, mut cg) = outputs(&g, sc);
        for dev_is_gpu in [false, true] {
            let (dev, a, b, c) = if dev_is_gpu {
                (&g, &ag, &bg, &mut cg)
            } else {
                (&Device::Cpu, &ac, &bc, &mut cc)
            };
            insert_channels(dev, a, c, 0);
            insert_channels(dev, b, c, c1);
        }
        check_t(&format!("concat {s1} + {s2}"), &g, &cg, &cc, 0.0);

        // split, once written and once accumulated onto random values
        for acc in [false, true] {
            let init = rand_vec(&mut r, s2.numel());
            let (mut dc, mut dg) = if acc { pair(&g, s2, &init) } else { outputs(&g, s2) };
            extract_channels(&Device::Cpu, &cc, c1, &mut dc, acc);
            extract_channels(&g, &cg, c1, &mut dg, acc);
            check_t(&format!("split {sc} at {c1} accumulate={acc}"), &g, &dg, &dc, 0.0);
        }
        for acc in [false, true] {
            let init = rand_vec(&mut r, s1.numel());
            let (mut dc, mut dg) = if acc { pair(&g, s1, &init) } else { outputs(&g, s1) };
            copy(&Device::Cpu, &ac, &mut dc, acc);
            copy(&g, &ag, &mut dg, acc);
            check_t(&format!("copy {s1} accumulate={acc}"), &g, &dg, &dc, 0.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adam

#[test]
fn adam() {
    let g = gpu_or_skip!();
    let mut r = rng(4);
    let len = 100_003;
    let p0 = rand_vec(&mut r, len);
    let (mut pc, mut pg) = (Device::Cpu.upload(&p0), g.upload(&p0));
    let (mut mc, mut mg) = (Device::Cpu.zeros(len), g.zeros(len));
    let (mut vc, mut vg) = (Device::Cpu.zeros(len), g.zeros(len));
    for step in 1..=5u64 {
        let gr: Vec<f32> = rand_vec(&mut r, len).iter().map(|v| v * 1e-2).collect();
        let (gc, gg) = (Device::Cpu.upload(&gr), g.upload(&gr));
        let s = AdamStep {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            step,
        };
        adam_update(&Device::Cpu, &s, &mut pc, &gc, &mut mc, &mut vc);
        adam_update(&g, &s, &mut pg, &gg, &mut mg, &mut vg);
    }
    // Identical f32 expressions without contraction: bit-exact.
    check("adam param after 5 steps", &down(&g, &pg, len), pc.cpu(), 0.0);
    check("adam m after 5 steps", &down(&g, &mg, len), mc.cpu(), 0.0);
    check("adam v after 5 steps", &down(&g, &vg, len), vc.cpu(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Losses

#[test]
fn losses() {
    let g = gpu_or_skip!();
    let mut r = rng(5);
    for shape in [
        Shape::new(1, 1, 30, 30),
        Shape::new(4, 1, 14, 14),
        Shape::new(1, 3, 256, 256),
    ] {
        if !fits(shape.numel()) {
            continue;
        }
        let scaled: Vec<f32> = rand_vec(&mut r, shape.numel()).iter().map(|v| v * 4.0).collect();
        let (xc, xg) = pair(&g, shape, &scaled);
        for (kind, target) in [
            (LossKind::BceWithLogits, 0.0),
            (LossKind::BceWithLogits, 1.0),
            (LossKind::Mse, 1.0),
        ] {
            for with_dx in [true, false] {
                let out = LossOut {
                    slot: 2,
                    weight: 1.0,
                    grad_weight: 0.5,
                };
                let mut lc = Device::Cpu.zeros(4);
                let mut lg = nan_storage(&g, 4);
                let (mut dc, mut dg) = outputs(&g, shape);
                gan_loss(
                    &Device::Cpu,
                    kind,
                    &xc,
                    target,
                    out,
                    &mut lc,
                    with_dx.then_some(&mut dc),
                );
                gan_loss(&g, kind, &xg, target, out, &mut lg, with_dx.then_some(&mut dg));
                let what = format!("{kind:?} target {target} {shape}");
                // f64 sums in a different order: the f32 value agrees to an ulp.
                check(&format!("{what} value"), &down(&g, &lg, 4)[2..3], &lc.cpu()[2..3], 1e-6);
                if with_dx {
                    // sigmoid through expf vs libm exp: a few ulps.
                    check_t(&format!("{what} dx"), &g, &dg, &dc, 1e-6);
                }
            }
        }
        let (yc, yg) = rand_pair(&g, &mut r, shape);
        let out = LossOut {
            slot: 0,
            weight: 100.0,
            grad_weight: 100.0,
        };
        let mut lc = Device::Cpu.zeros(4);
        let mut lg = nan_storage(&g, 4);
        let (mut dc, mut dg) = outputs(&g, shape);
        l1_loss(&Device::Cpu, &xc, &yc, out, &mut lc, Some(&mut dc));
        l1_loss(&g, &xg, &yg, out, &mut lg, Some(&mut dg));
        check(
            &format!("L1 {shape} value"),
            &down(&g, &lg, 4)[0..1],
            &lc.cpu()[0..1],
            1e-6,
        );
        check_t(&format!("L1 {shape} dx"), &g, &dg, &dc, 0.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Batch norm

#[test]
fn batch_norm() {
    let g = gpu_or_skip!();
    let mut r = rng(6);
    for shape in [
        Shape::new(1, 128, 64, 64),
        Shape::new(1, 512, 16, 16),
        Shape::new(1, 512, 2, 2),
        Shape::new(4, 8, 5, 3),
        // Few channels with many values: the v2 kernels, S blocks per channel (4 here; 2 with
        // an uneven last chunk below).
        Shape::new(8, 4, 64, 64),
        Shape::new(3, 5, 61, 67),
    ] {
        if !fits(shape.numel()) {
            continue;
        }
        let c = shape.c;
        let p = common::bn_params_at_offsets(c);
        let mut params = rand_vec(&mut r, 3 + 2 * c);
        for v in &mut params[3..3 + c] {
            *v += 1.0; // gamma near 1
        }
        let mut bufs = rand_vec(&mut r, 1 + 2 * c);
        for v in &mut bufs[1 + c..] {
            *v = v.abs() + 0.5; // running var positive
        }
        let (pc, pg) = (Device::Cpu.upload(&params), g.upload(&params));
        let (mut bc, mut bg) = (Device::Cpu.upload(&bufs), g.upload(&bufs));
        // Inputs with a non-zero mean per channel, to exercise the two-pass variance.
        let xv: Vec<f32> = rand_vec(&mut r, shape.numel())
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i / shape.hw()) % c) as f32 * 0.1)
            .collect();
        let (xc, xg) = pair(&g, shape, &xv);
        let (mut yc, mut yg) = outputs(&g, shape);
        let mut sc = BnSaved {
            mean: Device::Cpu.zeros(c),
            invstd: Device::Cpu.zeros(c),
        };
        let mut sg = BnSaved {
            mean: nan_storage(&g, c),
            invstd: nan_storage(&g, c),
        };
        batch_norm_forward_train(&Device::Cpu, &p, &pc, &mut bc, &xc, &mut yc, &mut sc, None);
        let Device::Cuda(cb) = &g else { unreachable!() };
        cb.set_profiling(true);
        batch_norm_forward_train(&g, &p, &pg, &mut bg, &xg, &mut yg, &mut sg, None);
        // Which variant ran: v2 for few channels with many values each (ops/norm.rs bn_splits).
        let ran: Vec<&str> = cb.collect_kernel_times().iter().map(|k| k.name).collect();
        cb.set_profiling(false);
        let v2 = shape.c <= 8 && shape.n * shape.hw() >= 8192;
        let expect = if v2 { "bn_split_apply" } else { "bn_forward_train" };
        if std::env::var_os("PIX2PIX_BN_VARIANT").is_none() {
            assert!(ran.contains(&expect), "{shape}: expected {expect}, ran {ran:?}");
        }
        check_t(&format!("bn train forward {shape} y"), &g, &yg, &yc, 1e-6);
        check(
            &format!("bn train forward {shape} mean"),
            &down(&g, &sg.mean, c),
            sc.mean.cpu(),
            1e-6,
        );
        check(
            &format!("bn train forward {shape} invstd"),
            &down(&g, &sg.invstd, c),
            sc.invstd.cpu(),
            1e-6,
        );
        check(
            &format!("bn train forward {shape} running stats"),
            &down(&g, &bg, bufs.len()),
            bc.cpu(),
            1e-6,
        );

        let (mut ec, mut eg) = outputs(&g, shape);
        batch_norm_forward_eval(&Device::Cpu, &p, &pc, &bc, &xc, &mut ec, None);
        batch_norm_forward_eval(&g, &p, &pg, &bg, &xg, &mut eg, None);
        check_t(&format!("bn eval forward {shape}"), &g, &eg, &ec, 1e-6);

        // Backward from the CPU's saved statistics so only the backward kernel is compared.
        let sg = BnSaved {
            mean: g.upload(sc.mean.cpu()),
            invstd: g.upload(sc.invstd.cpu()),
        };
        let (dyc, dyg) = rand_pair(&g, &mut r, shape);
        for with_grads in [true, false] {
            let g0 = rand_vec(&mut r, params.len());
            let (mut gc, mut gg) = (Device::Cpu.upload(&g0), g.upload(&g0));
            let (mut dxc, mut dxg) = outputs(&g, shape);
            batch_norm_backward(
                &Device::Cpu,
                &p,
                &pc,
                with_grads.then_some(&mut gc),
                &sc,
                &xc,
                &dyc,
                &mut dxc,
                None,
            );
            batch_norm_backward(
                &g,
                &p,
                &pg,
                with_grads.then_some(&mut gg),
                &sg,
                &xg,
                &dyg,
                &mut dxg,
                None,
            );
            // dx = k·(M·dy − Σdy − x̂·Σdy·x̂) cancels: f64 sums in another order move the result by
            // ~1e-16 relative to M·dy, i.e. well below 1e-6 of dx.
            check_t(
                &format!("bn backward {shape} dx (grads {with_grads})"),
                &g,
                &dxg,
                &dxc,
                1e-6,
            );
            check(
                &format!("bn backward {shape} dgamma/dbeta (grads {with_grads})"),
                &down(&g, &gg, params.len()),
                gc.cpu(),
                1e-6,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conv2d / ConvTranspose2d

struct ConvCase {
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    op: usize,
    bias: bool,
}

const fn case(
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    bias: bool,
) -> ConvCase {
    ConvCase {
        name,
        n,
        cin,
        cout,
        h: hw.0,
        w: hw.1,
        k: ksp.0,
        s: ksp.1,
        p: ksp.2,
        op: 0,
        bias,
    }
}

/// Weight (+ bias) at an offset inside a larger parameter buffer, with matching gradient buffers
/// pre-filled with random values (the backward adds into them).
struct ParamSet {
    p: ConvParams,
    cpu: Storage,
    gpu: Storage,
    grad0: Vec<f32>,
}

fn conv_params(g: &Device, r: &mut ChaCha8Rng, wlen: usize, blen: Option<usize>) -> ParamSet {
    let off = 5;
    let weight = Span { off, len: wlen };
    let bias = blen.map(|len| Span { off: off + wlen, len });
    let total = off + wlen + blen.unwrap_or(0) + 2;
    let mut v = rand_vec(r, total);
    v[off..off + wlen].iter_mut().for_each(|x| *x *= 0.1);
    let grad0 = rand_vec(r, total);
    ParamSet {
        p: ConvParams { weight, bias },
        cpu: Device::Cpu.upload(&v),
        gpu: g.upload(&v),
        grad0,
    }
}

/// Tolerance for an fp32 GEMM reducing over `k` terms. Both sides accumulate in f32 in different
/// orders (gemm crate blocks vs 16-wide K tiles and split-K on the GPU), so the relative error grows
/// like sqrt(k)·2⁻²⁴: 1e-5 up to k = 4096, scaled by sqrt(k/4096) beyond (e.g. the weight gradient
/// of e1, which sums over 128² output pixels, or e5's forward with k = 512·16).
fn gemm_tol(k: usize) -> f64 {
    1e-5 * (k as f64 / 4096.0).sqrt().max(1.0)
}

/// Runs forward and backward (weights + dx written + dx accumulated) on both devices.
fn run_conv_case(g: &Device, r: &mut ChaCha8Rng, c: &ConvCase, transposed: bool) {
    if !fits(c.n * c.cin * c.cout * c.h * c.w * c.k * c.k / (c.s * c.s)) {
        return;
    }
    let geom = ConvGeom {
        cin: c.cin,
        cout: c.cout,
        k: c.k,
        stride: c.s,
        pad: c.p,
        output_padding: c.op,
    };
    let xs = Shape::new(c.n, c.cin, c.h, c.w);
    let ys = if transposed {
        Shape::new(c.n, c.cout, geom.convt_out(c.h), geom.convt_out(c.w))
    } else {
        Shape::new(c.n, c.cout, geom.conv_out(c.h).unwrap(), geom.conv_out(c.w).unwrap())
    };
    let kind = if transposed { "convT" } else { "conv" };
    let what = format!("{kind} {} {xs}->{ys} k{} s{} p{}", c.name, c.k, c.s, c.p);
    let ps = conv_params(g, r, geom.weight_len(), c.bias.then_some(c.cout));
    let (xc, xg) = rand_pair(g, r, xs);

    let (mut yc, mut yg) = outputs(g, ys);
    if transposed {
        conv_transpose2d_forward(&Device::Cpu, &geom, &ps.cpu, &ps.p, &xc, &mut yc);
        conv_transpose2d_forward(g, &geom, &ps.gpu, &ps.p, &xg, &mut yg);
    } else {
        conv2d_forward(&Device::Cpu, &geom, &ps.cpu, &ps.p, &xc, &mut yc);
        conv2d_forward(g, &geom, &ps.gpu, &ps.p, &xg, &mut yg);
    }
    // Reduction lengths of the three GEMMs (a transposed conv's forward is a conv data gradient).
    let taps = c.k.div_ceil(c.s);
    let (k_fwd, k_dx, k_dw) = if transposed {
        (c.cin * taps * taps, c.cout * c.k * c.k, c.n * c.h * c.w)
    } else {
        (c.cin * c.k * c.k, c.cout * taps * taps, c.n * ys.h * ys.w)
    };
    check_t(&format!("{what} forward"), g, &yg, &yc, gemm_tol(k_fwd));

    let (dyc, dyg) = rand_pair(g, r, ys);
    for accumulate in [false, true] {
        let dx0 = rand_vec(r, xs.numel());
        let (mut dxc, mut dxg) = if accumulate { pair(g, xs, &dx0) } else { outputs(g, xs) };
        let mut gc = Device::Cpu.upload(&ps.grad0);
        let mut gg = g.upload(&ps.grad0);
        // Weight gradients only on the first pass (the second checks dx accumulation alone).
        let (gcr, ggr) = if accumulate {
            (None, None)
        } else {
            (Some(&mut gc), Some(&mut gg))
        };
        if transposed {
            conv_transpose2d_backward(
                &Device::Cpu,
                &geom,
                &ps.cpu,
                &ps.p,
                gcr,
                &xc,
                &dyc,
                Some(&mut dxc),
                accumulate,
            );
            conv_transpose2d_backward(g, &geom, &ps.gpu, &ps.p, ggr, &xg, &dyg, Some(&mut dxg), accumulate);
        } else {
            conv2d_backward(
                &Device::Cpu,
                &geom,
                &ps.cpu,
                &ps.p,
                gcr,
                &xc,
                &dyc,
                Some(&mut dxc),
                accumulate,
            );
            conv2d_backward(g, &geom, &ps.gpu, &ps.p, ggr, &xg, &dyg, Some(&mut dxg), accumulate);
        }
        check_t(
            &format!("{what} dx (accumulate {accumulate})"),
            g,
            &dxg,
            &dxc,
            gemm_tol(k_dx),
        );
        let gdown = down(g, &gg, ps.grad0.len());
        if accumulate {
            assert_eq!(gdown, ps.grad0, "{what}: gradients touched when not asked for");
        } else {
            let w = ps.p.weight.range();
            // The weight gradient sums over every output pixel of the batch (k up to 16384).
            check(&format!("{what} dW"), &gdown[w.clone()], &gc.cpu()[w], gemm_tol(k_dw));
            if let Some(b) = ps.p.bias {
                check(&format!("{what} db"), &gdown[b.range()], &gc.cpu()[b.range()], 1e-6);
            }
        }
    }
}

#[test]
fn conv2d_unet_and_patchgan_shapes() {
    let g = gpu_or_skip!();
    let mut r = rng(7);
    for c in [
        case("e1", 1, 3, 64, (256, 256), (4, 2, 1), false),
        case("e2", 1, 64, 128, (128, 128), (4, 2, 1), false),
        case("e5", 1, 512, 512, (16, 16), (4, 2, 1), false),
        case("e8", 1, 512, 512, (2, 2), (4, 2, 1), false),
        case("D C1", 1, 6, 64, (256, 256), (4, 2, 1), true),
        case("D C4", 1, 256, 512, (32, 32), (4, 1, 1), false),
        case("D C5", 1, 512, 1, (31, 31), (4, 1, 1), true),
    ] {
        run_conv_case(&g, &mut r, &c, false);
    }
}

#[test]
fn conv2d_general_geometry() {
    let g = gpu_or_skip!();
    let mut r = rng(8);
    for c in [
        case("batch2 k4s2", 2, 5, 7, (9, 11), (4, 2, 1), true),
        case("k3s1p1", 2, 5, 70, (9, 11), (3, 1, 1), true),
        case("k3s2p0", 3, 17, 9, (10, 7), (3, 2, 0), false),
        case("k1", 2, 33, 65, (5, 6), (1, 1, 0), true),
        case("k5s3p2", 2, 4, 6, (13, 8), (5, 3, 2), false),
        case("k7s1p3", 1, 3, 64, (20, 20), (7, 1, 3), true),
        case("k2s2", 2, 8, 8, (8, 8), (2, 2, 0), false),
        case("batch4 unet e3", 4, 128, 256, (64, 64), (4, 2, 1), false),
    ] {
        run_conv_case(&g, &mut r, &c, false);
    }
}

#[test]
fn conv_transpose2d_unet_shapes() {
    let g = gpu_or_skip!();
    let mut r = rng(9);
    for c in [
        case("d8", 1, 512, 512, (1, 1), (4, 2, 1), false),
        case("d5", 1, 1024, 512, (8, 8), (4, 2, 1), false),
        case("d3", 1, 512, 128, (32, 32), (4, 2, 1), false),
        case("d2", 1, 256, 64, (64, 64), (4, 2, 1), false),
        case("d1", 1, 128, 3, (128, 128), (4, 2, 1), true),
    ] {
        run_conv_case(&g, &mut r, &c, true);
    }
}

#[test]
fn conv_transpose2d_general_geometry() {
    let g = gpu_or_skip!();
    let mut r = rng(10);
    let mut with_op = case("k3s2p1 output_padding 1", 2, 6, 5, (5, 7), (3, 2, 1), true);
    with_op.op = 1;
    for c in [
        case("batch3 k4s2p1", 3, 9, 7, (5, 6), (4, 2, 1), true),
        case("k3s1p1", 2, 70, 5, (9, 11), (3, 1, 1), true),
        case("k3s2p0", 2, 17, 9, (4, 5), (3, 2, 0), false),
        case("k5s3p2", 2, 4, 6, (5, 4), (5, 3, 2), false),
        case("k2s2", 2, 8, 8, (4, 4), (2, 2, 0), true),
        case("k1", 2, 33, 65, (5, 6), (1, 1, 0), false),
        with_op,
    ] {
        run_conv_case(&g, &mut r, &c, true);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole training step (`pix2pix gradcheck`): G forward, D step, G step, both Adams.

/// One step of a small pix2pix (unet_128, ngf = ndf = 8, 128²) and a small CycleGAN (resnet_6blocks,
/// ngf = ndf = 8, 64², pool 0) on the device and on the CPU: every
/// loss, fake_B, every gradient, running statistic and updated weight within 1e-3 (the tolerance
/// of `pix2pix gradcheck`; gradients that are zero up to rounding, as biases before an
/// InstanceNorm, by their absolute error; measured: ≤ 7e-6 at batch 1-4). Batch 4 runs with seed 1: with seed 0
/// the D step crosses a LeakyReLU/BatchNorm sensitivity that moves D's gradients by 4e-3 (order-
/// independent: the same under every block order, so not a race; see benches/RESULTS.md).
#[test]
fn whole_step_gradcheck() {
    use pix2pix::models::cyclegan::CycleGanOptions;
    use pix2pix::models::patchgan::PatchGanConfig;
    use pix2pix::models::pix2pix::Pix2PixOptions;
    use pix2pix::models::resnet::ResnetConfig;
    use pix2pix::models::unet::UnetConfig;
    use pix2pix::models::ModelConfig;
    use pix2pix::nn::layers::NormKind;
    let g = gpu_or_skip!();
    if emu::active() == Some(emu::Mode::Racecheck) {
        // ~5 min under ThreadSanitizer; every kernel of the step runs in the per-op tests there.
        println!("left out under racecheck");
        return;
    }
    let d = |input_nc, norm| PatchGanConfig {
        input_nc,
        ndf: 8,
        n_layers: 3,
        norm,
    };
    let pix2pix = ModelConfig::Pix2Pix {
        g: UnetConfig::named("unet_128", 8, true, NormKind::Batch).unwrap(),
        d: d(6, NormKind::Batch),
        opt: Pix2PixOptions::default(),
    };
    let cycle_gan = ModelConfig::CycleGan {
        g: ResnetConfig::named("resnet_6blocks", 8, NormKind::Instance, false).unwrap(),
        d: d(3, NormKind::Instance),
        opt: CycleGanOptions {
            pool_size: 0,
            ..CycleGanOptions::default()
        },
    };
    for (name, cfg, batch, size, seed) in [
        ("pix2pix", &pix2pix, 1, 128, 0u64),
        ("pix2pix", &pix2pix, 4, 128, 1),
        ("cycle_gan", &cycle_gan, 1, 64, 0),
    ] {
        if !fits(batch * 3 * size * size * 4) {
            continue;
        }
        let shape = Shape::new(batch, 3, size, size);
        let rows = pix2pix::gradcheck::run(cfg, shape, seed, &g, &Device::Cpu).unwrap();
        let worst = rows
            .iter()
            .filter(|r| !r.is_noise())
            .map(|r| r.rel_err)
            .fold(0.0f64, f64::max);
        println!(
            "{name} whole step, batch {batch} at {size}², seed {seed}: {} quantities, worst rel err {worst:.2e}",
            rows.len()
        );
        for r in &rows {
            assert!(
                r.passes(1e-3),
                "{name} batch {batch}: {} rel err {:.3e}, max |Δ| {:.3e}",
                r.name,
                r.rel_err,
                r.max_abs_err
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CycleGAN's ops: reflection padding, residual add, instance norm, the ResNet generator's convs.

/// The image pool's copies (ops::tensor::pool_exchange) with a plan that stores, swaps, passes
/// and, within one batch, reads a slot an earlier image has just stored into.
#[test]
fn pool_exchange_follows_its_plan() {
    use pix2pix::device::step_values::StepValues;
    use pix2pix::ops::tensor::pool_exchange;
    let g = gpu_or_skip!();
    let mut r = rng(14);
    let s = Shape::new(5, 3, 9, 7);
    let ps = Shape::new(4, 3, 9, 7);
    // (source, store) per image: store in 2; swap with 1; pass; swap with 2 (just stored); store in 0.
    let plan = [-1, 2, 1, 1, -1, -1, 2, 2, -1, 0];
    let (fc, fg) = rand_pair(&g, &mut r, s);
    let pool0 = rand_vec(&mut r, ps.numel());
    let (mut pc, mut pg) = pair(&g, ps, &pool0);
    let (mut oc, mut og) = outputs(&g, s);
    let mut plan_c = StepValues::new(&Device::Cpu, plan.len());
    plan_c.set(&Device::Cpu, &plan);
    let mut plan_g = StepValues::new(&g, plan.len());
    plan_g.set(&g, &plan);
    pool_exchange(&Device::Cpu, &plan_c, &fc, &mut pc, &mut oc);
    pool_exchange(&g, &plan_g, &fg, &mut pg, &mut og);
    check_t("pool_exchange out", &g, &og, &oc, 0.0);
    check_t("pool_exchange pool", &g, &pg, &pc, 0.0);
    // The plan's meaning, on the CPU result: image 3 gets image 0 (stored in slot 2 just before).
    let chw = s.chw();
    let (f, o, p) = (fc.cpu(), oc.cpu(), pc.cpu());
    assert_eq!(&o[3 * chw..4 * chw], &f[..chw]);
    assert_eq!(
        &o[chw..2 * chw],
        &pool0[chw..2 * chw],
        "image 1 gets slot 1's old image"
    );
    assert_eq!(&p[2 * chw..3 * chw], &f[3 * chw..4 * chw], "slot 2 ends with image 3");
    assert_eq!(&p[..chw], &f[4 * chw..], "slot 0 holds image 4");
    assert_eq!(&p[3 * chw..], &pool0[3 * chw..], "slot 3 untouched");
}

#[test]
fn reflection_pad_and_residual_add() {
    let g = gpu_or_skip!();
    let mut r = rng(12);
    for (s, pad) in [
        (Shape::new(1, 3, 128, 128), 3), // the generator's first ReflectionPad(3)
        (Shape::new(1, 256, 32, 32), 1), // a ResNet block's ReflectionPad(1)
        (Shape::new(2, 5, 7, 9), 3),
        (Shape::new(1, 2, 2, 3), 1),
    ] {
        let ys = Shape::new(s.n, s.c, s.h + 2 * pad, s.w + 2 * pad);
        let (xc, xg) = rand_pair(&g, &mut r, s);
        let (mut yc, mut yg) = outputs(&g, ys);
        reflection_pad_forward(&Device::Cpu, pad, &xc, &mut yc);
        reflection_pad_forward(&g, pad, &xg, &mut yg);
        check_t(&format!("reflection pad {pad} forward {s}"), &g, &yg, &yc, 0.0);
        // The backward gathers in the same order on both devices: identical results.
        let (dyc, dyg) = rand_pair(&g, &mut r, ys);
        for accumulate in [false, true] {
            let dx0 = rand_vec(&mut r, s.numel());
            let (mut dxc, mut dxg) = if accumulate { pair(&g, s, &dx0) } else { outputs(&g, s) };
            reflection_pad_backward(&Device::Cpu, pad, &dyc, &mut dxc, accumulate);
            reflection_pad_backward(&g, pad, &dyg, &mut dxg, accumulate);
            check_t(
                &format!("reflection pad {pad} backward {s} (accumulate {accumulate})"),
                &g,
                &dxg,
                &dxc,
                0.0,
            );
        }
        let (bc, bg) = rand_pair(&g, &mut r, s);
        let (mut oc, mut og) = outputs(&g, s);
        add(&Device::Cpu, &xc, &bc, &mut oc);
        add(&g, &xg, &bg, &mut og);
        check_t(&format!("add {s}"), &g, &og, &oc, 0.0);
    }
}

#[test]
fn instance_norm() {
    let g = gpu_or_skip!();
    let mut r = rng(13);
    for shape in [
        Shape::new(1, 64, 128, 128),
        Shape::new(1, 256, 32, 32),
        Shape::new(3, 5, 7, 3),
        Shape::new(2, 4, 1, 2),
    ] {
        let planes = shape.n * shape.c;
        // A non-zero mean per plane, to exercise the two-pass variance.
        let xv: Vec<f32> = rand_vec(&mut r, shape.numel())
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i / shape.hw()) as f32 * 0.1)
            .collect();
        let (xc, xg) = pair(&g, shape, &xv);
        let (mut yc, mut yg) = outputs(&g, shape);
        let mut sc = BnSaved {
            mean: Device::Cpu.zeros(planes),
            invstd: Device::Cpu.zeros(planes),
        };
        let mut sg = BnSaved {
            mean: nan_storage(&g, planes),
            invstd: nan_storage(&g, planes),
        };
        instance_norm_forward(&Device::Cpu, 1e-5, &xc, &mut yc, &mut sc, None);
        instance_norm_forward(&g, 1e-5, &xg, &mut yg, &mut sg, None);
        check_t(&format!("instance norm forward {shape} y"), &g, &yg, &yc, 1e-6);
        check(
            &format!("instance norm forward {shape} mean"),
            &down(&g, &sg.mean, planes),
            sc.mean.cpu(),
            1e-6,
        );
        check(
            &format!("instance norm forward {shape} invstd"),
            &down(&g, &sg.invstd, planes),
            sc.invstd.cpu(),
            1e-6,
        );
        // Backward from the CPU's saved statistics so only the backward kernel is compared.
        let sg = BnSaved {
            mean: g.upload(sc.mean.cpu()),
            invstd: g.upload(sc.invstd.cpu()),
        };
        let (dyc, dyg) = rand_pair(&g, &mut r, shape);
        let (mut dxc, mut dxg) = outputs(&g, shape);
        instance_norm_backward(&Device::Cpu, &sc, &xc, &dyc, &mut dxc, None);
        instance_norm_backward(&g, &sg, &xg, &dyg, &mut dxg, None);
        check_t(&format!("instance norm backward {shape} dx"), &g, &dxg, &dxc, 1e-6);
    }
}

#[test]
fn conv_resnet_generator_shapes() {
    // resnet_9blocks at 128² (ngf 64), k3/k7 on their specialised kernels (conv_*_k3/k7,
    // conv_dgrad_t3/t7), and the output_padding-1 convTs.
    let g = gpu_or_skip!();
    let mut r = rng(14);
    for c in [
        case("c7 in", 1, 3, 64, (134, 134), (7, 1, 0), true),
        case("down 1", 1, 64, 128, (128, 128), (3, 2, 1), true),
        case("down 2", 1, 128, 256, (64, 64), (3, 2, 1), true),
        case("block conv", 1, 256, 256, (34, 34), (3, 1, 0), true),
        case("c7 out", 1, 64, 3, (134, 134), (7, 1, 0), true),
        case("batch2 k3s1p1", 2, 9, 17, (11, 7), (3, 1, 1), false),
        case("batch2 k7s1p3", 2, 5, 6, (9, 12), (7, 1, 3), false),
    ] {
        run_conv_case(&g, &mut r, &c, false);
    }
    for mut c in [
        case("up 1", 1, 256, 128, (32, 32), (3, 2, 1), true),
        case("up 2", 1, 128, 64, (64, 64), (3, 2, 1), true),
        case("batch2 up", 2, 7, 5, (5, 9), (3, 2, 1), true),
    ] {
        c.op = 1;
        run_conv_case(&g, &mut r, &c, true);
    }
    for c in [
        case("convT k3s1p1", 2, 6, 9, (7, 8), (3, 1, 1), true),
        case("convT k7s1p3", 1, 5, 4, (9, 9), (7, 1, 3), false),
    ] {
        run_conv_case(&g, &mut r, &c, true);
    }
}

// ---------------------------------------------------------------------------------------------
// The build itself (no GPU needed)

/// With PIX2PIX_REQUIRE_CUDA=1 at build time the table must hold every family for every arch; when
/// nvcc was found, ptxas (beside it) must accept each PTX for its own architecture.
#[test]
fn embedded_ptx() {
    let table = embedded::PTX_TABLE;
    println!(
        "nvcc: {:?}; {} PTX embedded; archs {:?}",
        embedded::NVCC,
        table.len(),
        embedded::archs()
    );
    if embedded::REQUIRED {
        assert!(!table.is_empty(), "PIX2PIX_REQUIRE_CUDA=1 but no PTX embedded");
    }
    if table.is_empty() {
        println!("skipped: built without nvcc (CPU-only build)");
        return;
    }
    let families: std::collections::BTreeSet<&str> = table.iter().map(|e| e.family).collect();
    for f in ["activation", "adam", "conv", "loss", "norm", "tensor"] {
        assert!(families.contains(f), "family {f} missing from the embedded PTX");
    }
    for s in embedded::sets() {
        assert_eq!(s.entries().count(), families.len(), "{s} lacks some families");
    }
    for e in table {
        let what = format!("{} sm_{} {}", e.toolchain, e.arch, e.family);
        assert!(e.text().contains(".entry"), "{what}: no kernel entry in the PTX");
        assert!(
            e.text().contains(&format!(".target sm_{}", e.arch)),
            "{what}: wrong .target"
        );
        assert!(
            e.text().contains(&format!(".version {}.{}", e.isa.0, e.isa.1)),
            "{what}: the table's ISA {:?} is not the PTX's",
            e.isa
        );
    }
    if embedded::REQUIRED {
        // A shipped build loads under CUDA 12 drivers too (CUDA 12's NVRTC).
        let old_driver = embedded::sets().into_iter().any(|s| s.isa.0 == 8);
        assert!(
            old_driver,
            "PIX2PIX_REQUIRE_CUDA=1 but no PTX ISA 8.x (CUDA 12 drivers) embedded"
        );
    }
    // ptxas on every PTX for its own arch: CUDA 12's ($PTXAS12, as .ci/install-cuda.sh exports it)
    // for ISA 8.x when set, else nvcc's (CUDA 13 in CI), which lacks sm_70.
    let ptxas = std::path::Path::new(embedded::NVCC_PATH).with_file_name("ptxas");
    if !ptxas.is_file() {
        println!("skipped ptxas check: {} not found", ptxas.display());
        return;
    }
    let ptxas12 = std::env::var_os("PTXAS12").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for e in table {
        let path = dir.path().join(format!("{}_{}.ptx", e.family, e.arch));
        std::fs::write(&path, e.text()).unwrap();
        let ptxas = match &ptxas12 {
            Some(p) if e.isa.0 == 8 => p,
            _ => &ptxas,
        };
        let out = std::process::Command::new(ptxas)
            .arg(format!("-arch=sm_{}", e.arch))
            .arg("-o")
            .arg(dir.path().join("out.cubin"))
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !e.toolchain.starts_with("nvcc") && err.contains("not defined for option") {
            println!(
                "{} sm_{} {}: this ptxas has no sm_{}",
                e.toolchain, e.arch, e.family, e.arch
            );
            continue;
        }
        assert!(
            out.status.success(),
            "ptxas rejected {} sm_{} {}:\n{err}",
            e.toolchain,
            e.arch,
            e.family
        );
        checked += 1;
    }
    println!("ptxas accepted {checked} of {} PTX", table.len());
}

/// A random check that the test inputs are what they claim (non-zero), so a kernel that writes
/// zeros cannot pass against a zero reference.
#[test]
fn inputs_are_nonzero() {
    let mut r = rng(11);
    let v = rand_vec(&mut r, 1000);
    assert!(v.iter().all(|x| x.abs() >= 0.01));
    let _: f32 = r.gen();
}
