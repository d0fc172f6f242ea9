//! Tests of the emulated CUDA device itself (device/emu): that it runs exactly the kernels the
//! Rust code launches, that it refuses what a GPU refuses, and that the bugs it exists to catch are
//! caught. Planted bugs are scratch copies of our kernels with one change, compiled here the way
//! build.rs compiles the real ones and loaded over them (PIX2PIX_EMU_OVERRIDE) in a child process
//! (a kernel fault is sticky for the process's context, as on a GPU, and the sanitizer builds need
//! their runtime preloaded):
//! - an out-of-bounds read  → memcheck (AddressSanitizer) reports a heap-buffer-overflow at its line;
//! - a missing __syncthreads → racecheck (ThreadSanitizer) reports a data race in block_sum;
//! - a wrong index          → the GPU-vs-CPU comparison fails;
//! - threads of one block at different __syncthreads, a shuffle naming an exited lane → the
//!   emulator's own checks report them, naming the kernel, block, thread and line.

mod common;

use common::planted::{
    build_override, child_device, emu_backend, kernel_source, plant, run_child, sanitizer_available,
};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use pix2pix::device::cuda::{embedded, err_str, ptx_entries};
use pix2pix::device::{emu, CudaBackend, Device};
use pix2pix::tensor::Shape;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// The kernel tables agree: the Rust launch sites, the PTX .entry names, the emulator's host builds.

/// Every `"..."` literal in the Rust files under `dir`, and the (family, kernel) of every
/// `launch!(c, "family", "kernel", ...)` whose kernel is a literal.
fn rust_literals(dir: &Path, lits: &mut BTreeSet<String>, launches: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_literals(&p, lits, launches);
            continue;
        }
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, part) in text.split('"').enumerate() {
            if i % 2 == 1 && !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                lits.insert(part.to_string());
            }
        }
        for site in text.split("launch!(").skip(1) {
            let args: Vec<&str> = site.splitn(4, ',').map(str::trim).collect();
            if args.len() == 4 && args[1].starts_with('"') && args[2].starts_with('"') {
                launches.push((args[1].trim_matches('"').into(), args[2].trim_matches('"').into()));
            }
        }
    }
}

#[test]
fn kernel_tables_agree() {
    assert!(
        !embedded::PTX_TABLE.is_empty() || !embedded::REQUIRED,
        "no PTX embedded"
    );
    let Some(_c) = emu_backend() else { return };
    let arch = embedded::archs()[0];
    let mut ptx: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for e in embedded::PTX_TABLE {
        if e.arch == arch {
            for (name, sizes) in ptx_entries(e.text()) {
                ptx.insert(name, (e.family.to_string(), sizes.len()));
            }
        }
    }
    let host: BTreeMap<String, (String, usize)> = emu::kernels()
        .into_iter()
        .map(|(family, name, n)| (name, (family, n)))
        .collect();
    assert_eq!(
        ptx, host,
        "PTX .entry table (left) vs the emulator's host builds (right)"
    );

    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut lits, mut launches) = (BTreeSet::new(), Vec::new());
    rust_literals(&src.join("ops"), &mut lits, &mut launches);
    assert!(launches.len() >= 10, "found only {} launch! sites", launches.len());
    for (family, name) in &launches {
        let entry = ptx
            .get(name)
            .unwrap_or_else(|| panic!("launch!(.., {family:?}, {name:?}) has no PTX .entry"));
        assert_eq!(
            &entry.0, family,
            "{name} is launched as {family}.cu but lives in {}.cu",
            entry.0
        );
    }
    for name in ptx.keys() {
        assert!(
            lits.contains(name),
            "kernel {name} is never named by src/ops: dead, or launched by a computed name"
        );
    }
    println!("{} kernels, {} launch! sites checked", ptx.len(), launches.len());
}

/// Every kernel stays host-compilable: no dynamic shared memory (`extern __shared__`), no inline PTX
/// and no textures outside the one header of small device functions (kernels/device_fns.cuh, for
/// mma/ldmatrix/cp.async when they come, each with a host version from the PTX ISA's layouts).
#[test]
fn kernels_stay_host_compilable() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "device_fns.cuh" || !(name.ends_with(".cu") || name.ends_with(".cuh")) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for bad in [
                "extern __shared__",
                "asm(",
                "asm volatile",
                "__asm__",
                "tex2D",
                "cudaMalloc",
            ] {
                assert!(
                    !code.contains(bad),
                    "kernels/{name}:{}: {bad:?} belongs in kernels/device_fns.cuh",
                    i + 1
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a GPU refuses, the emulator refuses.

#[test]
fn launch_limits_are_cuda_errors_naming_the_kernel() {
    let Some(c) = emu_backend() else { return };
    let f = c.func("tensor", "tensor_fill");
    let mut y = c.alloc_zeros(64);
    let (n, v) = (64i64, 1.0f32);
    let try_launch = |cfg: LaunchConfig, y: &mut cudarc::driver::CudaSlice<f32>| {
        let mut b = c.stream.launch_builder(&f);
        b.arg(y).arg(&n).arg(&v);
        // SAFETY: the arguments match tensor_fill(float*, long long, float).
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(err_str)
    };
    let cases = [
        ((1, 1, 1), (2048, 1, 1), 0, "over the limits"),
        ((1, 70000, 1), (32, 1, 1), 0, "over the limits"),
        ((1, 1, 1), (32, 1, 1), 100_000, "dynamic shared memory"),
        ((0, 1, 1), (32, 1, 1), 0, "zero grid"),
    ];
    for (grid, block, smem, want) in cases {
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: smem,
        };
        let e = try_launch(cfg, &mut y).expect_err("the launch should be refused");
        println!("{e}");
        assert!(
            e.contains("CUDA_ERROR_INVALID_VALUE") && e.contains("tensor_fill") && e.contains(want),
            "{e}"
        );
    }
    // A good launch still works afterwards (launch errors are not sticky).
    try_launch(LaunchConfig::for_num_elems(64), &mut y).unwrap();
    c.check().unwrap();
    assert_eq!(c.download(&y), vec![1.0; 64]);
}

/// A kernel declared with `__launch_bounds__(256, …)` (`.maxntid 256, 1, 1` in its PTX) refuses a
/// block of 512 threads, as a GPU does (its registers were allocated for 256), and reports the
/// bound as its MAX_THREADS_PER_BLOCK attribute.
#[test]
fn launch_bounds_are_enforced() {
    let Some(c) = emu_backend() else { return };
    let f = c.func("conv", "conv_fwd_k4_tf32");
    assert_eq!(f.max_threads_per_block().unwrap(), 256);
    assert_eq!(c.func("tensor", "tensor_fill").max_threads_per_block().unwrap(), 1024);
    // The block size is checked before the arguments are looked at.
    let mut y = c.alloc_zeros(64);
    let mut b = c.stream.launch_builder(&f);
    b.arg(&mut y);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (512, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: refused before any argument is read.
    let e = unsafe { b.launch(cfg) }
        .map(|_| ())
        .map_err(err_str)
        .expect_err("over the launch bound");
    assert!(
        e.contains("CUDA_ERROR_INVALID_VALUE") && e.contains("conv_fwd_k4_tf32") && e.contains(".maxntid 256"),
        "{e}"
    );
    c.check().unwrap();
}

#[test]
fn host_pointers_and_unknown_kernels_are_refused() {
    let Some(c) = emu_backend() else { return };
    let f = c.func("tensor", "tensor_fill");
    let mut host = vec![0.0f32; 8];
    let p = host.as_mut_ptr() as u64;
    let (n, v) = (8i64, 1.0f32);
    let mut b = c.stream.launch_builder(&f);
    b.arg(&p).arg(&n).arg(&v);
    // SAFETY: deliberately wrong (a host pointer); the emulator must refuse it before running.
    let e = unsafe { b.launch(LaunchConfig::for_num_elems(8)) }
        .map(|_| ())
        .map_err(err_str)
        .unwrap_err();
    assert!(e.contains("argument 0") && e.contains("device allocation"), "{e}");
    assert_eq!(host, vec![0.0; 8]);

    let ptx = c.ptx.entries().find(|e| e.family == "tensor").unwrap().text();
    let m = c.ctx.load_module(Ptx::from_src(ptx)).unwrap();
    let e = m
        .load_function("no_such_kernel")
        .map(|_| ())
        .map_err(err_str)
        .unwrap_err();
    assert!(
        e.contains("CUDA_ERROR_NOT_FOUND") && e.contains("no_such_kernel"),
        "{e}"
    );

    let r = std::panic::catch_unwind(|| c.check_arity("tensor", "tensor_fill", 2));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("tensor_fill") && msg.contains("takes 3"), "{msg}");
}

#[test]
fn fresh_allocations_are_nan_and_the_device_looks_like_a_gpu() {
    let Some(c) = emu_backend() else { return };
    // SAFETY: read back without writing, on purpose: the emulator fills fresh memory with NaN.
    let s = unsafe { c.stream.alloc::<f32>(100) }.unwrap();
    assert!(c.stream.clone_dtoh(&s).unwrap().iter().all(|v| v.is_nan()));
    assert!(c.sm_count >= 100, "SM count {} is not an A100/H100's", c.sm_count);
    assert!(c.cc == 90 || c.cc == 80, "compute capability {}", c.cc);
    assert!(c.describe().contains("emulated"), "{}", c.describe());
}

/// Stream capture records the launches (their arguments copied at capture time) and a graph
/// launch replays them; a host synchronisation or an allocation inside the capture fails and
/// invalidates it, as on a GPU, so a step that syncs inside cannot pass for capturable here.
#[test]
fn graphs_capture_and_replay() {
    use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
    let Some(c) = emu_backend() else { return };
    let f = c.func("tensor", "tensor_fill");
    let mut y = c.alloc_zeros(1000);
    let (n, mut v) = (1000i64, 3.0f32);
    let before = emu::launches();
    c.stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    {
        let mut b = c.stream.launch_builder(&f);
        b.arg(&mut y).arg(&n).arg(&v);
        // SAFETY: tensor_fill(float*, long long, float).
        unsafe { b.launch(LaunchConfig::for_num_elems(1000)) }.unwrap();
    }
    let graph = c
        .stream
        .end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH)
        .unwrap()
        .expect("a graph");
    v = 7.0; // changing the host value after capture changes nothing: arguments were copied
    assert_eq!(v, 7.0);
    assert_eq!(
        c.download(&y),
        vec![0.0; 1000],
        "a captured launch must not run at capture"
    );
    for _ in 0..3 {
        graph.launch().unwrap();
    }
    c.check().unwrap();
    assert_eq!(c.download(&y), vec![3.0; 1000]);
    let after = emu::launches();
    assert_eq!(
        (after.graphs - before.graphs, after.graph_kernels - before.graph_kernels),
        (3, 3)
    );
    assert_eq!(after.kernels, before.kernels, "no kernel launched one by one");

    c.stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    let e = c.stream.synchronize().map_err(err_str).unwrap_err();
    assert!(
        e.contains("CAPTURE_UNSUPPORTED") && e.contains("synchronisation"),
        "{e}"
    );
    let e = c
        .stream
        .end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH)
        .map(|_| ())
        .map_err(err_str)
        .unwrap_err();
    assert!(e.contains("INVALIDATED"), "{e}");
    c.stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    assert!(
        c.stream.alloc_zeros::<f32>(10).is_err(),
        "an allocation inside a capture"
    );
    let _ = c
        .stream
        .end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH);
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Planted bugs, each in a child process.

#[test]
fn memcheck_reports_an_out_of_bounds_read() {
    if emu_backend().is_none() || !sanitizer_available(emu::Mode::Memcheck) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = plant(
        &kernel_source("activation.cu"),
        "GRID_STRIDE(i, n) y[i] = act_fwd(kind, slope, x[i]);",
        "GRID_STRIDE(i, n) y[i] = act_fwd(kind, slope, x[i + 1]);",
    );
    let lib = build_override(dir.path(), "memcheck", &[("activation.cu", src)], "activation.cu");
    let (ok, out) = run_child("child_activation_forward", "cuda-emu:memcheck", &lib, &[]);
    println!("{out}");
    assert!(!ok, "the out-of-bounds read went unnoticed");
    assert!(
        out.contains("heap-buffer-overflow") && out.contains("activation.cu"),
        "no ASan report:\n{out}"
    );
}

#[test]
fn racecheck_reports_a_missing_syncthreads() {
    if emu_backend().is_none() || !sanitizer_available(emu::Mode::Racecheck) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let common = plant(
        &kernel_source("common.cuh"),
        "    if (lane == 0) partial[warp] = v;\n    __syncthreads();\n",
        "    if (lane == 0) partial[warp] = v;\n",
    );
    let files = [("common.cuh", common), ("loss.cu", kernel_source("loss.cu"))];
    let lib = build_override(dir.path(), "racecheck", &files, "loss.cu");
    let (ok, out) = run_child("child_l1_loss", "cuda-emu:racecheck", &lib, &[]);
    println!("{out}");
    assert!(!ok, "the missing __syncthreads went unnoticed");
    assert!(
        out.contains("data race") && out.contains("block_sum"),
        "no TSan report:\n{out}"
    );
}

#[test]
fn a_wrong_index_fails_the_gpu_vs_cpu_comparison() {
    if emu_backend().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = plant(
        &kernel_source("conv.cu"),
        "const int ih = c.ih0 + ki, iw = c.iw0 + kj;",
        "const int ih = c.ih0 + ki, iw = c.iw0 + ki;",
    );
    let lib = build_override(dir.path(), "plain", &[("conv.cu", src)], "conv.cu");
    let (ok, out) = run_child("child_conv_forward", "cuda-emu", &lib, &[]);
    println!("{out}");
    assert!(
        !ok && out.contains("relative error"),
        "the wrong index went unnoticed:\n{out}"
    );
}

const SCRATCH: &str = r#"
#include "common.cuh"
KERNEL void planted_divergent_barrier(float* y) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    y[threadIdx.x] = 1.0f;
}
KERNEL void planted_shfl_exited(float* y) {
    if (threadIdx.x >= 16) return;
    y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
"#;

#[test]
fn barrier_divergence_and_bad_warp_masks_are_kernel_faults() {
    if emu_backend().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("scratch.cu", SCRATCH.to_string()),
        ("common.cuh", kernel_source("common.cuh")),
    ];
    let lib = build_override(dir.path(), "plain", &files, "scratch.cu");
    for (kernel, want) in [
        ("planted_divergent_barrier", "different __syncthreads"),
        ("planted_shfl_exited", "which has exited"),
    ] {
        let (ok, out) = run_child("child_scratch_kernel", "cuda-emu", &lib, &[("PLANTED_KERNEL", kernel)]);
        println!("{out}");
        assert!(!ok, "{kernel}: the fault went unnoticed");
        assert!(
            out.contains("kernel fault") && out.contains(kernel) && out.contains(want) && out.contains("scratch.cu:"),
            "{kernel}: expected a fault naming the kernel, the line and {want:?}:\n{out}"
        );
    }
}

// ---- the children ----------------------------------------------------------------------------------

fn child_devices() -> (Device, Arc<CudaBackend>) {
    let c = emu_backend().expect("child: no emulated device");
    (Device::Cuda(c.clone()), c)
}

#[test]
#[ignore = "run in a child process by memcheck_reports_an_out_of_bounds_read"]
fn child_activation_forward() {
    use pix2pix::ops::activation::{activation_forward, Act};
    let (g, _) = child_devices();
    let shape = Shape::new(1, 1, 10, 100);
    let x = g.upload_tensor(shape, &vec![0.5; shape.numel()]);
    let mut y = g.zeros_tensor(shape);
    activation_forward(&g, Act::Relu, &x, &mut y);
    g.download(&y.data);
}

#[test]
#[ignore = "run in a child process by racecheck_reports_a_missing_syncthreads"]
fn child_l1_loss() {
    use pix2pix::ops::loss::{l1_loss, LossOut};
    let (g, _) = child_devices();
    let shape = Shape::new(1, 3, 32, 32);
    let mut r = common::rng(3);
    let x = g.upload_tensor(shape, &common::random_vec(&mut r, shape.numel(), 0.01));
    let y = g.upload_tensor(shape, &common::random_vec(&mut r, shape.numel(), 0.01));
    let out = LossOut {
        slot: 0,
        weight: 1.0,
        grad_weight: 1.0,
    };
    let mut losses = g.zeros(4);
    l1_loss(&g, &x, &y, out, &mut losses, None);
    g.download(&losses);
}

#[test]
#[ignore = "run in a child process by a_wrong_index_fails_the_gpu_vs_cpu_comparison"]
fn child_conv_forward() {
    let (g, _) = child_devices();
    conv_forward_matches_cpu(&g);
}

/// A small conv forward on `g` against the CPU reference (random non-zero inputs; the output
/// poisoned with NaN, so an unwritten element fails).
fn conv_forward_matches_cpu(g: &Device) {
    use pix2pix::ops::conv::{conv2d_forward, ConvGeom, ConvParams};
    use pix2pix::tensor::Span;
    let geom = ConvGeom::new(3, 8, 4, 2, 1);
    let xs = Shape::new(1, 3, 16, 16);
    let ws = Shape::new(8, 3, 4, 4);
    let ys = Shape::new(1, 8, 8, 8);
    let mut r = common::rng(5);
    let xv = common::random_vec(&mut r, xs.numel(), 0.01);
    let wv = common::random_vec(&mut r, ws.numel(), 0.01);
    let p = ConvParams {
        weight: Span {
            off: 0,
            len: ws.numel(),
        },
        bias: None,
    };
    let mut outs = vec![];
    for d in [&Device::Cpu, g] {
        let (x, w) = (d.upload_tensor(xs, &xv), d.upload(&wv));
        let mut y = d.upload_tensor(ys, &vec![f32::NAN; ys.numel()]);
        conv2d_forward(d, &geom, &w, &p, &x, &mut y);
        outs.push(d.download(&y.data));
    }
    let e = common::rel_err(&outs[1], &outs[0]);
    assert!(e <= 1e-5, "conv forward: relative error {e:.3e} > 1e-5");
}

#[test]
#[ignore = "run in a child process by barrier_divergence_and_bad_warp_masks_are_kernel_faults"]
fn child_scratch_kernel() {
    let (_, c) = child_devices();
    let kernel = std::env::var("PLANTED_KERNEL").unwrap();
    let ptx =
        format!(".version 9.0\n.target sm_80\n.visible .entry {kernel}(\n.param .u64 {kernel}_param_0\n)\n{{\n}}\n");
    let m = c.ctx.load_module(Ptx::from_src(ptx)).unwrap();
    let f = m.load_function(&kernel).unwrap();
    let mut y = c.alloc_zeros(64);
    let mut b = c.stream.launch_builder(&f);
    b.arg(&mut y);
    // SAFETY: the scratch kernels take one float* of at least 32 elements.
    unsafe {
        b.launch(LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        })
    }
    .unwrap();
    c.check().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Which PTX a driver gets: the emulated driver reports the CUDA version PIX2PIX_EMU_DRIVER names and
// refuses PTX newer than that version loads (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), as a real one does.

/// The toolchain names of the embedded CUDA 13 (ISA 9.x) and CUDA 12 (ISA 8.x) PTX, or None (with
/// a line saying so) when this build lacks one of them.
fn both_toolchains() -> Option<(&'static str, &'static str)> {
    let sets = embedded::sets();
    let new = sets.iter().find(|s| s.isa.0 == 9).map(|s| s.toolchain);
    let old = sets.iter().find(|s| s.isa.0 == 8).map(|s| s.toolchain);
    match (new, old) {
        (Some(n), Some(o)) => Some((n, o)),
        _ => {
            if embedded::REQUIRED {
                panic!(
                    "PIX2PIX_REQUIRE_CUDA=1 but the build lacks ISA 9.x or 8.x PTX: {:?}",
                    embedded::TOOLCHAINS
                );
            }
            println!(
                "skipped: this build has no PTX of both CUDA 13 and CUDA 12 ({:?})",
                embedded::TOOLCHAINS
            );
            None
        }
    }
}

#[test]
fn ptx_isa_versions_map_to_the_drivers_that_load_them() {
    use pix2pix::device::cuda::ptx_needs_cuda;
    // The PTX ISA release history: 7.x is CUDA 11.x; 8.0–8.5 is 12.0–12.5 (12.6 kept 8.5); 8.6,
    // 8.7, 8.8 came with 12.7, 12.8, 12.9; 9.0 with 13.0.
    let table = [
        ((7, 8), 11080),
        ((8, 0), 12000),
        ((8, 4), 12040),
        ((8, 5), 12050),
        ((8, 6), 12070),
        ((8, 7), 12080),
        ((8, 8), 12090),
        ((9, 0), 13000),
        ((9, 1), 13010),
    ];
    for (isa, cuda) in table {
        assert_eq!(ptx_needs_cuda(isa), Some(cuda), "PTX ISA {isa:?}");
    }
    assert_eq!(ptx_needs_cuda((6, 5)), None);
}

/// Runs `child_ptx_choice` on the plain emulated device with `env`; returns (succeeded, output).
fn run_ptx_child(env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_ptx_choice",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("PIX2PIX_TEST_DEVICE", "cuda-emu")
    .env("RUST_BACKTRACE", "0")
    .env_remove("PIX2PIX_EMU_DRIVER")
    .env_remove("PIX2PIX_EMU_PTX_MAX")
    .env_remove("PIX2PIX_EMU_GPU");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What the child prints after "loaded: " (which set it loaded; the test harness may print its
/// own words before it on the same line).
fn loaded_line(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.split_once("loaded: "))
        .map(|(_, rest)| rest)
        .unwrap_or("")
}

#[test]
fn a_cuda_13_driver_loads_the_newest_ptx() {
    let Some((new, _)) = both_toolchains() else { return };
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "13000")]);
    assert!(ok, "{text}");
    assert!(
        loaded_line(&text).contains(&format!("PTX sm_90 ISA 9.0 by {new}")),
        "{text}"
    );
    assert!(
        text.contains("driver CUDA 13.0") && text.contains("the newest PTX for this GPU"),
        "{text}"
    );
}

#[test]
fn a_cuda_12_4_driver_loads_the_cuda_12_ptx_and_runs_it() {
    let Some((new, old)) = both_toolchains() else { return };
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "12040")]);
    assert!(ok, "{text}");
    let line = loaded_line(&text);
    assert!(line.contains(&format!("PTX sm_90 ISA 8.0 by {old}")), "{text}");
    // describe() says why: the CUDA 13 PTX needs a newer driver.
    assert!(
        text.contains(&format!("{new}'s PTX (ISA 9.0) needs a CUDA 13.0 driver")),
        "{text}"
    );
    assert!(text.contains("conv forward matches the CPU"), "{text}");
}

#[test]
fn a_v100_under_a_cuda_12_driver_gets_sm_70_ptx() {
    let Some((_, old)) = both_toolchains() else { return };
    if !embedded::archs().contains(&70) {
        assert!(!embedded::REQUIRED || std::env::var_os("PIX2PIX_CUDA_ARCHS").is_some());
        println!("skipped: no sm_70 PTX in this build (PIX2PIX_CUDA_ARCHS)");
        return;
    }
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "12040"), ("PIX2PIX_EMU_GPU", "v100")]);
    assert!(ok, "{text}");
    assert!(
        loaded_line(&text).contains(&format!("PTX sm_70 ISA 8.0 by {old}")),
        "{text}"
    );
    assert!(
        text.contains("sm_70") && text.contains("conv forward matches the CPU"),
        "{text}"
    );
}

#[test]
fn a_driver_refusing_ptx_it_should_load_falls_back_to_older_ptx() {
    let Some((new, old)) = both_toolchains() else { return };
    // Reports CUDA 13.0 but loads only ISA ≤ 8.0: the 9.0 load fails with
    // CUDA_ERROR_UNSUPPORTED_PTX_VERSION and the CUDA 12 PTX is taken instead.
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "13000"), ("PIX2PIX_EMU_PTX_MAX", "80")]);
    assert!(ok, "{text}");
    assert!(
        loaded_line(&text).contains(&format!("PTX sm_90 ISA 8.0 by {old}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "PTX sm_90 ISA 9.0 by {new}: the driver refused it (CUDA_ERROR_UNSUPPORTED_PTX_VERSION)"
        )),
        "{text}"
    );
}

#[test]
fn pix2pix_ptx_picks_a_toolchain() {
    let Some((_, old)) = both_toolchains() else { return };
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "13000"), ("PIX2PIX_PTX", "nvrtc")]);
    assert!(ok, "{text}");
    assert!(
        loaded_line(&text).contains(&format!("PTX sm_90 ISA 8.0 by {old}")),
        "{text}"
    );
    assert!(text.contains("PIX2PIX_PTX=nvrtc"), "{text}");
    let (ok, text) = run_ptx_child(&[("PIX2PIX_PTX", "clang")]);
    assert!(!ok && text.contains("PIX2PIX_PTX=clang names no toolchain"), "{text}");
}

#[test]
fn a_cuda_11_driver_gets_no_kernels_and_is_told_why() {
    let Some((_, old)) = both_toolchains() else { return };
    let (ok, text) = run_ptx_child(&[("PIX2PIX_EMU_DRIVER", "11080")]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("no embedded PTX loads")
            && text.contains(&format!("{old}'s PTX (ISA 8.0) needs a CUDA 12.0 driver")),
        "{text}"
    );
}

#[test]
#[ignore = "run in a child process by the PTX-choice tests above"]
fn child_ptx_choice() {
    let c = match Device::parse(&child_device()) {
        Ok(Device::Cuda(c)) => c,
        Ok(Device::Cpu) => unreachable!(),
        Err(e) => panic!("{e:#}"),
    };
    println!("loaded: {}", c.ptx);
    println!("describe: {}", c.describe());
    conv_forward_matches_cpu(&Device::Cuda(c));
    println!("conv forward matches the CPU");
}
