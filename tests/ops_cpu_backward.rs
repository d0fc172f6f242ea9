//! Every CPU op's backward against central finite differences on small random shapes.
//! The loss is Σ r·y for a random r, accumulated in f64 over the f32 forward; linear ops (conv,
//! convT, concat) have no truncation error, so their bound is tight; nonlinear ones use a small
//! step and a bound that leaves room for f32 rounding in the forward.

mod common;
use common::*;
use pix2pix::device::Device;
use pix2pix::ops::activation::{activation_backward, activation_forward, dropout_forward, mul, Act};
use pix2pix::ops::adam::{adam_update, AdamStep};
use pix2pix::ops::conv::{self, ConvGeom, ConvParams};
use pix2pix::ops::loss::{gan_loss, l1_loss, LossKind, LossOut};
use pix2pix::ops::norm::{
    batch_norm_backward, batch_norm_forward_eval, batch_norm_forward_train, instance_norm_backward,
    instance_norm_forward, BnParams, BnSaved,
};
use pix2pix::ops::tensor::{add, extract_channels, insert_channels, reflection_pad_backward, reflection_pad_forward};
use pix2pix::tensor::{Shape, Span, Storage, Tensor};

const CPU: Device = Device::Cpu;

fn conv_case(seed: u64, n: usize, g: ConvGeom, h: usize, w: usize, bias: bool, transposed: bool) {
    let mut r = rng(seed);
    let wlen = g.weight_len();
    let p = ConvParams {
        weight: Span { off: 0, len: wlen },
        bias: bias.then_some(Span { off: wlen, len: g.cout }),
    };
    let mut params = random_vec(&mut r, wlen + if bias { g.cout } else { 0 }, 0.0);
    let xs = Shape::new(n, g.cin, h, w);
    let ys = if transposed {
        Shape::new(n, g.cout, g.convt_out(h), g.convt_out(w))
    } else {
        Shape::new(n, g.cout, g.conv_out(h).unwrap(), g.conv_out(w).unwrap())
    };
    let mut xv = random_vec(&mut r, xs.numel(), 0.0);
    let rv = random_vec(&mut r, ys.numel(), 0.0);
    let fwd = |params: &[f32], xv: &[f32]| -> f64 {
        let mut y = CPU.zeros_tensor(ys);
        let ps = Storage::Cpu(params.to_vec());
        let x = cpu_tensor(xs, xv.to_vec());
        if transposed {
            conv::conv_transpose2d_forward(&CPU, &g, &ps, &p, &x, &mut y);
        } else {
            conv::conv2d_forward(&CPU, &g, &ps, &p, &x, &mut y);
        }
        dot(&rv, y.cpu())
    };
    // Analytic gradients; dx is accumulated onto a non-zero start to test `accumulate_dx`.
    let x = cpu_tensor(xs, xv.clone());
    let dy = cpu_tensor(ys, rv.clone());
    let start = random_vec(&mut r, xs.numel(), 0.0);
    let mut dx = cpu_tensor(xs, start.clone());
    let mut grads = Storage::Cpu(vec![0.0; params.len()]);
    let ps = Storage::Cpu(params.clone());
    if transposed {
        conv::conv_transpose2d_backward(&CPU, &g, &ps, &p, Some(&mut grads), &x, &dy, Some(&mut dx), true);
    } else {
        conv::conv2d_backward(&CPU, &g, &ps, &p, Some(&mut grads), &x, &dy, Some(&mut dx), true);
    }
    let dxv: Vec<f32> = dx.cpu().iter().zip(&start).map(|(a, b)| a - b).collect();
    let name = format!("{} {:?} x {xs}", if transposed { "convT" } else { "conv" }, g);
    let idx = sample_indices(&mut r, xv.len(), 60);
    let pcopy = params.clone();
    check_fd(&format!("{name} dx"), &mut xv, &idx, &dxv, 1e-2, 1e-3, |xv| {
        fwd(&pcopy, xv)
    });
    let idx = sample_indices(&mut r, params.len(), 60);
    let xcopy = xv.clone();
    check_fd(
        &format!("{name} dW/db"),
        &mut params,
        &idx,
        grads.cpu(),
        1e-2,
        1e-3,
        |pv| fwd(pv, &xcopy),
    );
    if bias {
        let idx: Vec<usize> = (wlen..wlen + g.cout).collect();
        check_fd(
            &format!("{name} db"),
            &mut params,
            &idx,
            grads.cpu(),
            1e-2,
            1e-3,
            |pv| fwd(pv, &xcopy),
        );
    }
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    conv_case(1, 2, ConvGeom::new(3, 4, 4, 2, 1), 8, 8, false, false); // the networks' k4 s2 p1
    conv_case(2, 1, ConvGeom::new(5, 3, 4, 1, 1), 7, 6, true, false); // D's k4 s1 p1, odd sizes
    conv_case(3, 2, ConvGeom::new(2, 3, 3, 1, 0), 5, 5, true, false); // general k/s/p
    conv_case(4, 1, ConvGeom::new(2, 2, 7, 1, 3), 6, 9, false, false);
}

#[test]
fn conv_transpose2d_backward_matches_finite_differences() {
    conv_case(5, 2, ConvGeom::new(4, 3, 4, 2, 1), 4, 4, false, true); // the U-Net's k4 s2 p1
    conv_case(6, 1, ConvGeom::new(3, 2, 4, 2, 1), 3, 5, true, true); // with bias (d1)
    conv_case(7, 2, ConvGeom::new(2, 3, 3, 2, 1), 4, 3, true, true);
    conv_case(8, 1, ConvGeom::new(3, 2, 4, 2, 1), 1, 1, false, true); // the innermost 1×1 input
}

#[test]
fn conv_transpose_with_output_padding() {
    let mut g = ConvGeom::new(3, 2, 3, 2, 1);
    g.output_padding = 1; // CycleGAN's up-sampling convT
    conv_case(9, 2, g, 4, 4, true, true);
    // Non-square input, and the output size doubles exactly (ResNet generator layers 13-14).
    let g = ConvGeom::new(4, 3, 3, 2, 1).with_output_padding(1);
    assert_eq!((g.convt_out(5), g.convt_out(3)), (10, 6));
    conv_case(13, 1, g, 5, 3, false, true);
}

#[test]
fn resnet_generator_convs() {
    // ResNet generator geometries: 7×7 on a reflect-padded input (p 0), 3×3 s2 p1 down-sampling,
    // 3×3 s1 p0 in the blocks (after ReflectionPad(1)).
    conv_case(14, 2, ConvGeom::new(3, 4, 7, 1, 0), 9, 10, true, false);
    conv_case(15, 1, ConvGeom::new(3, 5, 3, 2, 1), 8, 6, true, false);
    conv_case(16, 2, ConvGeom::new(4, 4, 3, 1, 0), 6, 6, true, false);
}

fn reflect_pad(x: &Tensor, pad: usize) -> Tensor {
    let s = x.shape;
    let mut y = CPU.zeros_tensor(Shape::new(s.n, s.c, s.h + 2 * pad, s.w + 2 * pad));
    reflection_pad_forward(&CPU, pad, x, &mut y);
    y
}

#[test]
fn reflection_pad_values_match_pytorch_reflect() {
    // torch.nn.ReflectionPad2d(2)(torch.arange(1., 4.).view(1, 1, 1, 3)) needs H > 2, so use a
    // 3×3 plane: row [1 2 3] pads to [3 2 1 2 3 2 1], and rows mirror the same way.
    let x = cpu_tensor(Shape::new(1, 1, 3, 3), (1..=9).map(|v| v as f32).collect());
    let y = reflect_pad(&x, 2);
    let row = |r: usize| y.cpu()[r * 7..(r + 1) * 7].to_vec();
    assert_eq!(row(2), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
    assert_eq!(row(0), vec![9.0, 8.0, 7.0, 8.0, 9.0, 8.0, 7.0]); // padded row 0 = input row 2
    assert_eq!(row(6), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]); // padded row 6 = input row 0
    assert_eq!(row(4), vec![9.0, 8.0, 7.0, 8.0, 9.0, 8.0, 7.0]);
    // Pad 1 of a 2×2 plane (the largest pad it allows), and a second sample/channel.
    let x = cpu_tensor(Shape::new(1, 2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let y = reflect_pad(&x, 1);
    assert_eq!(
        y.cpu()[16..32],
        [8.0, 7.0, 8.0, 7.0, 6.0, 5.0, 6.0, 5.0, 8.0, 7.0, 8.0, 7.0, 6.0, 5.0, 6.0, 5.0]
    );
}

#[test]
fn reflection_pad_backward_is_the_adjoint() {
    let mut r = rng(41);
    for (s, pad) in [
        (Shape::new(2, 3, 5, 4), 3),
        (Shape::new(1, 2, 4, 7), 1),
        (Shape::new(1, 1, 2, 2), 1),
        (Shape::new(1, 2, 6, 6), 0),
    ] {
        let mut xv = random_vec(&mut r, s.numel(), 0.0);
        let ys = Shape::new(s.n, s.c, s.h + 2 * pad, s.w + 2 * pad);
        let rv = random_vec(&mut r, ys.numel(), 0.0);
        let start = random_vec(&mut r, s.numel(), 0.0);
        let mut dx = cpu_tensor(s, start.clone());
        reflection_pad_backward(&CPU, pad, &cpu_tensor(ys, rv.clone()), &mut dx, true);
        let g: Vec<f32> = dx.cpu().iter().zip(&start).map(|(a, b)| a - b).collect();
        let idx: Vec<usize> = (0..s.numel()).collect();
        check_fd(
            &format!("reflection pad {pad} {s}"),
            &mut xv,
            &idx,
            &g,
            1e-2,
            1e-4,
            |xv| dot(&rv, reflect_pad(&cpu_tensor(s, xv.to_vec()), pad).cpu()),
        );
        // Written (not accumulated) backward equals the accumulated one minus its start.
        let mut dx2 = CPU.zeros_tensor(s);
        reflection_pad_backward(&CPU, pad, &cpu_tensor(ys, rv), &mut dx2, false);
        assert!(rel_err(dx2.cpu(), &g) < 1e-6);
    }
}

fn in_case(seed: u64, s: Shape) {
    let mut r = rng(seed);
    let saved = || BnSaved {
        mean: CPU.zeros(s.n * s.c),
        invstd: CPU.zeros(s.n * s.c),
    };
    // Per-plane offsets and scales, so that the statistics differ between planes.
    let mut xv: Vec<f32> = random_vec(&mut r, s.numel(), 0.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i / s.hw()) as f32 * 0.5) + (i / s.hw()) as f32 * 0.3)
        .collect();
    let rv = random_vec(&mut r, s.numel(), 0.0);
    let fwd = |xv: &[f32]| {
        let mut y = CPU.zeros_tensor(s);
        instance_norm_forward(&CPU, 1e-5, &cpu_tensor(s, xv.to_vec()), &mut y, &mut saved(), None);
        dot(&rv, y.cpu())
    };
    let x = cpu_tensor(s, xv.clone());
    let mut y = CPU.zeros_tensor(s);
    let mut sv = saved();
    instance_norm_forward(&CPU, 1e-5, &x, &mut y, &mut sv, None);
    // Every plane has mean 0 and biased variance var/(var + eps) after the norm.
    for plane in 0..s.n * s.c {
        let v = &y.cpu()[plane * s.hw()..(plane + 1) * s.hw()];
        let mean = v.iter().map(|&a| a as f64).sum::<f64>() / s.hw() as f64;
        let xs = &xv[plane * s.hw()..(plane + 1) * s.hw()];
        let xm = xs.iter().map(|&a| a as f64).sum::<f64>() / s.hw() as f64;
        let var = xs.iter().map(|&a| (a as f64 - xm).powi(2)).sum::<f64>() / s.hw() as f64;
        let yvar = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / s.hw() as f64;
        assert!(mean.abs() < 1e-6, "plane {plane} mean {mean}");
        assert!((yvar - var / (var + 1e-5)).abs() < 1e-5, "plane {plane} var {yvar}");
        assert!((sv.mean.cpu()[plane] as f64 - xm).abs() < 1e-6);
    }
    let mut dx = CPU.zeros_tensor(s);
    instance_norm_backward(&CPU, &sv, &x, &cpu_tensor(s, rv.clone()), &mut dx, None);
    let idx = sample_indices(&mut r, xv.len(), 80);
    check_fd(
        &format!("instance norm dx {s}"),
        &mut xv,
        &idx,
        dx.cpu(),
        1e-3,
        5e-3,
        fwd,
    );
}

#[test]
fn instance_norm_backward_matches_finite_differences() {
    in_case(42, Shape::new(2, 3, 4, 5));
    in_case(43, Shape::new(1, 4, 2, 2));
    in_case(44, Shape::new(3, 2, 1, 3)); // 1×3 planes
}

#[test]
fn instance_norm_is_batch_norm_at_batch_one() {
    // SPEC §9 item 3: BN at batch 1 (train mode, gamma 1, beta 0) normalises exactly like IN.
    let mut r = rng(45);
    let s = Shape::new(1, 3, 5, 4);
    let x = random_tensor(&mut r, s);
    let mut yi = CPU.zeros_tensor(s);
    let mut si = BnSaved {
        mean: CPU.zeros(3),
        invstd: CPU.zeros(3),
    };
    instance_norm_forward(&CPU, 1e-5, &x, &mut yi, &mut si, None);
    let p = BnParams {
        weight: Span { off: 0, len: 3 },
        bias: Span { off: 3, len: 3 },
        running_mean: Span { off: 0, len: 3 },
        running_var: Span { off: 3, len: 3 },
        eps: 1e-5,
        momentum: 0.1,
    };
    let params = Storage::Cpu([vec![1.0; 3], vec![0.0; 3]].concat());
    let mut bufs = Storage::Cpu(vec![0.0; 6]);
    let mut sb = BnSaved {
        mean: CPU.zeros(3),
        invstd: CPU.zeros(3),
    };
    let mut yb = CPU.zeros_tensor(s);
    batch_norm_forward_train(&CPU, &p, &params, &mut bufs, &x, &mut yb, &mut sb, None);
    assert_eq!(yi.cpu(), yb.cpu());
}

#[test]
fn residual_add() {
    let mut r = rng(46);
    let s = Shape::new(2, 3, 4, 5);
    let (a, b) = (random_tensor(&mut r, s), random_tensor(&mut r, s));
    let mut y = CPU.zeros_tensor(s);
    add(&CPU, &a, &b, &mut y);
    for i in 0..s.numel() {
        assert_eq!(y.cpu()[i], a.cpu()[i] + b.cpu()[i]);
    }
}

fn bn_case(seed: u64, s: Shape) {
    let mut r = rng(seed);
    let c = s.c;
    let p = BnParams {
        weight: Span { off: 0, len: c },
        bias: Span { off: c, len: c },
        running_mean: Span { off: 0, len: c },
        running_var: Span { off: c, len: c },
        eps: 1e-5,
        momentum: 0.1,
    };
    let mut params = random_vec(&mut r, 2 * c, 0.0);
    let mut xv: Vec<f32> = random_vec(&mut r, s.numel(), 0.0)
        .iter()
        .map(|v| v * 3.0 + 0.5)
        .collect();
    let rv = random_vec(&mut r, s.numel(), 0.0);
    let fwd = |params: &[f32], xv: &[f32]| -> f64 {
        let mut bufs = Storage::Cpu(vec![0.0; 2 * c]);
        let mut saved = BnSaved {
            mean: CPU.zeros(c),
            invstd: CPU.zeros(c),
        };
        let mut y = CPU.zeros_tensor(s);
        let x = cpu_tensor(s, xv.to_vec());
        batch_norm_forward_train(
            &CPU,
            &p,
            &Storage::Cpu(params.to_vec()),
            &mut bufs,
            &x,
            &mut y,
            &mut saved,
            None,
        );
        dot(&rv, y.cpu())
    };
    let ps = Storage::Cpu(params.clone());
    let mut bufs = Storage::Cpu([vec![0.0; c], vec![1.0; c]].concat());
    let mut saved = BnSaved {
        mean: CPU.zeros(c),
        invstd: CPU.zeros(c),
    };
    let x = cpu_tensor(s, xv.clone());
    let mut y = CPU.zeros_tensor(s);
    batch_norm_forward_train(&CPU, &p, &ps, &mut bufs, &x, &mut y, &mut saved, None);
    // Running stats: 0.9·init + 0.1·batch stat with the unbiased variance.
    let m = s.n * s.hw();
    for ch in 0..c {
        let vals: Vec<f64> = (0..s.n)
            .flat_map(|n| (0..s.hw()).map(move |j| (n, j)))
            .map(|(n, j)| xv[(n * c + ch) * s.hw() + j] as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / m as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
        assert!((bufs.cpu()[ch] as f64 - 0.1 * mean).abs() < 1e-5);
        assert!((bufs.cpu()[c + ch] as f64 - (0.9 + 0.1 * var)).abs() < 1e-4);
    }
    let mut dx = CPU.zeros_tensor(s);
    let mut grads = Storage::Cpu(vec![0.0; 2 * c]);
    batch_norm_backward(
        &CPU,
        &p,
        &ps,
        Some(&mut grads),
        &saved,
        &x,
        &cpu_tensor(s, rv.clone()),
        &mut dx,
        None,
    );
    let idx = sample_indices(&mut r, xv.len(), 60);
    let pc = params.clone();
    check_fd(
        &format!("batchnorm dx {s}"),
        &mut xv,
        &idx,
        dx.cpu(),
        1e-3,
        5e-3,
        |xv| fwd(&pc, xv),
    );
    let xc = xv.clone();
    let idx: Vec<usize> = (0..2 * c).collect();
    check_fd(
        &format!("batchnorm dgamma/dbeta {s}"),
        &mut params,
        &idx,
        grads.cpu(),
        1e-3,
        5e-3,
        |pv| fwd(pv, &xc),
    );

    // Eval mode normalises with the running statistics.
    let mut ye = CPU.zeros_tensor(s);
    batch_norm_forward_eval(&CPU, &p, &ps, &bufs, &x, &mut ye, None);
    let (rm, rvar) = (bufs.cpu()[0], bufs.cpu()[c]);
    let want = (xv[0] - rm) / (rvar + 1e-5).sqrt() * params[0] + params[c];
    assert!((ye.cpu()[0] - want).abs() < 1e-5);
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    bn_case(10, Shape::new(2, 3, 4, 5));
    bn_case(11, Shape::new(1, 4, 2, 2)); // batch 1: instance-norm-like, 4 values per channel
    bn_case(12, Shape::new(4, 2, 1, 1)); // 1×1 spatial with a batch
}

fn act_case(a: Act, seed: u64) {
    let mut r = rng(seed);
    let s = Shape::new(2, 3, 4, 4);
    let mut xv = random_vec(&mut r, s.numel(), 0.05);
    let rv = random_vec(&mut r, s.numel(), 0.0);
    let fwd = |xv: &[f32]| {
        let mut y = CPU.zeros_tensor(s);
        activation_forward(&CPU, a, &cpu_tensor(s, xv.to_vec()), &mut y);
        dot(&rv, y.cpu())
    };
    let x = cpu_tensor(s, xv.clone());
    let mut y = CPU.zeros_tensor(s);
    activation_forward(&CPU, a, &x, &mut y);
    let mut dx = CPU.zeros_tensor(s);
    activation_backward(&CPU, a, &x, &y, &cpu_tensor(s, rv.clone()), &mut dx);
    let idx: Vec<usize> = (0..xv.len()).collect();
    check_fd(&format!("{a:?}"), &mut xv, &idx, dx.cpu(), 1e-3, 2e-3, fwd);
}

#[test]
fn activations_backward_match_finite_differences() {
    act_case(Act::LeakyRelu(0.2), 20);
    act_case(Act::Relu, 21);
    act_case(Act::Tanh, 22);
    act_case(Act::Sigmoid, 23);
}

#[test]
fn activation_values() {
    let s = Shape::new(1, 1, 1, 4);
    let x = cpu_tensor(s, vec![-2.0, -0.0, 0.5, 3.0]);
    let mut y = CPU.zeros_tensor(s);
    activation_forward(&CPU, Act::LeakyRelu(0.2), &x, &mut y);
    assert_eq!(y.cpu(), &[-0.4, 0.0, 0.5, 3.0]);
    activation_forward(&CPU, Act::Relu, &x, &mut y);
    assert_eq!(y.cpu(), &[0.0, 0.0, 0.5, 3.0]);
}

#[test]
fn dropout_is_inverted_seeded_and_its_backward_is_the_mask() {
    let s = Shape::new(2, 8, 16, 16);
    let mut r = rng(30);
    let x = random_tensor(&mut r, s);
    let (mut y, mut mask) = (CPU.zeros_tensor(s), CPU.zeros_tensor(s));
    dropout_forward(&CPU, 0.5, 1234, &x, &mut y, &mut mask);
    let kept = mask.cpu().iter().filter(|&&m| m == 2.0).count();
    assert!(mask.cpu().iter().all(|&m| m == 0.0 || m == 2.0));
    let frac = kept as f64 / s.numel() as f64;
    assert!((frac - 0.5).abs() < 0.02, "kept fraction {frac}");
    for i in 0..s.numel() {
        assert_eq!(y.cpu()[i], x.cpu()[i] * mask.cpu()[i]);
    }
    // Same seed, same mask; another seed, another mask.
    let (mut y2, mut m2) = (CPU.zeros_tensor(s), CPU.zeros_tensor(s));
    dropout_forward(&CPU, 0.5, 1234, &x, &mut y2, &mut m2);
    assert_eq!(m2.cpu(), mask.cpu());
    dropout_forward(&CPU, 0.5, 1235, &x, &mut y2, &mut m2);
    assert_ne!(m2.cpu(), mask.cpu());
    // Backward: dx = dy·mask, which is exactly the derivative of x ↦ x·mask.
    let dy = random_tensor(&mut r, s);
    let mut dx = CPU.zeros_tensor(s);
    mul(&CPU, &dy, &mask, &mut dx);
    let mut xv = x.cpu().to_vec();
    let idx = sample_indices(&mut r, xv.len(), 50);
    let rv = dy.cpu().to_vec();
    check_fd("dropout", &mut xv, &idx, dx.cpu(), 1e-2, 1e-4, |xv| {
        let (mut y, mut m) = (CPU.zeros_tensor(s), CPU.zeros_tensor(s));
        dropout_forward(&CPU, 0.5, 1234, &cpu_tensor(s, xv.to_vec()), &mut y, &mut m);
        dot(&rv, y.cpu())
    });
}

#[test]
fn concat_and_split_are_adjoint() {
    let mut r = rng(40);
    let (sa, sb) = (Shape::new(2, 3, 4, 4), Shape::new(2, 2, 4, 4));
    let (a, b) = (random_tensor(&mut r, sa), random_tensor(&mut r, sb));
    let mut cat = CPU.zeros_tensor(sa.with_c(5));
    insert_channels(&CPU, &a, &mut cat, 0);
    insert_channels(&CPU, &b, &mut cat, 3);
    let (mut a2, mut b2) = (CPU.zeros_tensor(sa), CPU.zeros_tensor(sb));
    extract_channels(&CPU, &cat, 0, &mut a2, false);
    extract_channels(&CPU, &cat, 3, &mut b2, false);
    assert_eq!(a2.cpu(), a.cpu());
    assert_eq!(b2.cpu(), b.cpu());
    // Sample 1, channel 3 is b's channel 0.
    assert_eq!(cat.cpu()[(5 + 3) * 16..(5 + 3) * 16 + 16], b.cpu()[2 * 16..3 * 16]);
    extract_channels(&CPU, &cat, 0, &mut a2, true);
    assert!(a2.cpu().iter().zip(a.cpu()).all(|(x, y)| *x == 2.0 * y));
}

fn loss_fd(kind: Option<LossKind>, target: f32, seed: u64) {
    let mut r = rng(seed);
    let s = Shape::new(2, 1, 5, 5);
    let mut xv: Vec<f32> = random_vec(&mut r, s.numel(), 0.05).iter().map(|v| v * 3.0).collect();
    // L1's kink is at x = y: keep every pair at least 0.05 apart.
    let yv: Vec<f32> = random_vec(&mut r, s.numel(), 0.05)
        .iter()
        .zip(&xv)
        .map(|(d, x)| x + d)
        .collect();
    let out = LossOut {
        slot: 1,
        weight: 3.0,
        grad_weight: 1.5,
    };
    let eval = |xv: &[f32], dx: Option<&mut Tensor>| -> f32 {
        let mut losses = Storage::Cpu(vec![0.0; 3]);
        let x = cpu_tensor(s, xv.to_vec());
        match kind {
            Some(k) => gan_loss(&CPU, k, &x, target, out, &mut losses, dx),
            None => l1_loss(&CPU, &x, &cpu_tensor(s, yv.clone()), out, &mut losses, dx),
        }
        losses.cpu()[1]
    };
    let mut dx = CPU.zeros_tensor(s);
    let value = eval(&xv, Some(&mut dx));
    // The stored value is weight·mean; the gradient is that of grad_weight·mean (half of it here).
    let want: f64 = xv
        .iter()
        .zip(&yv)
        .map(|(&x, &y)| match kind {
            Some(LossKind::BceWithLogits) => {
                let p = 1.0 / (1.0 + (-(x as f64)).exp());
                -(target as f64 * p.ln() + (1.0 - target as f64) * (1.0 - p).ln())
            }
            Some(LossKind::Mse) => (x as f64 - target as f64).powi(2),
            None => (x as f64 - y as f64).abs(),
        })
        .sum::<f64>()
        / s.numel() as f64
        * 3.0;
    assert!(
        (value as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
        "{kind:?}: {value} vs {want}"
    );
    let idx: Vec<usize> = (0..xv.len()).collect();
    // The stored loss is f32, so the step must be large enough for its rounding (losses are at
    // most quadratic here, so a 1e-2 step adds little truncation error).
    check_fd(
        &format!("loss {kind:?} target {target}"),
        &mut xv,
        &idx,
        dx.cpu(),
        1e-2,
        2e-3,
        |xv| eval(xv, None) as f64 * 0.5,
    );
}

#[test]
fn losses_values_and_gradients() {
    loss_fd(Some(LossKind::BceWithLogits), 1.0, 50);
    loss_fd(Some(LossKind::BceWithLogits), 0.0, 51);
    loss_fd(Some(LossKind::Mse), 1.0, 52);
    loss_fd(Some(LossKind::Mse), 0.0, 53);
    loss_fd(None, 0.0, 54);
}

#[test]
fn adam_matches_pytorch_formula() {
    let mut r = rng(60);
    let n = 1000;
    let p0 = random_vec(&mut r, n, 0.0);
    let (mut p, mut m, mut v) = (Storage::Cpu(p0.clone()), CPU.zeros(n), CPU.zeros(n));
    let (mut pr, mut mr, mut vr) = (
        p0.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        vec![0f64; n],
        vec![0f64; n],
    );
    let (lr, b1, b2, eps) = (2e-4, 0.5, 0.999, 1e-8);
    for step in 1..=5u64 {
        let g = random_vec(&mut r, n, 0.0);
        adam_update(
            &CPU,
            &AdamStep {
                lr,
                beta1: b1,
                beta2: b2,
                eps,
                step,
            },
            &mut p,
            &Storage::Cpu(g.clone()),
            &mut m,
            &mut v,
        );
        for i in 0..n {
            let gi = g[i] as f64;
            mr[i] = b1 * mr[i] + (1.0 - b1) * gi;
            vr[i] = b2 * vr[i] + (1.0 - b2) * gi * gi;
            let mhat = mr[i] / (1.0 - b1.powi(step as i32));
            let vhat = vr[i] / (1.0 - b2.powi(step as i32));
            // PyTorch adds eps to sqrt(v)/sqrt(bc2), not to sqrt(v̂) with a separate correction.
            pr[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
    }
    let pv: Vec<f32> = pr.iter().map(|&x| x as f32).collect();
    let d: Vec<f32> = p.cpu().iter().zip(&p0).map(|(a, b)| a - b).collect();
    let dr: Vec<f32> = pv.iter().zip(&p0).map(|(a, b)| a - b).collect();
    assert!(rel_err(&d, &dr) < 1e-4, "adam update rel err {}", rel_err(&d, &dr));
}
