//! CycleGAN on the CPU: the image pool's semantics and resume, the step's G gradient against
//! finite differences of the six-term G loss, and a small model learning.

mod common;
use common::*;
use pix2pix::device::Device;
use pix2pix::models::cyclegan::{CycleGan, CycleGanOptions, LOSS_NAMES};
use pix2pix::models::image_pool::ImagePool;
use pix2pix::models::model::Model;
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::resnet::ResnetConfig;
use pix2pix::nn::params::Kind;
use pix2pix::nn::NormKind;
use pix2pix::tensor::{Shape, Storage, Tensor};
use std::collections::{BTreeMap, HashMap};

const CPU: Device = Device::Cpu;

/// A batch of `n` 1×1×1 "images" with the given values, so pool outputs can be read off directly.
fn tags(values: &[f32]) -> Tensor {
    cpu_tensor(Shape::new(values.len(), 1, 1, 1), values.to_vec())
}

fn query(pool: &mut ImagePool, values: &[f32]) -> Vec<f32> {
    let x = tags(values);
    let mut out = CPU.zeros_tensor(x.shape);
    pool.query(&CPU, &x, &mut out);
    out.cpu().to_vec()
}

#[test]
fn image_pool_follows_the_reference() {
    // Size 0 passes images through and stores nothing.
    let mut p0 = ImagePool::new(0, 1);
    assert_eq!(query(&mut p0, &[1.0, 2.0]), vec![1.0, 2.0]);
    assert!(p0.is_empty());

    // Size 3: the first three images are stored and returned as they are.
    let mut p = ImagePool::new(3, 7);
    assert_eq!(query(&mut p, &[1.0, 2.0]), vec![1.0, 2.0]);
    assert_eq!(query(&mut p, &[3.0]), vec![3.0]);
    assert_eq!(p.len(), 3);
    // Full: each later image comes back itself (pool unchanged) or swaps with a stored one.
    let mut stored = [1.0, 2.0, 3.0];
    let (mut swapped, mut passed) = (0, 0);
    for k in 0..400 {
        let new = 100.0 + k as f32;
        let got = query(&mut p, &[new])[0];
        if got == new {
            passed += 1;
        } else {
            let slot = stored.iter().position(|&v| v == got).expect("returned a stored image");
            stored[slot] = new;
            swapped += 1;
        }
    }
    // p = 0.5 each way: 400 draws land within ±4 sigma (±40) of 200.
    assert!((160..=240).contains(&swapped), "swapped {swapped}, passed {passed}");
    // The pool holds exactly what the swaps imply.
    let (t, _) = p.state(&CPU, "pool");
    let pixel_values = |v: &[f32]| {
        let mut v: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        v.sort();
        v
    };
    match &t[0].values {
        pix2pix::checkpoint::Values::F32(v) => assert_eq!(pixel_values(v), pixel_values(&stored)),
        other => panic!("pool state {other:?}"),
    }

    // Same seed, same decisions; another seed, other decisions.
    let run = |seed: u64| {
        let mut p = ImagePool::new(2, seed);
        (0..50).flat_map(|k| query(&mut p, &[k as f32])).collect::<Vec<f32>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn image_pool_state_resumes_exactly() {
    let mut p = ImagePool::new(4, 11);
    for k in 0..9 {
        query(&mut p, &[k as f32, 50.0 + k as f32]);
    }
    let (tensors, meta) = p.state(&CPU, "pool_B");
    let tensors: BTreeMap<_, _> = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let meta: HashMap<_, _> = meta.into_iter().collect();
    let mut q = ImagePool::new(4, 11);
    q.load_state(
        &CPU,
        "pool_B",
        std::path::Path::new("state.safetensors"),
        &tensors,
        &meta,
    )
    .unwrap();
    for k in 0..30 {
        let v = [200.0 + k as f32];
        assert_eq!(query(&mut p, &v), query(&mut q, &v), "query {k} after resume");
    }
    // A pool saved with more images than --pool-size allows is refused, naming the file.
    let mut small = ImagePool::new(2, 11);
    let e = small
        .load_state(
            &CPU,
            "pool_B",
            std::path::Path::new("state.safetensors"),
            &tensors,
            &meta,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("state.safetensors") && e.contains("pool-size"), "{e}");
}

fn tiny(pool_size: usize, seed: u64) -> CycleGan {
    tiny_with(
        CycleGanOptions {
            pool_size,
            ..Default::default()
        },
        seed,
    )
}

fn tiny_with(opt: CycleGanOptions, seed: u64) -> CycleGan {
    let g = ResnetConfig {
        input_nc: 3,
        output_nc: 3,
        ngf: 4,
        n_blocks: 2,
        norm: NormKind::Instance,
    };
    let d = PatchGanConfig {
        input_nc: 3,
        ndf: 4,
        n_layers: 2,
        norm: NormKind::Instance,
    };
    CycleGan::new(g, d, opt, &CPU, seed).unwrap()
}

/// Smooth colour fields for A; B is A with its channels rotated and brightened (an invertible
/// mapping, so the cycle can be learned).
fn domains(s: Shape, phase: f32) -> (Tensor, Tensor) {
    let a: Vec<f32> = (0..s.numel())
        .map(|i| {
            let (n, c, y, x) = (i / s.chw(), (i / s.hw()) % s.c, (i / s.w) % s.h, i % s.w);
            let t = phase + n as f32 * 0.7;
            ((x as f32 * 0.3 + c as f32 * 2.0 + t).sin() * 0.5 + (y as f32 * 0.2 - t).cos() * 0.3).clamp(-1.0, 1.0)
        })
        .collect();
    let b: Vec<f32> = (0..s.numel())
        .map(|i| {
            let c = (i / s.hw()) % s.c;
            let src = i - c * s.hw() + ((c + 1) % s.c) * s.hw();
            (a[src] * 0.8 + 0.15).clamp(-1.0, 1.0)
        })
        .collect();
    (cpu_tensor(s, a), cpu_tensor(s, b))
}

fn g_loss(m: &CycleGan) -> f64 {
    let l = m.loss_values(&CPU);
    // G_A, cycle_A, idt_A, G_B, cycle_B, idt_B.
    [1, 2, 3, 5, 6, 7].iter().map(|&i| l[i] as f64).sum()
}

/// After a step at lr 0 (no weight moves), G_A's and G_B's gradients are those of the G loss, the
/// sum of the six G terms, evaluated by a whole step: checked against finite differences. This
/// covers the chained backward (cycle losses through the second generator's input into the
/// first), the frozen D's input gradients and the identity terms; three weightings make each kind
/// of term dominate once (all terms; GAN terms only; identity-heavy).
/// Bound: two ResNets in a row with InstanceNorm over small planes are far from linear at a
/// finite step (f32 rounding of the loss below, curvature and ReLU/L1 kinks above: at 32² and a
/// 3e-5 step the error over all entries is 1e-2 to 4e-2, and an entry next to a kink can be 20%
/// off at any step). So each entry must agree within 10% (plus the f32 noise of the loss
/// difference) and 90% of them must; a dropped
/// term or path moves most entries (an identity term by 5% with the default weights, hence the
/// identity-heavy weighting; the cycle path through the second generator's input by up to 90%).
#[test]
fn g_step_gradient_matches_finite_differences() {
    let s = Shape::new(1, 3, 32, 32);
    let (a, b) = domains(s, 0.3);
    let mut r = rng(21);
    let base = CycleGanOptions {
        pool_size: 0,
        ..Default::default()
    };
    for (what, opt, eps) in [
        ("all terms", base, 3e-5),
        (
            "GAN terms only",
            CycleGanOptions {
                lambda_a: 0.0,
                lambda_b: 0.0,
                ..base
            },
            3e-5,
        ),
        (
            "identity-heavy",
            CycleGanOptions {
                lambda_identity: 5.0,
                ..base
            },
            3e-5,
        ),
    ] {
        let mut m = tiny_with(opt, 21);
        m.step(&CPU, &a, &b, 0.0);
        let loss = g_loss(&m);
        assert!(loss.is_finite() && loss > 0.0);
        // The loss is a sum of f32 values: one ulp of it over the step is the difference's noise.
        let noise = loss * f32::EPSILON as f64 / eps as f64;
        for net in ["G_A", "G_B"] {
            let ps = if net == "G_A" { &m.g_a.params } else { &m.g_b.params };
            let analytic = ps.grad.cpu().to_vec();
            let mut data = ps.data.cpu().to_vec();
            let mut idx = vec![];
            for e in ps.entries.iter().filter(|e| e.kind == Kind::Param) {
                for j in sample_indices(&mut r, e.span.len, 2) {
                    idx.push(e.span.off + j);
                }
            }
            let mut agree = 0;
            let mut worst = vec![];
            for &k in &idx {
                let orig = data[k];
                let mut eval = |v: f32| {
                    data[k] = v;
                    let mut t = tiny_with(opt, 21);
                    let target = if net == "G_A" {
                        &mut t.g_a.params
                    } else {
                        &mut t.g_b.params
                    };
                    target.data = Storage::Cpu(data.clone());
                    t.step(&CPU, &a, &b, 0.0);
                    g_loss(&t)
                };
                let fd = (eval(orig + eps) - eval(orig - eps)) / (2.0 * eps as f64);
                data[k] = orig;
                let an = analytic[k] as f64;
                if (fd - an).abs() <= 0.1 * an.abs() + noise {
                    agree += 1;
                } else {
                    worst.push((k, fd, an));
                }
            }
            println!(
                "CycleGAN G loss ({what}) wrt {net}: {agree} of {} entries agree; others {worst:?}",
                idx.len()
            );
            assert!(
                agree * 10 >= idx.len() * 9,
                "CycleGAN G loss ({what}) wrt {net}: only {agree} of {} entries agree with finite differences: {worst:?}",
                idx.len()
            );
        }
    }
}

/// A small CycleGAN for 300 iterations on two fixed image sets: the cycle and identity losses
/// fall clearly, every loss stays finite, and the pools fill.
#[test]
fn small_cyclegan_learns() {
    let s = Shape::new(1, 3, 16, 16);
    let sets: Vec<(Tensor, Tensor)> = (0..4).map(|k| domains(s, k as f32 * 1.3)).collect();
    let mut m = tiny(50, 3);
    let mut history = vec![];
    const ITERS: usize = 300;
    for it in 0..ITERS {
        let (a, b) = &sets[it % sets.len()];
        m.step(&CPU, a, b, 2e-4);
        let l = m.loss_values(&CPU);
        assert!(l.iter().all(|v| v.is_finite()), "iteration {it}: {l:?}");
        history.push(l);
    }
    let mean = |range: std::ops::Range<usize>, i: usize| -> f32 {
        range.clone().map(|k| history[k][i]).sum::<f32>() / range.len() as f32
    };
    for (i, name) in LOSS_NAMES.iter().enumerate() {
        println!(
            "{name}: first 10 {:.3}, last 10 {:.3}",
            mean(0..10, i),
            mean(ITERS - 10..ITERS, i)
        );
    }
    for name in ["cycle_A", "cycle_B", "idt_A", "idt_B"] {
        let i = LOSS_NAMES.iter().position(|n| *n == name).unwrap();
        let (first, last) = (mean(0..10, i), mean(ITERS - 10..ITERS, i));
        assert!(last < 0.7 * first, "{name} did not fall: {first} -> {last}");
    }
    assert_eq!((m.pool_a.len(), m.pool_b.len()), (50, 50));
    assert_eq!(m.iteration, ITERS as u64);
    assert_eq!(m.loss_names(), LOSS_NAMES);
}
