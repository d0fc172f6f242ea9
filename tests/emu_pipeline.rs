//! The emulated device's cp.async and ldmatrix (kernels/device_fns.cuh's host versions) catch the
//! bugs a multi-stage pipeline invites, in the conv variants that stage their tiles in several
//! stages (kernels/conv_tiles.cuh): each test plants one bug in a scratch copy of conv_tiles.cuh
//! (tests/common/planted.rs) and runs a child that compares the variant with its precision's
//! default one (same operands and mma sequence, so equal bit for bit) on a conv forward and
//! backward whose GEMMs take several K-steps (the stages wrap around).
//!
//! v4 (3-stage cp.async, against v2):
//! - waiting for one group too few     → a stage is read before it lands (poisoned: NaN);
//! - issuing into the stage being read → the math reads the poison of the new copies;
//! - no barrier after the wait         → racecheck (ThreadSanitizer) reports a data race.
//!
//! v6 (two register-staged stages of bf16 tiles, against v3):
//! - storing into the stage being read → the math reads the next step's operands;
//! - ldmatrix rows of B off by one n8 tile for half the lanes → wrong fragments;
//! - no barrier at the end of a K-step → racecheck reports a data race.
//!
//! Without a plant the child passes (so the comparison is not what fails).

mod common;

use common::planted::{build_override, emu_backend, kernel_source, plant, run_child, sanitizer_available};
use pix2pix::device::{ConvVariant, Device};
use pix2pix::ops::conv::{conv2d_backward, conv2d_forward, ConvGeom, ConvParams};
use pix2pix::tensor::{Shape, Span};

const WAIT: &str = "            cp_async_wait<STAGES - 2>();\n            __syncthreads();\n";
const ISSUE: &str = "if (nt < steps) issue(nt % STAGES, kbeg + nt * BK);";
const V6_STORE: &str = "        if (t + 1 < steps) store((t + 1) & 1);\n        __syncthreads();\n";
const V6_B_ROWS: &str = "&s.b[slot][w.wn + 16 * nj + (l & 7) + 8 * (l >> 4)]";

/// Builds conv.cu over conv_tiles.cuh with `from` replaced by `to` for `mode`, runs the child on
/// `device` for `variant` (4 or 6) against its precision's default variant.
fn planted_run(mode: &str, device: &str, variant: u8, from: &str, to: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let tiles = plant(&kernel_source("conv_tiles.cuh"), from, to);
    let files = [("conv.cu", kernel_source("conv.cu")), ("conv_tiles.cuh", tiles)];
    let lib = build_override(dir.path(), mode, &files, "conv.cu");
    let v = variant.to_string();
    let (ok, out) = run_child(
        "child_variant_matches_its_twin",
        device,
        &lib,
        &[("PLANTED_VARIANT", &v)],
    );
    println!("{out}");
    (ok, out)
}

#[test]
fn the_unplanted_pipelines_pass() {
    if emu_backend().is_none() {
        return;
    }
    for v in [4, 6] {
        let (ok, out) = planted_run("plain", "cuda-emu", v, ISSUE, ISSUE);
        assert!(ok, "the unchanged conv.cu fails the child for v{v}:\n{out}");
    }
}

#[test]
fn waiting_for_one_group_too_few_reads_poison() {
    if emu_backend().is_none() {
        return;
    }
    let early = WAIT.replace("STAGES - 2", "STAGES - 1");
    let (ok, out) = planted_run("plain", "cuda-emu", 4, WAIT, &early);
    assert!(
        !ok && out.contains("v4 tf32 differs from v2 tf32"),
        "the early read went unnoticed:\n{out}"
    );
}

#[test]
fn issuing_into_the_stage_being_read_reads_poison() {
    if emu_backend().is_none() {
        return;
    }
    let wrong = ISSUE.replace("nt % STAGES", "t % STAGES");
    let (ok, out) = planted_run("plain", "cuda-emu", 4, ISSUE, &wrong);
    assert!(
        !ok && out.contains("v4 tf32 differs from v2 tf32"),
        "the overwritten stage went unnoticed:\n{out}"
    );
}

#[test]
fn racecheck_reports_a_missing_barrier_after_the_wait() {
    if emu_backend().is_none() || !sanitizer_available(pix2pix::device::emu::Mode::Racecheck) {
        return;
    }
    let no_barrier = WAIT.replace("            __syncthreads();\n", "");
    let (ok, out) = planted_run("racecheck", "cuda-emu:racecheck", 4, WAIT, &no_barrier);
    assert!(!ok && out.contains("data race"), "no TSan report:\n{out}");
}

#[test]
fn v6_storing_into_the_stage_being_read_is_caught() {
    if emu_backend().is_none() {
        return;
    }
    let wrong = V6_STORE.replace("store((t + 1) & 1)", "store(t & 1)");
    let (ok, out) = planted_run("plain", "cuda-emu", 6, V6_STORE, &wrong);
    assert!(
        !ok && out.contains("v6 bf16 differs from v3 bf16"),
        "the overwritten stage went unnoticed:\n{out}"
    );
}

#[test]
fn v6_wrong_ldmatrix_rows_are_caught() {
    if emu_backend().is_none() {
        return;
    }
    let wrong = V6_B_ROWS.replace("8 * (l >> 4)", "8 * ((l >> 3) & 1)");
    let (ok, out) = planted_run("plain", "cuda-emu", 6, V6_B_ROWS, &wrong);
    assert!(
        !ok && out.contains("v6 bf16 differs from v3 bf16"),
        "the wrong fragment rows went unnoticed:\n{out}"
    );
}

#[test]
fn racecheck_reports_v6_without_its_end_of_step_barrier() {
    if emu_backend().is_none() || !sanitizer_available(pix2pix::device::emu::Mode::Racecheck) {
        return;
    }
    let no_barrier = V6_STORE.replace("        __syncthreads();\n", "");
    let (ok, out) = planted_run("racecheck", "cuda-emu:racecheck", 6, V6_STORE, &no_barrier);
    assert!(!ok && out.contains("data race"), "no TSan report:\n{out}");
}

#[test]
#[ignore = "run in a child process by the tests above"]
fn child_variant_matches_its_twin() {
    let variant = std::env::var("PLANTED_VARIANT").unwrap_or_else(|_| "4".into());
    let variant = ConvVariant::parse(&variant).unwrap();
    let twin = variant.precision().variant();
    let dev = Device::Cuda(emu_backend().expect("child: no emulated device"));
    let geom = ConvGeom::new(16, 24, 4, 2, 1);
    let xs = Shape::new(2, 16, 12, 12);
    let ys = Shape::new(2, 24, 6, 6);
    let wlen = geom.weight_len();
    let p = ConvParams {
        weight: Span { off: 0, len: wlen },
        bias: None,
    };
    let mut r = common::rng(21);
    let xv = common::random_vec(&mut r, xs.numel(), 0.01);
    let dyv = common::random_vec(&mut r, ys.numel(), 0.01);
    let wv = common::random_vec(&mut r, wlen, 0.01);
    let run = |v: ConvVariant| {
        dev.set_conv_variant(v).unwrap();
        let (x, dy, w) = (dev.upload_tensor(xs, &xv), dev.upload_tensor(ys, &dyv), dev.upload(&wv));
        let mut y = dev.upload_tensor(ys, &vec![f32::NAN; ys.numel()]);
        let mut dx = dev.upload_tensor(xs, &vec![f32::NAN; xs.numel()]);
        let mut grads = dev.zeros(wlen);
        conv2d_forward(&dev, &geom, &w, &p, &x, &mut y);
        conv2d_backward(&dev, &geom, &w, &p, Some(&mut grads), &x, &dy, Some(&mut dx), false);
        [dev.download(&y.data), dev.download(&dx.data), dev.download(&grads)]
    };
    let (base, mine) = (run(twin), run(variant));
    for ((role, a), b) in ["y", "dx", "dW"].iter().zip(&mine).zip(&base) {
        assert!(b.iter().all(|v| v.is_finite()), "{twin} {role} not finite");
        let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
        let bad = a.iter().filter(|v| !v.is_finite()).count();
        assert!(
            same,
            "{variant} differs from {twin} in {role} ({bad} of {} values not finite)",
            a.len()
        );
    }
}
