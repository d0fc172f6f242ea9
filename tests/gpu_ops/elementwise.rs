//! Elementwise ops, tensor copies, Adam, losses, the image pool's copies and CycleGAN's reflection
//! padding and residual add on the device against the CPU.

use super::*;

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
// CycleGAN's ops: the image pool's copies, reflection padding, residual add.

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
