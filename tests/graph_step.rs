//! The training step as a CUDA graph (models::graph), on the emulated CUDA device (or a GPU):
//! steps replayed from one captured graph give bit-identical losses, weights, gradients, Adam
//! moments, running statistics and BN counters to the same steps launched one by one, so the
//! values that change from step to step (Adam's factors, dropout masks, image-pool plans, the
//! counters) do change under replay; and on the emulator each replayed step is exactly one graph launch.

mod common;
use common::{cuda_device, random_vec, rng};
use pix2pix::device::{emu, Device};
use pix2pix::models::cyclegan::CycleGanOptions;
use pix2pix::models::graph::{StepGraph, StepRun};
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::pix2pix::Pix2PixOptions;
use pix2pix::models::resnet::ResnetConfig;
use pix2pix::models::unet::UnetConfig;
use pix2pix::models::ModelConfig;
use pix2pix::nn::layers::NormKind;
use pix2pix::tensor::Shape;

const STEPS: usize = 5;

/// The emulator's launch counters are per process: the tests that read them run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One network's weights, gradients, Adam moments, running statistics and counters.
type NetState = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<i64>);

struct Run {
    how: Vec<StepRun>,
    losses: Vec<Vec<f32>>,
    state: Vec<NetState>,
}

fn run(dev: &Device, cfg: &ModelConfig, shape: Shape, graph: bool) -> Run {
    let mut model = cfg.build(dev, 7).unwrap();
    let model = model.as_mut();
    let mut r = rng(3);
    let mut a = dev.zeros_tensor(shape);
    let mut b = dev.zeros_tensor(shape);
    let mut g = StepGraph::new(graph);
    let mut out = Run {
        how: vec![],
        losses: vec![],
        state: vec![],
    };
    for step in 0..STEPS {
        // New images every step, written into the same input buffers (as the training loop does).
        dev.write(&mut a.data, &random_vec(&mut r, shape.numel(), 0.0));
        dev.write(&mut b.data, &random_vec(&mut r, shape.numel(), 0.0));
        // A learning rate that changes every step: Adam's factors must follow under replay.
        model.prepare_step(dev, 2e-4 * (1.0 + step as f64), shape);
        let before = emu::active().map(|_| emu::launches());
        out.how.push(g.run(dev, model, &a, &b).unwrap());
        if let (Some(before), StepRun::Eager) = (before, out.how[step]) {
            let after = emu::launches();
            if step == 0 {
                println!("an eager step: {} kernel launches", after.kernels - before.kernels);
            }
        }
        if let (Some(before), Some(StepRun::Replayed)) = (before, out.how.last()) {
            let after = emu::launches();
            assert_eq!(
                (after.kernels - before.kernels, after.graphs - before.graphs),
                (0, 1),
                "a replayed step is one graph launch and no kernel launch"
            );
            let k = after.graph_kernels - before.graph_kernels;
            assert!(k > 100, "the graph holds the step's kernels");
            if step == STEPS - 1 {
                println!("a replayed step: 1 graph launch of {k} kernels, 0 kernel launches");
            }
        }
        out.losses.push(model.losses(dev));
    }
    for (_, ps) in model.networks() {
        let d = |s| dev.download(s);
        out.state.push((
            d(&ps.data),
            d(&ps.grad),
            d(&ps.adam_m),
            d(&ps.adam_v),
            d(&ps.buffers),
            ps.counters.clone(),
        ));
    }
    out
}

fn check(name: &str, dev: &Device, cfg: &ModelConfig, shape: Shape) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let eager = run(dev, cfg, shape, false);
    let graph = run(dev, cfg, shape, true);
    assert!(eager.how.iter().all(|h| *h == StepRun::Eager));
    let mut expected = vec![StepRun::Eager, StepRun::Captured];
    expected.resize(STEPS, StepRun::Replayed);
    assert_eq!(graph.how, expected, "{name}: warm-up, capture, then replays");
    for (i, (e, g)) in eager.losses.iter().zip(&graph.losses).enumerate() {
        assert_eq!(e, g, "{name}: losses of step {} differ between eager and graph", i + 1);
    }
    // Successive steps really differ (fresh inputs, masks and factors), so equality means something.
    assert_ne!(eager.losses[STEPS - 2], eager.losses[STEPS - 1]);
    for (n, (e, g)) in eager.state.iter().zip(&graph.state).enumerate() {
        assert!(e.0 == g.0, "{name}: network {n} weights differ");
        assert!(e.1 == g.1, "{name}: network {n} gradients differ");
        assert!(e.2 == g.2 && e.3 == g.3, "{name}: network {n} Adam moments differ");
        assert!(e.4 == g.4, "{name}: network {n} running statistics differ");
        assert_eq!(e.5, g.5, "{name}: network {n} BN counters differ");
    }
    println!("{name}: {STEPS} steps, graph replays bit-identical to eager launches");
}

fn patchgan(input_nc: usize, norm: NormKind) -> PatchGanConfig {
    PatchGanConfig {
        input_nc,
        ndf: 8,
        n_layers: 3,
        norm,
    }
}

#[test]
fn pix2pix_graph_replay_matches_eager_steps() {
    let Some(dev) = cuda_device() else { return };
    let cfg = ModelConfig::Pix2Pix {
        // unet_128 with dropout: its two innermost middle levels draw new masks every step.
        g: UnetConfig::named("unet_128", 8, true, NormKind::Batch).unwrap(),
        d: patchgan(6, NormKind::Batch),
        opt: Pix2PixOptions::default(),
    };
    check("pix2pix unet_128", &dev, &cfg, Shape::new(1, 3, 128, 128));
}

#[test]
fn cyclegan_without_pool_graph_replay_matches_eager_steps() {
    let Some(dev) = cuda_device() else { return };
    let cfg = ModelConfig::CycleGan {
        g: ResnetConfig::named("resnet_6blocks", 8, NormKind::Instance, false).unwrap(),
        d: patchgan(3, NormKind::Instance),
        opt: CycleGanOptions {
            pool_size: 0,
            ..CycleGanOptions::default()
        },
    };
    check("cycle_gan resnet_6blocks pool 0", &dev, &cfg, Shape::new(1, 3, 64, 64));
}

/// With image pools (size 3: three steps fill them, then each image is swapped or passed on by
/// the host's draws, which reach the graph as each step's plan).
#[test]
fn cyclegan_with_pool_graph_replay_matches_eager_steps() {
    let Some(dev) = cuda_device() else { return };
    let cfg = ModelConfig::CycleGan {
        g: ResnetConfig::named("resnet_6blocks", 8, NormKind::Instance, false).unwrap(),
        d: patchgan(3, NormKind::Instance),
        opt: CycleGanOptions {
            pool_size: 3,
            ..CycleGanOptions::default()
        },
    };
    check("cycle_gan resnet_6blocks pool 3", &dev, &cfg, Shape::new(1, 3, 64, 64));
    assert!(StepGraph::new(true)
        .eager_reason(&Device::Cpu, cfg.build(&Device::Cpu, 0).unwrap().as_ref())
        .is_some());
}

/// The training loop on the device: `train` (graph, losses read asynchronously) and
/// `train --no-graph` write the same loss log and the same weights. 7 images at batch 2 make a
/// smaller last batch each epoch, so the graph is dropped and captured again at every epoch.
#[test]
fn train_with_and_without_graph_agree() {
    use pix2pix::checkpoint::read_safetensors;
    let Some(dev) = cuda_device() else { return };
    drop(dev);
    let spec = std::env::var("PIX2PIX_TEST_DEVICE").unwrap_or_else(|_| "cuda-emu".into());
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    pix2pix::data::make_synthetic_dataset(&d.join("data"), 7, 0, 0, 128, 4).unwrap();
    let args = |name: &'static str, more: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "--dataroot",
            "data",
            "--name",
            name,
            "--netG",
            "unet_128",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--load-size",
            "136",
            "--crop-size",
            "128",
            "--batch-size",
            "2",
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "1",
            "--no-progress",
            "--val-freq",
            "0",
            "--print-freq",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(["--device".to_string(), spec.clone()]);
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pix2pix"))
            .current_dir(d)
            .args(&a)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "pix2pix {a:?} failed:\n{text}");
        text
    };
    let out = run(args("graph", &[]));
    assert!(
        out.contains("steps: 4 step(s) replayed from one CUDA graph (2 capture(s), 2 eager)")
            || out.contains("steps: 2 step(s) replayed from one CUDA graph (2 capture(s), 4 eager)"),
        "{out}"
    );
    let out = run(args("eager", &["--no-graph"]));
    assert!(out.contains("launched one by one (--no-graph)"), "{out}");
    let losses = |name: &str| -> Vec<String> {
        let csv = std::fs::read_to_string(d.join("checkpoints").join(name).join("loss_log.csv")).unwrap();
        // Every column but the timings (the last two).
        csv.lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect()
    };
    let (g, e) = (losses("graph"), losses("eager"));
    assert_eq!(g.len(), 9, "a header and 8 iterations");
    assert_eq!(g, e, "loss logs differ");
    for f in [
        "latest_net_G.safetensors",
        "latest_net_D.safetensors",
        "latest_train_state.safetensors",
    ] {
        let x = read_safetensors(&d.join("checkpoints/graph").join(f)).unwrap();
        let y = read_safetensors(&d.join("checkpoints/eager").join(f)).unwrap();
        for (k, t) in &x {
            assert!(y[k] == *t, "{f}: {k} differs between graph and --no-graph");
        }
    }
}
