//! Batch norm (train and eval, both kernel variants) and instance norm on the device against the CPU.

use super::*;

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
