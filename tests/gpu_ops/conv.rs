//! Conv2d and ConvTranspose2d on the device against the CPU: every role (forward, data gradient
//! written and accumulated, weight gradient), at the unet_256 / PatchGAN / ResNet generator layer
//! shapes and in general geometry.

use super::*;

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
