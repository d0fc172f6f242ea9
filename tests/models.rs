//! Networks: parameter counts (SPEC.md §8), tensor names (§9), whole-network backward against
//! finite differences on a tiny U-Net and PatchGAN, and the pix2pix step learning.

mod common;
use common::*;
use pix2pix::device::Device;
use pix2pix::models::patchgan::{PatchGan, PatchGanConfig};
use pix2pix::models::pix2pix::{Pix2Pix, Pix2PixOptions};
use pix2pix::models::resnet::{ResnetConfig, ResnetGenerator};
use pix2pix::models::unet::{UnetConfig, UnetGenerator};
use pix2pix::nn::params::Kind;
use pix2pix::nn::NormKind;
use pix2pix::tensor::{Shape, Storage};

const CPU: Device = Device::Cpu;

/// The basic (70×70) PatchGAN for pix2pix: 6 input channels, 3 layers.
fn basic_d(ndf: usize, seed: u64) -> PatchGan {
    patchgan(6, ndf, NormKind::Batch, seed)
}

/// The basic PatchGAN with `input_nc` channels and the given norm (CycleGAN's: 3, instance).
fn patchgan(input_nc: usize, ndf: usize, norm: NormKind, seed: u64) -> PatchGan {
    PatchGan::new(
        PatchGanConfig {
            input_nc,
            ndf,
            n_layers: 3,
            norm,
        },
        &CPU,
        seed,
    )
    .unwrap()
}

fn resnet(name: &str, ngf: usize, norm: NormKind, seed: u64) -> ResnetGenerator {
    ResnetGenerator::new(ResnetConfig::named(name, ngf, norm, false).unwrap(), &CPU, seed).unwrap()
}

fn unet(name: &str) -> UnetGenerator {
    UnetGenerator::new(UnetConfig::named(name, 64, true, NormKind::Batch).unwrap(), &CPU, 0).unwrap()
}

#[test]
fn parameter_counts_match_the_reference() {
    let g = unet("unet_256");
    assert_eq!(g.params.num_params(), 54_413_955);
    let params = g.params.entries.iter().filter(|e| e.kind == Kind::Param).count();
    let tensors = g.params.entries.len();
    assert_eq!(tensors, 82, "unet_256 state_dict has 82 tensors");
    // 16 conv weights + the final bias + γ and β of 13 BatchNorms.
    assert_eq!(params, 16 + 1 + 2 * 13, "learnable tensors");
    drop(g);
    assert_eq!(unet("unet_128").params.num_params(), 41_828_995);
    let d = basic_d(64, 0);
    assert_eq!(d.params.num_params(), 2_768_705);
    assert_eq!(d.params.entries.len(), 22);
}

#[test]
fn tensor_names_follow_the_state_dict() {
    let g = UnetGenerator::new(
        UnetConfig::named("unet_256", 8, true, NormKind::Batch).unwrap(),
        &CPU,
        0,
    )
    .unwrap();
    let e = |n: &str| {
        g.params
            .entry(n)
            .unwrap_or_else(|| panic!("no tensor {n}"))
            .dims
            .clone()
    };
    assert_eq!(e("model.model.0.weight"), vec![8, 3, 4, 4]);
    assert_eq!(e("model.model.3.weight"), vec![16, 3, 4, 4]);
    assert_eq!(e("model.model.3.bias"), vec![3]);
    assert_eq!(e("model.model.1.model.1.weight"), vec![16, 8, 4, 4]);
    assert_eq!(e("model.model.1.model.5.weight"), vec![32, 8, 4, 4]);
    assert_eq!(
        e("model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.1.weight"),
        vec![64, 64, 4, 4]
    );
    assert_eq!(
        e("model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.4.running_var"),
        vec![64]
    );
    assert_eq!(e("model.model.1.model.2.num_batches_tracked"), Vec::<usize>::new());
    assert!(
        g.params.entry("model.model.0.bias").is_none(),
        "e1 has no bias with BatchNorm"
    );
    let d = basic_d(64, 0);
    let names: Vec<&str> = d
        .params
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.ends_with("weight"))
        .collect();
    assert_eq!(
        names,
        [
            "model.0.weight",
            "model.2.weight",
            "model.3.weight",
            "model.5.weight",
            "model.6.weight",
            "model.8.weight",
            "model.9.weight",
            "model.11.weight"
        ]
    );
}

#[test]
fn generator_checks_input_size() {
    let g = UnetGenerator::new(
        UnetConfig {
            input_nc: 3,
            output_nc: 3,
            ngf: 4,
            num_downs: 5,
            use_dropout: true,
            norm: NormKind::Batch,
        },
        &CPU,
        0,
    )
    .unwrap();
    assert!(g.check_input(Shape::new(1, 3, 32, 64)).is_ok());
    let err = g.check_input(Shape::new(1, 3, 48, 32)).unwrap_err().to_string();
    assert!(err.contains("multiples of 32"), "{err}");
}

/// Σ r·G(x) and its gradient with respect to a sample of G's parameters, by finite differences.
/// Dropout runs with a fixed seed, so the function is deterministic. The step is small (3e-5)
/// because weights are N(0, 0.02): a larger one moves activations across LReLU/ReLU kinks and
/// through BN's curvature (at 1e-3 the error is ~2.6e-2 and shrinks as the step does).
#[test]
fn tiny_unet_backward_matches_finite_differences() {
    let cfg = UnetConfig {
        input_nc: 3,
        output_nc: 3,
        ngf: 4,
        num_downs: 5,
        use_dropout: true,
        norm: NormKind::Batch,
    };
    // num_downs 5 has no dropout level; 6 levels at 64² has one (level 5).
    for (cfg, size, seed) in [(cfg, 32, 70u64), (UnetConfig { num_downs: 6, ..cfg }, 64, 71)] {
        let mut g = UnetGenerator::new(cfg, &CPU, seed).unwrap();
        let mut r = rng(seed);
        let xs = Shape::new(2, 3, size, size);
        let x = random_tensor(&mut r, xs);
        let rv = random_vec(&mut r, xs.numel(), 0.0);
        g.forward(&CPU, &x, true, Some(99));
        g.params.zero_grad();
        g.backward(&CPU, &x, &cpu_tensor(xs, rv.clone()));
        let analytic = g.params.grad.cpu().to_vec();
        let mut data = g.params.data.cpu().to_vec();
        // Sample entries from every tensor, so no layer's gradient goes unchecked.
        let mut idx = vec![];
        for e in g.params.entries.iter().filter(|e| e.kind == Kind::Param) {
            for j in sample_indices(&mut r, e.span.len, 3) {
                idx.push(e.span.off + j);
            }
        }
        check_fd(
            &format!("U-Net num_downs {} params", cfg.num_downs),
            &mut data,
            &idx,
            &analytic,
            3e-5,
            5e-3,
            |p| {
                g.params.data = Storage::Cpu(p.to_vec());
                dot(&rv, g.forward(&CPU, &x, true, Some(99)).cpu())
            },
        );
    }
}

#[test]
fn tiny_patchgan_backward_matches_finite_differences() {
    let mut d = basic_d(4, 80);
    let mut r = rng(80);
    let xs = Shape::new(2, 6, 32, 32);
    let mut xv = random_vec(&mut r, xs.numel(), 0.0);
    let x = cpu_tensor(xs, xv.clone());
    let ys = d.forward(&CPU, &x).shape;
    assert_eq!((ys.c, ys.h, ys.w), (1, 2, 2), "32² input → 2×2 patches");
    let rv = random_vec(&mut r, ys.numel(), 0.0);
    d.params.zero_grad();
    let mut dx = CPU.zeros_tensor(xs);
    d.backward(&CPU, &x, &cpu_tensor(ys, rv.clone()), true, Some(&mut dx));
    let analytic = d.params.grad.cpu().to_vec();
    let mut data = d.params.data.cpu().to_vec();
    let mut idx = vec![];
    for e in d.params.entries.iter().filter(|e| e.kind == Kind::Param) {
        for j in sample_indices(&mut r, e.span.len, 4) {
            idx.push(e.span.off + j);
        }
    }
    check_fd("PatchGAN params", &mut data, &idx, &analytic, 3e-5, 5e-3, |p| {
        d.params.data = Storage::Cpu(p.to_vec());
        dot(&rv, d.forward(&CPU, &cpu_tensor(xs, x.cpu().to_vec())).cpu())
    });
    d.params.data = Storage::Cpu(data);
    let idx = sample_indices(&mut r, xv.len(), 40);
    // Input gradients are ~1e-2, so the f32 forward's rounding limits the agreement to ~1e-2.
    check_fd("PatchGAN input", &mut xv, &idx, dx.cpu(), 1e-3, 3e-2, |xv| {
        dot(&rv, d.forward(&CPU, &cpu_tensor(xs, xv.to_vec())).cpu())
    });
    // Frozen D (the G step): no parameter gradients, same input gradient.
    d.params.zero_grad();
    let mut dx2 = CPU.zeros_tensor(xs);
    d.forward(&CPU, &x);
    d.backward(&CPU, &x, &cpu_tensor(ys, rv), false, Some(&mut dx2));
    assert!(d.params.grad.cpu().iter().all(|&g| g == 0.0));
    assert!(rel_err(dx2.cpu(), dx.cpu()) < 1e-6);
}

/// A few steps on one fixed pair: G_L1 must fall clearly, every loss stays finite.
#[test]
fn pix2pix_step_learns_a_fixed_pair() {
    let gcfg = UnetConfig {
        input_nc: 3,
        output_nc: 3,
        ngf: 8,
        num_downs: 5,
        use_dropout: true,
        norm: NormKind::Batch,
    };
    let dcfg = PatchGanConfig {
        input_nc: 6,
        ndf: 8,
        n_layers: 3,
        norm: NormKind::Batch,
    };
    let mut m = Pix2Pix::new(gcfg, dcfg, Pix2PixOptions::default(), &CPU, 5).unwrap();
    let s = Shape::new(2, 3, 32, 32);
    // B: smooth colour gradients; A: B quantised to 3 levels (a crude "cartoon").
    let b: Vec<f32> = (0..s.numel())
        .map(|i| {
            let (c, y, x) = ((i / 1024) % 3, (i / 32) % 32, i % 32);
            ((x as f32 * 0.1 + c as f32).sin() * 0.5 + (y as f32 * 0.07).cos() * 0.4).clamp(-1.0, 1.0)
        })
        .collect();
    let a: Vec<f32> = b.iter().map(|v| (v * 1.5).round() / 1.5).collect();
    let (a, b) = (cpu_tensor(s, a), cpu_tensor(s, b));
    m.check_batch(a.shape, b.shape).unwrap();
    let mut l1 = vec![];
    for _ in 0..40 {
        m.step(&CPU, &a, &b, 2e-4);
        let l = m.losses(&CPU);
        assert!(l.values().iter().all(|v| v.is_finite()), "{l:?}");
        l1.push(l.g_l1);
    }
    let first: f32 = l1[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = l1[35..].iter().sum::<f32>() / 5.0;
    println!("G_L1 first 5: {first:.3}, last 5: {last:.3}");
    assert!(last < 0.8 * first, "G_L1 did not fall: {first} → {last}");
    // G's BN layers saw one batch per step, D's three.
    let g_counter = m.g.params.counters[0];
    let d_counter = m.d.params.counters[0];
    assert_eq!((g_counter, d_counter), (40, 120));
}

#[test]
fn models_move_between_devices_unchanged() {
    let g = UnetGenerator::new(
        UnetConfig {
            input_nc: 3,
            output_nc: 3,
            ngf: 4,
            num_downs: 5,
            use_dropout: false,
            norm: NormKind::Batch,
        },
        &CPU,
        3,
    )
    .unwrap();
    let moved = g.params.to_device(&CPU);
    assert_eq!(moved.data.cpu(), g.params.data.cpu());
    assert_eq!(moved.buffers.cpu(), g.params.buffers.cpu());
}

// ---------------------------------------------------------------------------------------------
// CycleGAN's networks (SPEC.md §7)

#[test]
fn cyclegan_parameter_counts_match_the_reference() {
    let g = resnet("resnet_9blocks", 64, NormKind::Instance, 0);
    assert_eq!(g.params.num_params(), 11_378_179);
    // 1 + 2 + 2·9 + 2 + 1 convs, each with weight and bias; InstanceNorm has no state.
    assert_eq!(g.params.entries.len(), 2 * 24);
    assert!(g.params.entries.iter().all(|e| e.kind == Kind::Param));
    drop(g);
    // Six blocks fewer by 3 × 2 × (256·256·9 + 256).
    let g6 = resnet("resnet_6blocks", 64, NormKind::Instance, 0);
    assert_eq!(g6.params.num_params(), 11_378_179 - 3 * 2 * (256 * 256 * 9 + 256));
    let d = patchgan(3, 64, NormKind::Instance, 0);
    assert_eq!(d.params.num_params(), 2_764_737);
    assert_eq!(d.params.entries.len(), 10, "5 convs with bias, no norm state");
}

#[test]
fn cyclegan_tensor_names_follow_the_state_dict() {
    let g = resnet("resnet_9blocks", 8, NormKind::Instance, 0);
    let names: Vec<(&str, Vec<usize>)> = g
        .params
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.dims.clone()))
        .collect();
    let want_head = [
        ("model.1.weight", vec![8, 3, 7, 7]),
        ("model.1.bias", vec![8]),
        ("model.4.weight", vec![16, 8, 3, 3]),
        ("model.4.bias", vec![16]),
        ("model.7.weight", vec![32, 16, 3, 3]),
        ("model.7.bias", vec![32]),
        ("model.10.conv_block.1.weight", vec![32, 32, 3, 3]),
        ("model.10.conv_block.1.bias", vec![32]),
        ("model.10.conv_block.5.weight", vec![32, 32, 3, 3]),
        ("model.10.conv_block.5.bias", vec![32]),
    ];
    for (i, (n, d)) in want_head.iter().enumerate() {
        assert_eq!((names[i].0, &names[i].1), (*n, d), "entry {i}");
    }
    let want_tail = [
        ("model.18.conv_block.5.bias", vec![32]),
        ("model.19.weight", vec![32, 16, 3, 3]), // ConvTranspose2d: [in, out, k, k]
        ("model.19.bias", vec![16]),
        ("model.22.weight", vec![16, 8, 3, 3]),
        ("model.22.bias", vec![8]),
        ("model.26.weight", vec![3, 8, 7, 7]),
        ("model.26.bias", vec![3]),
    ];
    let tail = &names[names.len() - want_tail.len()..];
    for (got, want) in tail.iter().zip(&want_tail) {
        assert_eq!((got.0, &got.1), (want.0, &want.1));
    }
    // resnet_6blocks: the up path starts at model.16, the head conv is model.23.
    let g6 = resnet("resnet_6blocks", 8, NormKind::Instance, 0);
    assert!(g6.params.entry("model.16.weight").is_some());
    assert!(g6.params.entry("model.23.bias").is_some());
    // With BatchNorm: no conv bias before a norm, BN state at the norm's index.
    let gb = resnet("resnet_6blocks", 8, NormKind::Batch, 0);
    assert!(gb.params.entry("model.1.bias").is_none());
    assert!(gb.params.entry("model.2.running_var").is_some());
    assert!(gb.params.entry("model.10.conv_block.6.num_batches_tracked").is_some());
    assert!(
        gb.params.entry("model.23.bias").is_some(),
        "the head conv always has a bias"
    );
    // PatchGAN with InstanceNorm: every conv has a bias, the norm indices are empty.
    let d = patchgan(3, 64, NormKind::Instance, 0);
    let names: Vec<&str> = d.params.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.0.weight",
            "model.0.bias",
            "model.2.weight",
            "model.2.bias",
            "model.5.weight",
            "model.5.bias",
            "model.8.weight",
            "model.8.bias",
            "model.11.weight",
            "model.11.bias"
        ]
    );
}

#[test]
fn resnet_generator_checks_input_size() {
    let g = resnet("resnet_6blocks", 4, NormKind::Instance, 0);
    assert!(g.check_input(Shape::new(1, 3, 8, 12)).is_ok());
    for bad in [Shape::new(1, 3, 10, 12), Shape::new(1, 3, 4, 4), Shape::new(1, 1, 8, 8)] {
        let err = g.check_input(bad).unwrap_err().to_string();
        assert!(err.contains("multiples of 4"), "{err}");
    }
}

/// Σ r·G(x) against finite differences for a sample of every parameter tensor and for the input
/// (CycleGAN needs G's input gradient: the cycle loss reaches G_A through G_B).
/// The bounds are looser than the U-Net's: with 16 ReLU layers and norms over planes of 6 pixels
/// (the blocks at 3×2), a 3e-5 step crosses a ReLU kink now and then and meets IN's curvature, and
/// a smaller one drowns in f32 rounding. Measured (IN; BN alike): parameters 6.7e-3 at a step of
/// 1e-5, 8.7e-3 at 3e-5, 3.5e-2 at 1e-4, 0.29 at 3e-4; the input 1.3e-2 at 1e-4, 8.4e-3 at 3e-4,
/// 2.5e-2 at 1e-3. The zero gradients of the biases before a norm read ±0.1 from rounding. A
/// wrong backward (a missing skip gradient, a mirrored pad) is off by O(1).
#[test]
fn tiny_resnet_backward_matches_finite_differences() {
    for (norm, seed) in [(NormKind::Instance, 90u64), (NormKind::Batch, 91)] {
        let mut g = resnet("resnet_6blocks", 4, norm, seed);
        let mut r = rng(seed);
        let xs = Shape::new(2, 3, 12, 8);
        let mut xv = random_vec(&mut r, xs.numel(), 0.0);
        let x = cpu_tensor(xs, xv.clone());
        let rv = random_vec(&mut r, xs.numel(), 0.0);
        assert_eq!(g.forward(&CPU, &x, true).shape, xs);
        g.params.zero_grad();
        let mut dx = CPU.zeros_tensor(xs);
        g.backward(&CPU, &x, &cpu_tensor(xs, rv.clone()), Some(&mut dx));
        let analytic = g.params.grad.cpu().to_vec();
        let mut data = g.params.data.cpu().to_vec();
        let mut idx = vec![];
        for e in g.params.entries.iter().filter(|e| e.kind == Kind::Param) {
            for j in sample_indices(&mut r, e.span.len, 3) {
                idx.push(e.span.off + j);
            }
        }
        check_fd(
            &format!("ResNet ({norm:?}) params"),
            &mut data,
            &idx,
            &analytic,
            3e-5,
            2e-2,
            |p| {
                g.params.data = Storage::Cpu(p.to_vec());
                dot(&rv, g.forward(&CPU, &x, true).cpu())
            },
        );
        g.params.data = Storage::Cpu(data);
        let idx = sample_indices(&mut r, xv.len(), 40);
        check_fd(
            &format!("ResNet ({norm:?}) input"),
            &mut xv,
            &idx,
            dx.cpu(),
            3e-4,
            2e-2,
            |xv| dot(&rv, g.forward(&CPU, &cpu_tensor(xs, xv.to_vec()), true).cpu()),
        );
    }
}

#[test]
fn tiny_instance_norm_patchgan_backward_matches_finite_differences() {
    let mut d = patchgan(3, 4, NormKind::Instance, 92);
    let mut r = rng(92);
    let xs = Shape::new(2, 3, 32, 32);
    let mut xv = random_vec(&mut r, xs.numel(), 0.0);
    let x = cpu_tensor(xs, xv.clone());
    let ys = d.forward(&CPU, &x).shape;
    let rv = random_vec(&mut r, ys.numel(), 0.0);
    d.params.zero_grad();
    let mut dx = CPU.zeros_tensor(xs);
    d.backward(&CPU, &x, &cpu_tensor(ys, rv.clone()), true, Some(&mut dx));
    let analytic = d.params.grad.cpu().to_vec();
    let mut data = d.params.data.cpu().to_vec();
    let mut idx = vec![];
    for e in d.params.entries.iter() {
        for j in sample_indices(&mut r, e.span.len, 4) {
            idx.push(e.span.off + j);
        }
    }
    check_fd("PatchGAN (IN) params", &mut data, &idx, &analytic, 3e-5, 5e-3, |p| {
        d.params.data = Storage::Cpu(p.to_vec());
        dot(&rv, d.forward(&CPU, &x).cpu())
    });
    d.params.data = Storage::Cpu(data);
    let idx = sample_indices(&mut r, xv.len(), 40);
    check_fd("PatchGAN (IN) input", &mut xv, &idx, dx.cpu(), 1e-3, 3e-2, |xv| {
        dot(&rv, d.forward(&CPU, &cpu_tensor(xs, xv.to_vec())).cpu())
    });
}

#[test]
fn unet_with_instance_norm() {
    // --norm instance (the reference allows it for pix2pix): every conv gets a bias, the norms
    // have no state, so the count is the BN one minus γ/β plus one bias per non-outermost conv.
    let cfg = UnetConfig::named("unet_256", 64, true, NormKind::Instance).unwrap();
    let g = UnetGenerator::new(cfg, &CPU, 0).unwrap();
    let bn = unet("unet_256");
    let gamma_beta: usize = bn
        .params
        .entries
        .iter()
        .filter(|e| e.name.ends_with(".weight") && e.dims.len() == 1)
        .map(|e| 2 * e.dims[0])
        .sum();
    let biases: usize = g
        .params
        .entries
        .iter()
        .filter(|e| e.name.ends_with(".bias"))
        .map(|e| e.dims[0])
        .sum();
    assert_eq!(g.params.num_params(), bn.params.num_params() - gamma_beta + biases - 3);
    assert!(g.params.entry("model.model.0.bias").is_some(), "e1 has a bias with IN");
    assert!(g.params.entries.iter().all(|e| e.kind == Kind::Param));
    assert_eq!(g.params.entries.len(), 2 * 16, "16 convs with weight and bias");
    drop((g, bn));

    let cfg = UnetConfig {
        input_nc: 3,
        output_nc: 3,
        ngf: 4,
        num_downs: 5,
        use_dropout: false,
        norm: NormKind::Instance,
    };
    let mut g = UnetGenerator::new(cfg, &CPU, 72).unwrap();
    let mut r = rng(72);
    let xs = Shape::new(2, 3, 32, 32);
    let x = random_tensor(&mut r, xs);
    let rv = random_vec(&mut r, xs.numel(), 0.0);
    g.forward(&CPU, &x, true, None);
    g.params.zero_grad();
    g.backward(&CPU, &x, &cpu_tensor(xs, rv.clone()));
    let analytic = g.params.grad.cpu().to_vec();
    let mut data = g.params.data.cpu().to_vec();
    let mut idx = vec![];
    for e in g.params.entries.iter() {
        for j in sample_indices(&mut r, e.span.len, 3) {
            idx.push(e.span.off + j);
        }
    }
    check_fd("U-Net (IN) params", &mut data, &idx, &analytic, 3e-5, 2e-2, |p| {
        g.params.data = Storage::Cpu(p.to_vec());
        dot(&rv, g.forward(&CPU, &x, true, None).cpu())
    });
}
