//! The conv kernel lab's variants (kernels/conv_tiles.cuh: v1 fp32 SIMT, v2 tf32 and v3 bf16 tensor
//! cores, v4 tf32 and v5 bf16 staged by cp.async, v6 bf16 and v7 tf32 on 128×128 tiles) against the CPU
//! reference, for every conv role (forward, data gradient written and accumulated, weight
//! gradient; conv and transposed conv, whose roles are the same three GEMMs swapped) at the layer
//! shapes that matter: k4 s2 p1 down and up, PatchGAN's k4 s1, k3, k7, odd sizes, batch > 1,
//! several tiles (of 64 and of 128) and split-K, with K-chunks and reduction lengths that end
//! inside a K-step. Outputs are poisoned with NaN before each call.
//!
//! Each variant is checked twice:
//! - like for like: against the CPU reference run on operands rounded as the variant rounds them
//!   (`Precision::round`: tf32 cvt.rna, bf16 round to nearest even). Products of rounded operands
//!   are exact in fp32 on both sides, so only the accumulation order differs: the fp32 GEMM
//!   tolerance of tests/gpu_ops/. A wrong fragment layout, a missed rounding or a lane reading
//!   another lane's data fails here.
//! - against the plain fp32 reference: the operand rounding's own error, which must stay under
//!   2u (u the unit roundoff: 2⁻¹¹ tf32, 2⁻⁸ bf16) and, for v2/v3, be above u/50 (so a variant
//!   that silently computed in fp32 fails).
//!
//! On a machine without a GPU these run on the emulated device (device_fns.cuh's host versions of
//! the mma and conversions): verified on the emulator, not on a GPU.

mod common;

use common::{rel_err, rng};
use pix2pix::device::{emu, ConvVariant, Device, Precision};
use pix2pix::ops::conv::{
    conv2d_backward, conv2d_forward, conv_transpose2d_backward, conv_transpose2d_forward, ConvGeom, ConvParams,
};
use pix2pix::tensor::{Shape, Span, Storage, Tensor};

/// The sanitizer builds (5-50× slower) run only cases of up to 2²² multiply-adds: every case of
/// CASES fits, so the multi-tile and split-K paths run under memcheck and racecheck too.
fn fits(work: usize) -> bool {
    const SANITIZED_MAX: usize = 1 << 22;
    let sanitized = matches!(emu::active(), Some(emu::Mode::Memcheck | emu::Mode::Racecheck));
    if sanitized && work > SANITIZED_MAX {
        println!("(case of {work} multiply-adds left out under the sanitizer)");
        return false;
    }
    true
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    transposed: bool,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    /// (k, stride, pad, output_padding)
    geom: (usize, usize, usize, usize),
    bias: bool,
}

const fn conv(
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    bias: bool,
) -> Case {
    Case {
        name,
        transposed: false,
        n,
        cin,
        cout,
        h: hw.0,
        w: hw.1,
        geom: (ksp.0, ksp.1, ksp.2, 0),
        bias,
    }
}

const fn convt(
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    bias: bool,
) -> Case {
    Case {
        transposed: true,
        ..conv(name, n, cin, cout, hw, ksp, bias)
    }
}

const CASES: &[Case] = &[
    conv(
        "unet down k4s2p1, odd sizes, batch 2",
        2,
        5,
        7,
        (9, 11),
        (4, 2, 1),
        false,
    ),
    conv("PatchGAN k4s1p1", 1, 9, 6, (8, 8), (4, 1, 1), true),
    conv("k3s1p1, 2 row tiles", 2, 5, 70, (9, 11), (3, 1, 1), true),
    conv("k7s1p3", 1, 3, 9, (12, 12), (7, 1, 3), true),
    conv("k4s2p1, 2×2 tiles, split-K", 2, 16, 72, (16, 16), (4, 2, 1), false),
    conv("k5s3p2 (generic kernels)", 2, 4, 6, (13, 8), (5, 3, 2), false),
    conv("k1", 3, 17, 5, (5, 6), (1, 1, 0), true),
    convt("unet up k4s2p1, batch 3", 3, 9, 7, (5, 6), (4, 2, 1), true),
    convt("unet up k4s2p1, split-K", 1, 96, 40, (4, 4), (4, 2, 1), false),
    convt("k3s2p1 output_padding 1", 2, 6, 5, (5, 7), (3, 2, 1), true),
    convt("k3s1p1", 2, 20, 5, (7, 9), (3, 1, 1), false),
    conv("k4s2p1, 2×3 tiles of 128", 2, 6, 136, (24, 24), (4, 2, 1), false),
    convt(
        "unet up k4s2p1, 2 row tiles of 128",
        1,
        16,
        130,
        (8, 8),
        (4, 2, 1),
        true,
    ),
];

/// Uniform in ±[0.01, 1], weights scaled by 0.1 (the inputs of tests/gpu_ops/).
fn values(r: &mut rand_chacha::ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    common::random_vec(r, len, 0.01)
        .into_iter()
        .map(|v| v * scale)
        .collect()
}

fn rounded(p: Precision, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| p.round(x)).collect()
}

/// The outputs of one case on `dev`: y, dx (written), dx (accumulated onto dx0), dW (added to
/// grad0), db.
struct Outputs {
    y: Vec<f32>,
    dx: Vec<f32>,
    dx_acc: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

struct Inputs {
    x: Vec<f32>,
    dy: Vec<f32>,
    params: Vec<f32>,
    dx0: Vec<f32>,
    grad0: Vec<f32>,
}

fn run(dev: &Device, c: &Case, geom: &ConvGeom, xs: Shape, ys: Shape, inp: &Inputs, p: &ConvParams) -> Outputs {
    let poison = |s: Shape| dev.upload_tensor(s, &vec![f32::NAN; s.numel()]);
    let x = dev.upload_tensor(xs, &inp.x);
    let dy = dev.upload_tensor(ys, &inp.dy);
    let params = dev.upload(&inp.params);
    let mut y = poison(ys);
    let mut dx = poison(xs);
    let mut dx_acc = dev.upload_tensor(xs, &inp.dx0);
    let mut grads: Storage = dev.upload(&inp.grad0);
    if c.transposed {
        conv_transpose2d_forward(dev, geom, &params, p, &x, &mut y);
        conv_transpose2d_backward(dev, geom, &params, p, Some(&mut grads), &x, &dy, Some(&mut dx), false);
        conv_transpose2d_backward(dev, geom, &params, p, None, &x, &dy, Some(&mut dx_acc), true);
    } else {
        conv2d_forward(dev, geom, &params, p, &x, &mut y);
        conv2d_backward(dev, geom, &params, p, Some(&mut grads), &x, &dy, Some(&mut dx), false);
        conv2d_backward(dev, geom, &params, p, None, &x, &dy, Some(&mut dx_acc), true);
    }
    let g = dev.download(&grads);
    let t = |t: &Tensor| dev.download(&t.data)[..t.numel()].to_vec();
    Outputs {
        y: t(&y),
        dx: t(&dx),
        dx_acc: t(&dx_acc),
        dw: g[p.weight.range()].to_vec(),
        db: p.bias.map_or(vec![], |b| g[b.range()].to_vec()),
    }
}

/// The fp32 GEMM tolerance of tests/gpu_ops/conv.rs: sqrt(k)·2⁻²⁴ growth, 1e-5 up to k = 4096.
fn gemm_tol(k: usize) -> f64 {
    1e-5 * (k as f64 / 4096.0).sqrt().max(1.0)
}

fn check(what: &str, gpu: &[f32], cpu: &[f32], tol: f64) -> f64 {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    if let Some(i) = gpu.iter().position(|v| !v.is_finite()) {
        panic!("{what}: GPU value {i} is {} (CPU {}): not written?", gpu[i], cpu[i]);
    }
    let e = rel_err(gpu, cpu);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.1e}");
    e
}

fn run_variant(variant: ConvVariant) {
    let Some(dev) = common::cuda_device() else { return };
    dev.set_conv_variant(variant).unwrap();
    assert_eq!(dev.conv_variant(), variant);
    let precision = variant.precision();
    let u = precision.unit_roundoff();
    let mut r = rng(13 + variant.number() as u64);
    for c in CASES {
        let (k, s, pad, op) = c.geom;
        let geom = ConvGeom::new(c.cin, c.cout, k, s, pad).with_output_padding(op);
        let xs = Shape::new(c.n, c.cin, c.h, c.w);
        let ys = if c.transposed {
            Shape::new(c.n, c.cout, geom.convt_out(c.h), geom.convt_out(c.w))
        } else {
            Shape::new(c.n, c.cout, geom.conv_out(c.h).unwrap(), geom.conv_out(c.w).unwrap())
        };
        let macs = c.n * c.cin * c.cout * k * k * if c.transposed { c.h * c.w } else { ys.h * ys.w };
        if !fits(macs) {
            continue;
        }
        let wlen = geom.weight_len();
        let off = 3;
        let p = ConvParams {
            weight: Span { off, len: wlen },
            bias: c.bias.then_some(Span {
                off: off + wlen,
                len: c.cout,
            }),
        };
        let total = off + wlen + c.cout + 1;
        let mut params = values(&mut r, total, 1.0);
        params[off..off + wlen].iter_mut().for_each(|v| *v *= 0.1);
        let inp = Inputs {
            x: values(&mut r, xs.numel(), 1.0),
            dy: values(&mut r, ys.numel(), 1.0),
            params,
            dx0: values(&mut r, xs.numel(), 1.0),
            grad0: values(&mut r, total, 1.0),
        };
        // The same inputs with the GEMM operands (x, dy, W) rounded as the variant rounds them;
        // the bias and the accumulated-into values are not operands.
        let mut rparams = inp.params.clone();
        rparams[off..off + wlen].copy_from_slice(&rounded(precision, &inp.params[off..off + wlen]));
        let rinp = Inputs {
            x: rounded(precision, &inp.x),
            dy: rounded(precision, &inp.dy),
            params: rparams,
            dx0: inp.dx0.clone(),
            grad0: inp.grad0.clone(),
        };
        let gpu = run(&dev, c, &geom, xs, ys, &inp, &p);
        // A variant that only restages the tiles of the precision's default variant (v4: v2's
        // operands and mma sequence, v5 and v6: v3's, v7: v2's) must reproduce it bit for bit.
        let twin = precision.variant();
        if twin != variant {
            dev.set_conv_variant(twin).unwrap();
            let base = run(&dev, c, &geom, xs, ys, &inp, &p);
            dev.set_conv_variant(variant).unwrap();
            let outs = |o: &Outputs| [o.y.clone(), o.dx.clone(), o.dx_acc.clone(), o.dw.clone(), o.db.clone()];
            for ((role, a), b) in ["y", "dx", "dx+=", "dW+=", "db"]
                .iter()
                .zip(outs(&gpu))
                .zip(outs(&base))
            {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                assert!(
                    bits(&a) == bits(&b),
                    "{variant} {} {role}: differs from {twin} (same operands and mma sequence)",
                    c.name
                );
            }
        }
        let like = run(&Device::Cpu, c, &geom, xs, ys, &rinp, &p);
        let exact = run(&Device::Cpu, c, &geom, xs, ys, &inp, &p);
        // GEMM reduction lengths (a transposed conv's forward is a conv data gradient).
        let taps = k.div_ceil(s);
        let (k_fwd, k_dx, k_dw) = if c.transposed {
            (c.cin * taps * taps, c.cout * k * k, c.n * c.h * c.w)
        } else {
            (c.cin * k * k, c.cout * taps * taps, c.n * ys.h * ys.w)
        };
        let what = format!("{variant} {} {xs}->{ys}", c.name);
        let mut line = format!("{what:<62}");
        // The accumulated dx and dW add the result onto random values: their relative error is
        // judged against the difference from those values, so it is as strict as the others.
        let minus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<f32>>();
        let w = p.weight.range();
        // (role, GPU, like-for-like reference, fp32 reference, reduction length)
        type Role = (&'static str, Vec<f32>, Vec<f32>, Vec<f32>, usize);
        let roles: [Role; 4] = [
            ("y", gpu.y.clone(), like.y.clone(), exact.y.clone(), k_fwd),
            ("dx", gpu.dx.clone(), like.dx.clone(), exact.dx.clone(), k_dx),
            (
                "dx+=",
                minus(&gpu.dx_acc, &inp.dx0),
                minus(&like.dx_acc, &inp.dx0),
                minus(&exact.dx_acc, &inp.dx0),
                k_dx,
            ),
            (
                "dW+=",
                minus(&gpu.dw, &inp.grad0[w.clone()]),
                minus(&like.dw, &inp.grad0[w.clone()]),
                minus(&exact.dw, &inp.grad0[w.clone()]),
                k_dw,
            ),
        ];
        for (role, g, l, e, klen) in &roles {
            // Subtracting the accumulated-into values costs up to an ulp of them.
            let slack = if role.ends_with("+=") { 4e-7 * 10.0 } else { 0.0 };
            let e_like = check(&format!("{what} {role} (like for like)"), g, l, gemm_tol(*klen) + slack);
            let e_exact = check(
                &format!("{what} {role} (vs fp32)"),
                g,
                e,
                2.0 * u + gemm_tol(*klen) + slack,
            );
            if precision != Precision::Fp32 {
                assert!(
                    e_exact > u / 50.0,
                    "{what} {role}: error {e_exact:.2e} against fp32 is below u/50: were the operands rounded?"
                );
            }
            line += &format!(" {role} {e_like:.1e}/{e_exact:.1e}");
        }
        if c.bias {
            let b = p.bias.unwrap().range();
            check(&format!("{what} db"), &gpu.db, &exact.db, 1e-6);
            assert_eq!(gpu.db.len(), b.len());
        }
        println!("{line}");
    }
}

#[test]
fn v1_fp32() {
    run_variant(ConvVariant::V1);
}

#[test]
fn v2_tf32() {
    run_variant(ConvVariant::V2);
}

#[test]
fn v3_bf16() {
    run_variant(ConvVariant::V3);
}

/// v4 (tf32 through the cp.async pipeline and ldmatrix): against the CPU as v2, and equal to v2
/// bit for bit (run_variant).
#[test]
fn v4_tf32_async() {
    run_variant(ConvVariant::V4);
}

/// v5 (bf16 through v4's pipeline, k-pairs packed as they are read): against the CPU as v3, and
/// equal to v3 bit for bit (run_variant).
#[test]
fn v5_bf16_async() {
    run_variant(ConvVariant::V5);
}

/// v6 (bf16 on 128×128 tiles, K-steps of 32, fragments by ldmatrix from bf16 tiles): against the
/// CPU as v3, and equal to v3 bit for bit (run_variant).
#[test]
fn v6_bf16_128() {
    run_variant(ConvVariant::V6);
}

/// v7 (tf32 on 128×128 tiles, K-steps of 16, fragments by ldmatrix from tf32 tiles): against the
/// CPU as v2, and equal to v2 bit for bit (run_variant).
#[test]
fn v7_tf32_128() {
    run_variant(ConvVariant::V7);
}

/// The CPU reference computes in fp32 only, and says so instead of ignoring the option.
#[test]
fn cpu_refuses_reduced_precision() {
    assert!(Device::Cpu.set_precision(Precision::Fp32).is_ok());
    let e = Device::Cpu.set_precision(Precision::Tf32).unwrap_err();
    assert!(format!("{e}").contains("CPU reference computes in fp32"), "{e}");
    let e = Device::Cpu.set_conv_variant(ConvVariant::V4).unwrap_err();
    assert!(format!("{e}").contains("CPU reference computes in fp32"), "{e}");
}

/// pix2pix unet_128 (ngf = ndf = 8) with batch norm and dropout, as the two precision tests below run it.
fn small_pix2pix() -> pix2pix::models::ModelConfig {
    use pix2pix::models::patchgan::PatchGanConfig;
    use pix2pix::models::pix2pix::Pix2PixOptions;
    use pix2pix::models::unet::UnetConfig;
    use pix2pix::models::ModelConfig;
    use pix2pix::nn::layers::NormKind;
    ModelConfig::Pix2Pix {
        g: UnetConfig::named("unet_128", 8, true, NormKind::Batch).unwrap(),
        d: PatchGanConfig {
            input_nc: 6,
            ndf: 8,
            n_layers: 3,
            norm: NormKind::Batch,
        },
        opt: Pix2PixOptions::default(),
    }
}

/// Every variant that restages its precision's default one (v4, v7: v2; v5, v6: v3) gives a whole
/// training step (pix2pix unet_128 at 128², batch 2: every layer shape, multi-tile and split-K
/// GEMMs, both BN variants) bit for bit equal to it: losses, weights, gradients, Adam moments and
/// running statistics. So the variant is a speed choice only. Left out under the sanitizers.
#[test]
fn variants_of_a_precision_give_identical_steps() {
    use pix2pix::models::graph::StepGraph;
    let Some(dev) = common::cuda_device() else { return };
    if emu::active().is_some_and(|m| m != emu::Mode::Plain) {
        println!("left out under the sanitizers");
        return;
    }
    let cfg = small_pix2pix();
    let shape = Shape::new(2, 3, 128, 128);
    let mut r = rng(5);
    let (a_img, b_img) = (
        common::random_vec(&mut r, shape.numel(), 0.0),
        common::random_vec(&mut r, shape.numel(), 0.0),
    );
    let step = |v: ConvVariant| {
        dev.set_conv_variant(v).unwrap();
        let mut model = cfg.build(&dev, 11).unwrap();
        let model = model.as_mut();
        let a = dev.upload_tensor(shape, &a_img);
        let b = dev.upload_tensor(shape, &b_img);
        model.prepare_step(&dev, 2e-4, shape);
        StepGraph::new(false).run(&dev, model, &a, &b).unwrap();
        let mut out = vec![model.losses(&dev)];
        for (_, ps) in model.networks() {
            for s in [&ps.data, &ps.grad, &ps.adam_m, &ps.adam_v, &ps.buffers] {
                out.push(dev.download(s));
            }
        }
        out
    };
    let bits = |v: &[Vec<f32>]| {
        v.iter()
            .map(|t| t.iter().map(|x| x.to_bits()).collect())
            .collect::<Vec<Vec<u32>>>()
    };
    for v in ConvVariant::ALL {
        let twin = v.precision().variant();
        if twin == v {
            continue;
        }
        let (mine, base) = (step(v), step(twin));
        assert!(mine.len() == base.len() && mine.len() > 1);
        for (i, (m, b)) in bits(&mine).iter().zip(bits(&base)).enumerate() {
            assert!(*m == b, "{v}: tensor {i} of the step (0: losses) differs from {twin}");
        }
        println!(
            "{v}: a pix2pix step equal to {twin}'s bit for bit ({} tensors)",
            mine.len()
        );
    }
}

/// The whole pix2pix step (unet_128, ngf = ndf = 8, 128², batch 1) with each tensor-core variant
/// against the fp32 CPU reference, within `pix2pix gradcheck`'s default tolerance of that
/// precision (`gradcheck::default_tol`, measured in benches/RESULTS.md). Left out under the
/// sanitizers (every kernel of the step runs in the cases above there).
#[test]
fn whole_step_per_precision() {
    use pix2pix::gradcheck::default_tol;
    let Some(dev) = common::cuda_device() else { return };
    if emu::active().is_some_and(|m| m != emu::Mode::Plain) {
        println!("left out under the sanitizers");
        return;
    }
    let cfg = small_pix2pix();
    for p in [Precision::Tf32, Precision::Bf16] {
        dev.set_precision(p).unwrap();
        let rows = pix2pix::gradcheck::run(&cfg, Shape::new(1, 3, 128, 128), 0, &dev, &Device::Cpu).unwrap();
        let worst = rows
            .iter()
            .filter(|r| !r.is_noise())
            .map(|r| r.rel_err)
            .fold(0.0f64, f64::max);
        println!("{p} whole step: {} quantities, worst rel err {worst:.2e}", rows.len());
        for r in &rows {
            assert!(
                r.passes(default_tol(p)),
                "{p}: {} rel err {:.3e} over {:.0e}",
                r.name,
                r.rel_err,
                default_tol(p)
            );
        }
        // The variant really ran: a step through rounded operands is not the fp32 step.
        assert!(
            worst > p.unit_roundoff() / 50.0,
            "{p}: worst {worst:.2e}: were the operands rounded?"
        );
    }
}
