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
//!
//! One file per op family: elementwise.rs (activations, dropout, tensor copies, Adam, losses, the
//! image pool, CycleGAN's padding and residual add), norm.rs (batch and instance norm), conv.rs
//! (conv and convT at the networks' shapes and general geometry); here, the whole training step
//! and the build's own PTX table.

#[path = "../common/mod.rs"]
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

mod conv;
mod elementwise;
mod norm;

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
