//! Fused ops against the ops they replace, one after the other: bit for bit equal on every device,
//! then the CUDA twin against the CPU, with NaN-poisoned outputs. The networks rely on the
//! equality: fusing changed no training step (see RESULTS.md).
//! - A norm with its activation (ops::norm's `act`: y = act(norm(x)) in one pass, and the backward
//!   from the gradient of y): batch norm (train, eval; one and several blocks per channel on CUDA)
//!   and instance norm, with LeakyReLU(0.2) and ReLU.
//! - An activation written into / read from channels of a concatenation (the U-Net's
//!   ReLU(concat(skip, up)) without the concatenation stored): against concat, then the
//!   activation; the activation's backward, then the split.
//!
//! Runs on the CPU, and on the GPU or the emulated CUDA device (common::cuda_device).

mod common;

use common::{bn_params_at_offsets, random_vec, rel_err, rng};
use pix2pix::device::Device;
use pix2pix::ops::activation::{
    activation_backward, activation_backward_from_channels, activation_forward, activation_into_channels, Act,
};
use pix2pix::ops::norm::{
    batch_norm_backward, batch_norm_forward_eval, batch_norm_forward_train, instance_norm_backward,
    instance_norm_forward, BnSaved,
};
use pix2pix::ops::tensor::{extract_channels, insert_channels};
use pix2pix::tensor::{Shape, Storage, Tensor};

#[derive(Clone, Copy, Debug)]
enum Norm {
    BatchTrain,
    BatchEval,
    Instance,
}

const ACTS: [Act; 2] = [Act::LeakyRelu(0.2), Act::Relu];

/// Inputs of one case, as host vectors (uploaded to each device under test).
struct Case {
    shape: Shape,
    x: Vec<f32>,
    dy: Vec<f32>,
    params: Vec<f32>,
    bufs: Vec<f32>,
    grads: Vec<f32>,
}

/// Everything a forward and backward write, downloaded.
#[derive(PartialEq, Debug)]
struct Outs {
    y: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    bufs: Vec<f32>,
    dx: Vec<f32>,
    grads: Vec<f32>,
}

fn case(seed: u64, shape: Shape) -> Case {
    let mut r = rng(seed);
    let c = shape.c;
    // A mean per channel, and values around it: after the norm about half are negative, so both
    // sides of the activation's kink are taken.
    let x = random_vec(&mut r, shape.numel(), 0.01)
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i / shape.hw()) % c) as f32 * 0.1)
        .collect();
    let mut params = random_vec(&mut r, 3 + 2 * c, 0.01);
    params[3..3 + c].iter_mut().for_each(|v| *v += 1.0);
    let mut bufs = random_vec(&mut r, 1 + 2 * c, 0.01);
    bufs[1 + c..].iter_mut().for_each(|v| *v = v.abs() + 0.5);
    Case {
        shape,
        dy: random_vec(&mut r, shape.numel(), 0.01),
        grads: random_vec(&mut r, params.len(), 0.0),
        x,
        params,
        bufs,
    }
}

/// Output storage: NaN on a CUDA device, so an element a kernel forgets to write shows.
fn out(dev: &Device, s: Shape) -> Tensor {
    dev.upload_tensor(s, &vec![f32::NAN; s.numel()])
}

fn nan(dev: &Device, len: usize) -> Storage {
    dev.upload(&vec![f32::NAN; len])
}

/// Runs norm → act on `dev`, fused (one op each way) or composed (norm, then the activation; the
/// activation's backward, then the norm's).
fn run(dev: &Device, norm: Norm, act: Act, fused: bool, k: &Case) -> Outs {
    let s = k.shape;
    let stats = match norm {
        Norm::Instance => s.n * s.c,
        _ => s.c,
    };
    let p = bn_params_at_offsets(s.c);
    let params = dev.upload(&k.params);
    let mut bufs = dev.upload(&k.bufs);
    let mut grads = dev.upload(&k.grads);
    let x = dev.upload_tensor(s, &k.x);
    let dy = dev.upload_tensor(s, &k.dy);
    let mut saved = BnSaved {
        mean: nan(dev, stats),
        invstd: nan(dev, stats),
    };
    let mut y = out(dev, s);
    let mut z = out(dev, s); // the norm's output, composed only
    let mut g_z = out(dev, s);
    let mut dx = out(dev, s);
    let fwd_act = fused.then_some(act);
    {
        let norm_out = if fused { &mut y } else { &mut z };
        match norm {
            Norm::BatchTrain => {
                batch_norm_forward_train(dev, &p, &params, &mut bufs, &x, norm_out, &mut saved, fwd_act)
            }
            Norm::BatchEval => batch_norm_forward_eval(dev, &p, &params, &bufs, &x, norm_out, fwd_act),
            Norm::Instance => instance_norm_forward(dev, 1e-5, &x, norm_out, &mut saved, fwd_act),
        }
    }
    if !fused {
        activation_forward(dev, act, &z, &mut y);
    }
    let has_backward = !matches!(norm, Norm::BatchEval);
    if has_backward {
        let (g_in, bwd_act) = if fused {
            (&dy, Some((act, &y)))
        } else {
            activation_backward(dev, act, &z, &y, &dy, &mut g_z);
            (&g_z, None)
        };
        match norm {
            Norm::BatchTrain => {
                batch_norm_backward(dev, &p, &params, Some(&mut grads), &saved, &x, g_in, &mut dx, bwd_act)
            }
            Norm::Instance => instance_norm_backward(dev, &saved, &x, g_in, &mut dx, bwd_act),
            Norm::BatchEval => unreachable!(),
        }
    }
    let down = |st: &Storage| dev.download(st);
    Outs {
        y: down(&y.data),
        mean: if has_backward { down(&saved.mean) } else { vec![] },
        invstd: if has_backward { down(&saved.invstd) } else { vec![] },
        bufs: down(&bufs),
        dx: if has_backward { down(&dx.data) } else { vec![] },
        grads: down(&grads),
    }
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape::new(1, 16, 32, 32),
        Shape::new(4, 8, 5, 3),
        Shape::new(2, 6, 7, 9),
        // Few channels with many values: batch norm's several blocks per channel on CUDA.
        Shape::new(8, 4, 64, 64),
    ]
}

/// The test body run on every device: fused equals composed bit for bit. Returns the fused outputs.
fn fused_equals_composed(dev: &Device) -> Vec<(String, Outs)> {
    let mut all = vec![];
    for (i, shape) in shapes().into_iter().enumerate() {
        let k = case(40 + i as u64, shape);
        for norm in [Norm::BatchTrain, Norm::BatchEval, Norm::Instance] {
            for act in ACTS {
                let what = format!("{norm:?} + {act:?} {shape}");
                let fused = run(dev, norm, act, true, &k);
                let composed = run(dev, norm, act, false, &k);
                assert!(fused.y.iter().all(|v| v.is_finite()), "{what}: y not all written");
                assert!(fused.dx.iter().all(|v| v.is_finite()), "{what}: dx not all written");
                let negative = fused.y.iter().filter(|&&v| v <= 0.0).count();
                assert!(
                    negative > 0 && negative < fused.y.len(),
                    "{what}: the case takes both sides of the kink"
                );
                for (name, f, c) in [
                    ("y", &fused.y, &composed.y),
                    ("dx", &fused.dx, &composed.dx),
                    ("dgamma/dbeta", &fused.grads, &composed.grads),
                    ("saved mean", &fused.mean, &composed.mean),
                    ("saved invstd", &fused.invstd, &composed.invstd),
                    ("running stats", &fused.bufs, &composed.bufs),
                ] {
                    let same = f.iter().zip(c.iter()).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same && f.len() == c.len(), "{what}: fused {name} differs from composed");
                }
                all.push((what, fused));
            }
        }
    }
    all
}

#[test]
fn cpu_fused_norm_equals_composed() {
    let n = fused_equals_composed(&Device::Cpu).len();
    println!("{n} cases: fused norm + activation bit-identical to the two ops");
}

#[test]
fn cuda_fused_norm_equals_composed_and_matches_cpu() {
    let Some(g) = common::cuda_device() else {
        return;
    };
    let gpu = fused_equals_composed(&g);
    let cpu = fused_equals_composed(&Device::Cpu);
    for ((what, go), (_, co)) in gpu.iter().zip(&cpu) {
        // The f64 reductions run in another order than the CPU's: last bits of an f64 (gpu_ops.rs).
        for (name, a, b) in [
            ("y", &go.y, &co.y),
            ("dx", &go.dx, &co.dx),
            ("dgamma/dbeta", &go.grads, &co.grads),
            ("running stats", &go.bufs, &co.bufs),
        ] {
            if a.is_empty() {
                continue; // no backward in eval mode
            }
            let e = rel_err(a, b);
            println!("{what:<50} {name:<14} rel err {e:.3e}");
            assert!(e <= 1e-6, "{what}: CUDA {name} vs CPU relative error {e:.3e}");
        }
    }
}

/// ReLU(concat(a, b)) and its backward, fused (written into / read from the concatenation's
/// channels) or composed (concat, activation; activation backward, split). Returns (r, g_a, g_b).
fn concat_act(
    dev: &Device,
    act: Act,
    fused: bool,
    (a, sa): (&[f32], Shape),
    (b, sb): (&[f32], Shape),
    g: &[f32],
) -> [Vec<f32>; 3] {
    let sr = sa.with_c(sa.c + sb.c);
    let (ta, tb) = (dev.upload_tensor(sa, a), dev.upload_tensor(sb, b));
    let g_r = dev.upload_tensor(sr, g);
    let (mut r, mut g_a, mut g_b) = (out(dev, sr), out(dev, sa), out(dev, sb));
    if fused {
        activation_into_channels(dev, act, &ta, &mut r, 0);
        activation_into_channels(dev, act, &tb, &mut r, sa.c);
        activation_backward_from_channels(dev, act, &r, &g_r, 0, &mut g_a);
        activation_backward_from_channels(dev, act, &r, &g_r, sa.c, &mut g_b);
    } else {
        let (mut cat, mut g_cat) = (out(dev, sr), out(dev, sr));
        insert_channels(dev, &ta, &mut cat, 0);
        insert_channels(dev, &tb, &mut cat, sa.c);
        activation_forward(dev, act, &cat, &mut r);
        activation_backward(dev, act, &cat, &r, &g_r, &mut g_cat);
        extract_channels(dev, &g_cat, 0, &mut g_a, false);
        extract_channels(dev, &g_cat, sa.c, &mut g_b, false);
    }
    [r, g_a, g_b].map(|t| dev.download(&t.data))
}

/// The concat test body on one device: fused equals composed bit for bit; returns the fused results.
#[allow(clippy::type_complexity)]
fn concat_fused_equals_composed(dev: &Device) -> Vec<(String, [Vec<f32>; 3])> {
    let mut all = vec![];
    let mut r = rng(77);
    // (batch, channels of a, channels of b, h, w): the U-Net's equal halves, and uneven ones.
    for (n, ca, cb, h, w) in [(1, 16, 16, 8, 8), (3, 5, 2, 7, 3), (2, 1, 4, 1, 9)] {
        let (sa, sb) = (Shape::new(n, ca, h, w), Shape::new(n, cb, h, w));
        let a = random_vec(&mut r, sa.numel(), 0.01);
        let b = random_vec(&mut r, sb.numel(), 0.01);
        let g = random_vec(&mut r, (ca + cb) * n * h * w, 0.01);
        for act in [Act::Relu, Act::LeakyRelu(0.2), Act::Tanh] {
            let what = format!("{act:?}(concat({sa}, {sb}))");
            let fused = concat_act(dev, act, true, (&a, sa), (&b, sb), &g);
            let composed = concat_act(dev, act, false, (&a, sa), (&b, sb), &g);
            for (name, f, c) in ["r", "g_a", "g_b"]
                .iter()
                .zip(&fused)
                .zip(&composed)
                .map(|((n, f), c)| (n, f, c))
            {
                assert!(f.iter().all(|v| v.is_finite()), "{what}: {name} not all written");
                let same = f.len() == c.len() && f.iter().zip(c).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{what}: fused {name} differs from composed");
            }
            all.push((what, fused));
        }
    }
    all
}

#[test]
fn cpu_activation_into_channels_equals_concat_then_activation() {
    let n = concat_fused_equals_composed(&Device::Cpu).len();
    println!("{n} cases: activation into / from channels bit-identical to concat + activation + split");
}

#[test]
fn cuda_activation_into_channels_equals_concat_and_matches_cpu() {
    let Some(g) = common::cuda_device() else {
        return;
    };
    let gpu = concat_fused_equals_composed(&g);
    let cpu = concat_fused_equals_composed(&Device::Cpu);
    for ((what, go), (_, co)) in gpu.iter().zip(&cpu) {
        for (name, a, b) in ["r", "g_a", "g_b"].iter().zip(go).zip(co).map(|((n, a), b)| (n, a, b)) {
            // Elementwise: the same f32 expressions (tanhf aside, a libm call: a few ulps).
            let e = rel_err(a, b);
            println!("{what:<50} {name:<4} rel err {e:.3e}");
            assert!(e <= 1e-7, "{what}: CUDA {name} vs CPU relative error {e:.3e}");
        }
    }
}
