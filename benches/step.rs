//! Whole-step benchmark: one pix2pix training iteration (G forward, D step, G step, both Adam
//! updates) at batch sizes and resolutions given on the command line, on the CPU (and the GPU when
//! built with kernels and one is present). Prints median seconds per iteration, images/s and
//! achieved GFLOP/s against the step's work (SPEC.md §8: 21.3 GFLOP at 128², 87.4 at 256² per image),
//! plus a per-phase split on the CPU.
//!
//!   cargo bench --bench step                      # unet_128 @128² and unet_256 @256², batch 1, CPU
//!   cargo bench --bench step -- --device cuda --batch 1,8,64 --size 256
//!       # on CUDA: steps launched one by one and replayed from one CUDA graph, side by side
//!   cargo bench --bench step -- --model cycle_gan --size 128,256 --iters 3
//!       # CycleGAN: resnet_9blocks ngf 64 G_A/G_B, IN PatchGANs ndf 64, pool 0, batch 1:
//!       # 1.88 TFLOP per iteration at 256² (SPEC.md §8), a quarter of it at 128²
//!
//! Beside each figure: the work floor of SPEC.md §8 — the step's FLOP at the device's peak and the
//! ~2.3 GB of weight and Adam traffic at its bandwidth (`--peak-tflops`, `--peak-gbs`; defaults
//! are the H200's fp32 SIMT ~60 TFLOP/s and ~4.8 TB/s) — so the gap to the limit is visible.
//! On CUDA also the device memory: in use on the whole GPU, and how much of it this run's buffers
//! hold (above the context and the loaded kernels: the figure to compare with PyTorch's
//! `max_memory_allocated`, the `mem MiB` column of benches/pytorch_reference.py).

use pix2pix::device::Device;
use pix2pix::models::graph::StepGraph;
use pix2pix::models::model::Model;
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::pix2pix::{Pix2Pix, Pix2PixOptions};
use pix2pix::models::unet::UnetConfig;
use pix2pix::nn::NormKind;
use pix2pix::tensor::{Shape, Tensor};
use std::time::Instant;

// As in the CLI: the GEMM's packing buffers come and go every call; mimalloc keeps their pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn gflop_per_image(size: usize) -> f64 {
    match size {
        128 => 21.3,
        256 => 87.4,
        s => 87.4 * (s as f64 / 256.0).powi(2),
    }
}

fn main() -> anyhow::Result<()> {
    // As the CLI does: the step runs on a pool worker (see `device::cpu::on_pool`).
    pix2pix::device::cpu::on_pool(real_main)
}

fn real_main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device = Device::parse(&get("--device").unwrap_or_else(|| "cpu".into()))?;
    let batches: Vec<usize> = get("--batch")
        .unwrap_or_else(|| "1".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let sizes: Vec<usize> =
        get("--size").map_or(vec![128, 256], |s| s.split(',').map(|s| s.parse().unwrap()).collect());
    let iters: usize = get("--iters").map_or(5, |s| s.parse().unwrap());
    let ngf: usize = get("--ngf").map_or(64, |s| s.parse().unwrap());
    let peak_tflops: f64 = get("--peak-tflops").map_or(60.0, |s| s.parse().unwrap());
    let peak_gbs: f64 = get("--peak-gbs").map_or(4800.0, |s| s.parse().unwrap());
    // --variant (1-7), else --precision (its default variant), else PIX2PIX_CONV_VARIANT (read by
    // Device::parse).
    if let Some(v) = get("--variant") {
        device.set_conv_variant(pix2pix::device::ConvVariant::parse(&v)?)?;
    } else if let Some(p) = get("--precision") {
        device.set_precision(pix2pix::device::Precision::parse(&p)?)?;
    }
    println!(
        "device: {}; conv precision {} (conv variant {})",
        device.describe(),
        device.precision(),
        device.conv_variant()
    );
    if get("--model").as_deref() == Some("cycle_gan") {
        return cycle_gan(&device, &sizes, iters);
    }
    println!(
        "{:>6} {:>5} {:>10} {:>10} {:>9} {:>10}",
        "size", "batch", "s/iter", "img/s", "GFLOP/s", "ms/iter"
    );
    for &size in &sizes {
        let net = if size % 256 == 0 { "unet_256" } else { "unet_128" };
        for &batch in &batches {
            let gcfg = UnetConfig::named(net, ngf, true, NormKind::Batch)?;
            let dcfg = PatchGanConfig {
                input_nc: 6,
                ndf: ngf,
                n_layers: 3,
                norm: NormKind::Batch,
            };
            let mut m = Pix2Pix::new(gcfg, dcfg, Pix2PixOptions::default(), &device, 0)?;
            let s = Shape::new(batch, 3, size, size);
            let a: Vec<f32> = (0..s.numel()).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
            let b: Vec<f32> = (0..s.numel()).map(|i| ((i % 241) as f32 / 120.0) - 1.0).collect();
            let (a, b) = (device.upload_tensor(s, &a), device.upload_tensor(s, &b));
            let mut graph_line = String::new();
            let med = if device.is_cuda() {
                // Back-to-back steps with one synchronisation at the end, as in training: launched
                // one by one, then replayed from one captured CUDA graph.
                let eager = time_steps(&device, &mut m, &a, &b, iters, false);
                let graph = time_steps(&device, &mut m, &a, &b, iters, true);
                graph_line = format!(
                    "{:>6}   one by one {:.3} ms/iter, CUDA graph {:.3} ms/iter ({:.2}x)\n",
                    "",
                    eager * 1e3,
                    graph * 1e3,
                    eager / graph
                );
                graph.min(eager)
            } else {
                m.step(&device, &a, &b, 2e-4); // warm-up: allocations, page faults
                let mut times = vec![];
                for _ in 0..iters {
                    let t = Instant::now();
                    m.step(&device, &a, &b, 2e-4);
                    times.push(t.elapsed().as_secs_f64());
                }
                times.sort_by(|a, b| a.partial_cmp(b).unwrap());
                times[times.len() / 2]
            };
            let flop = gflop_per_image(size) * batch as f64 * (ngf as f64 / 64.0).powi(2);
            println!(
                "{size:>6} {batch:>5} {med:>10.4} {:>10.2} {:>9.1} {:>10.2}   ({net}, {} of {iters}, {})",
                batch as f64 / med,
                flop / med,
                med * 1e3,
                if device.is_cuda() { "best mode, mean" } else { "median" },
                device.describe()
            );
            print!("{graph_line}");
            // Per phase, from separate steps with a sync at each boundary.
            m.phase_times = Some(Default::default());
            for _ in 0..iters.min(3) {
                m.step(&device, &a, &b, 2e-4);
            }
            let pt = m.phase_times.take().unwrap();
            let total = pt.total();
            let split: Vec<String> = pt
                .names
                .iter()
                .zip(&pt.secs)
                .map(|(n, v)| format!("{n} {:.1} ms ({:.0}%)", v / pt.steps as f64 * 1e3, 100.0 * v / total))
                .collect();
            println!("{:>6}   phases: {}", "", split.join(", "));
            // The floor: compute at peak, or weights read ~3× plus Adam's 28 B per parameter.
            let params = (m.g.params.num_params() + m.d.params.num_params()) as f64;
            let floor_compute = flop / (peak_tflops * 1e3);
            let floor_bytes = (3.0 * 4.0 + 28.0) * params / (peak_gbs * 1e9);
            let mem = match &device {
                Device::Cuda(c) => format!(
                    ", GPU memory in use {:.0} MiB, {:.0} MiB of it this run's buffers",
                    c.memory_used() as f64 / 1048576.0,
                    c.memory_allocated() as f64 / 1048576.0
                ),
                Device::Cpu => String::new(),
            };
            println!(
                "{:>6}   floor: {:.3} ms compute at {peak_tflops} TFLOP/s, {:.3} ms traffic at {peak_gbs} GB/s → {:.1}× above{mem}",
                "",
                floor_compute * 1e3,
                floor_bytes * 1e3,
                med / floor_compute.max(floor_bytes)
            );
            let l = m.losses(&device);
            assert!(l.values().iter().all(|v| v.is_finite()), "non-finite losses {l:?}");
        }
    }
    Ok(())
}

/// Mean seconds per step over `iters` back-to-back steps with one synchronisation at the end,
/// after warm-up (two steps: the graph path captures on its second).
fn time_steps(device: &Device, m: &mut dyn Model, a: &Tensor, b: &Tensor, iters: usize, graph: bool) -> f64 {
    let mut g = StepGraph::new(graph);
    for _ in 0..2 {
        m.prepare_step(device, 2e-4, a.shape);
        g.run(device, m, a, b).expect("step");
    }
    device.synchronize();
    let t = Instant::now();
    for _ in 0..iters {
        m.prepare_step(device, 2e-4, a.shape);
        g.run(device, m, a, b).expect("step");
    }
    device.synchronize();
    assert_eq!(g.replays > 0, graph, "graph mode {graph}: {} replays", g.replays);
    t.elapsed().as_secs_f64() / iters as f64
}

/// User + system CPU seconds of this process, all threads (Linux: /proc/self/stat at 100 ticks/s;
/// NaN elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // `rest` starts at field 3 (the state letter, not a number): utime and stime (fields 14
    // and 15) are its 11th and 12th numbers.
    match (f.get(10), f.get(11)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// The CycleGAN step (SPEC.md §8: ≈ 1.88 TFLOP per iteration at 256², batch 1), timed like
/// pix2pix's, with the per-phase split from separate steps.
fn cycle_gan(device: &Device, sizes: &[usize], iters: usize) -> anyhow::Result<()> {
    use pix2pix::models::cyclegan::CycleGanOptions;
    use pix2pix::models::resnet::ResnetConfig;
    use pix2pix::models::ModelConfig;
    let g = ResnetConfig::named("resnet_9blocks", 64, NormKind::Instance, false)?;
    let d = PatchGanConfig {
        input_nc: 3,
        ndf: 64,
        n_layers: 3,
        norm: NormKind::Instance,
    };
    let opt = CycleGanOptions {
        pool_size: 0,
        ..Default::default()
    };
    let mut m = ModelConfig::CycleGan { g, d, opt }.build(device, 0)?;
    for &size in sizes {
        let s = Shape::new(1, 3, size, size);
        let a: Vec<f32> = (0..s.numel()).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
        let b: Vec<f32> = (0..s.numel()).map(|i| ((i % 241) as f32 / 120.0) - 1.0).collect();
        let (a, b) = (device.upload_tensor(s, &a), device.upload_tensor(s, &b));
        m.step(device, &a, &b, 2e-4); // warm-up
        device.synchronize();
        let (mut times, mut cpu) = (vec![], vec![]);
        for _ in 0..iters {
            let (t, c) = (Instant::now(), process_cpu_seconds());
            m.step(device, &a, &b, 2e-4);
            device.synchronize();
            times.push(t.elapsed().as_secs_f64());
            cpu.push(process_cpu_seconds() - c);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let med = median(&mut times);
        let flop = 1880.0 * (size as f64 / 256.0).powi(2);
        // Also the process's CPU time (all threads) per step: on a shared machine the wall time
        // includes waiting for a core, the CPU time does not (10 ms resolution).
        println!(
            "{size:>6} {:>5} {med:>10.4} {:>10.2} {:>9.1} {:>10.2}   (cycle_gan resnet_9blocks, median of {iters}, {}; cpu {:.2} ms)",
            1,
            1.0 / med,
            flop / med,
            med * 1e3,
            device.describe(),
            median(&mut cpu) * 1e3
        );
        m.set_phase_timing(true);
        m.step(device, &a, &b, 2e-4);
        let pt = m.phase_times().expect("timing on").clone();
        m.set_phase_timing(false);
        let total = pt.total();
        let split: Vec<String> = pt
            .names
            .iter()
            .zip(&pt.secs)
            .map(|(n, v)| format!("{n} {:.0} ms ({:.0}%)", v * 1e3, 100.0 * v / total))
            .collect();
        println!("{:>6}   phases: {}", "", split.join(", "));
        let l = m.losses(device);
        assert!(l.iter().all(|v| v.is_finite()), "non-finite losses {l:?}");
    }
    Ok(())
}
