//! The emulated device's cp.async and ldmatrix (kernels/device_fns.cuh's host versions) catch the
//! bugs a multi-stage pipeline invites, in conv variant v4 (kernels/conv.cu's `mainloop`): each
//! test plants one bug in a scratch copy of conv.cu (tests/common/planted.rs) and runs a child
//! that compares v4 with v2 (same operands and mma sequence, so equal bit for bit) on a conv
//! forward and backward whose GEMMs take 5 to 16 K-steps (the 3 stages wrap around):
//! - waiting for one group too few     → a stage is read before it lands (poisoned: NaN);
//! - issuing into the stage being read → the math reads the poison of the new copies;
//! - no barrier after the wait         → racecheck (ThreadSanitizer) reports a data race.
//!
//! Without a plant the child passes (so the comparison is not what fails).

mod common;

use common::planted::{build_override, emu_backend, kernel_source, plant, run_child, sanitizer_available};
use pix2pix::device::{ConvVariant, Device};
use pix2pix::ops::conv::{conv2d_backward, conv2d_forward, ConvGeom, ConvParams};
use pix2pix::tensor::{Shape, Span};

const WAIT: &str = "            cp_async_wait<STAGES - 2>();\n            __syncthreads();\n";
const ISSUE: &str = "if (nt < steps) issue(nt % STAGES, kbeg + nt * BK);";

/// Builds conv.cu with `from` replaced by `to` for `mode`, runs the child on `device`.
fn planted_run(mode: &str, device: &str, from: &str, to: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = plant(&kernel_source("conv.cu"), from, to);
    let lib = build_override(dir.path(), mode, &[("conv.cu", src)], "conv.cu");
    let (ok, out) = run_child("child_v4_matches_v2", device, &lib, &[]);
    println!("{out}");
    (ok, out)
}

#[test]
fn the_unplanted_pipeline_passes() {
    if emu_backend().is_none() {
        return;
    }
    let (ok, out) = planted_run("plain", "cuda-emu", ISSUE, ISSUE);
    assert!(ok, "the unchanged conv.cu fails the child:\n{out}");
}

#[test]
fn waiting_for_one_group_too_few_reads_poison() {
    if emu_backend().is_none() {
        return;
    }
    let early = WAIT.replace("STAGES - 2", "STAGES - 1");
    let (ok, out) = planted_run("plain", "cuda-emu", WAIT, &early);
    assert!(
        !ok && out.contains("v4 differs from v2"),
        "the early read went unnoticed:\n{out}"
    );
}

#[test]
fn issuing_into_the_stage_being_read_reads_poison() {
    if emu_backend().is_none() {
        return;
    }
    let wrong = ISSUE.replace("nt % STAGES", "t % STAGES");
    let (ok, out) = planted_run("plain", "cuda-emu", ISSUE, &wrong);
    assert!(
        !ok && out.contains("v4 differs from v2"),
        "the overwritten stage went unnoticed:\n{out}"
    );
}

#[test]
fn racecheck_reports_a_missing_barrier_after_the_wait() {
    if emu_backend().is_none() || !sanitizer_available(pix2pix::device::emu::Mode::Racecheck) {
        return;
    }
    let no_barrier = WAIT.replace("            __syncthreads();\n", "");
    let (ok, out) = planted_run("racecheck", "cuda-emu:racecheck", WAIT, &no_barrier);
    assert!(!ok && out.contains("data race"), "no TSan report:\n{out}");
}

#[test]
#[ignore = "run in a child process by the tests above"]
fn child_v4_matches_v2() {
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
    let (v2, v4) = (run(ConvVariant::V2), run(ConvVariant::V4));
    for ((role, a), b) in ["y", "dx", "dW"].iter().zip(&v4).zip(&v2) {
        assert!(b.iter().all(|v| v.is_finite()), "v2 {role} not finite");
        let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
        let bad = a.iter().filter(|v| !v.is_finite()).count();
        assert!(
            same,
            "v4 differs from v2 in {role} ({bad} of {} values not finite)",
            a.len()
        );
    }
}
