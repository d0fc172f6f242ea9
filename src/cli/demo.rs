//! `demo`: the README's first command. Makes a small dataset itself (procedurally drawn faces and
//! their cartoons), trains a small pix2pix on it for a few minutes, runs the test split and shows
//! that the generator learned: held-out L1 of the trained model against the untrained one.

use anyhow::{bail, Result};
use clap::Args;
use pix2pix::checkpoint;
use pix2pix::data::{make_synthetic_dataset, AlignedDataset, DataOptions, Loader};
use pix2pix::device::Device;
use pix2pix::infer::{run_test, TestConfig, TestModel};
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::pix2pix::Pix2PixOptions;
use pix2pix::models::unet::{UnetConfig, UnetGenerator};
use pix2pix::models::ModelConfig;
use pix2pix::nn::NormKind;
use pix2pix::optim::{LrPolicy, Schedule};
use pix2pix::tensor::Shape;
use pix2pix::train::{net_path, train, TrainConfig};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct StylesArgs {
    /// Output PNG (a strip: photo, classic, smooth, bold, posterized, sketch), or a folder.
    pub out: PathBuf,
    /// A photo to use instead of the drawn face.
    #[arg(long)]
    pub photo: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Real face photos to use instead of drawn faces: `prepare` cartoonizes them (classic style,
    /// face and grayscale filters, 60/20/20 split) into DATAROOT first.
    #[arg(long)]
    pub photos: Option<PathBuf>,
    /// Where the generated dataset goes (reused when it exists).
    #[arg(long, default_value = "./datasets/demo")]
    pub dataroot: PathBuf,
    /// Where the run goes (CHECKPOINTS_DIR/demo); an existing demo run is replaced.
    #[arg(long, default_value = "./checkpoints")]
    pub checkpoints_dir: PathBuf,
    /// Where the result page goes (RESULTS_DIR/demo/test_latest).
    #[arg(long, default_value = "./results")]
    pub results_dir: PathBuf,
    /// Training images to draw.
    #[arg(long, default_value_t = 200)]
    pub n_train: usize,
    /// Image size (a multiple of 128: the demo uses unet_128).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Generator and discriminator width (64 is the reference; 32 trains 4× faster on a CPU).
    #[arg(long, default_value_t = 32)]
    pub ngf: usize,
    /// Minutes of training.
    #[arg(long, default_value_t = 4.0)]
    pub minutes: f64,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Mean |G(A) − B| over a split, pixels in [−1, 1], in the reference's test mode.
fn mean_l1(g: &mut UnetGenerator, dev: &Device, dataroot: &Path, phase: &str, size: usize, seed: u64) -> Result<f64> {
    let opts = DataOptions {
        load_size: size,
        crop_size: size,
        seed,
        ..DataOptions::test()
    };
    let loader = Loader::new(AlignedDataset::open(dataroot, phase)?, opts)?;
    let (mut sum, mut n) = (0.0, 0usize);
    for (i, b) in loader.epoch(0).enumerate() {
        let x = dev.upload_tensor(Shape::new(1, b.c, b.h, b.w), &b.a);
        let fake = dev.download(&g.forward(dev, &x, true, Some(seed ^ i as u64)).data);
        sum += fake.iter().zip(&b.b).map(|(f, r)| (f - r).abs() as f64).sum::<f64>() / fake.len() as f64;
        n += 1;
    }
    if n == 0 {
        bail!("no images in {}/{phase}", dataroot.display());
    }
    Ok(sum / n as f64)
}

pub fn demo(a: &DemoArgs) -> Result<()> {
    if !a.size.is_multiple_of(128) {
        bail!("--size must be a multiple of 128 (got {})", a.size);
    }
    let dev = Device::parse(&a.device)?;
    let t0 = std::time::Instant::now();
    if !a.dataroot.join("train").exists() {
        println!(
            "drawing {} training faces and their cartoons into {} …",
            a.n_train,
            a.dataroot.display()
        );
        make_synthetic_dataset(&a.dataroot, a.n_train, a.n_train / 10, a.n_train / 10, a.size, a.seed)?;
    }
    let gcfg = UnetConfig::named("unet_128", a.ngf, true, NormKind::Batch)?;
    let dcfg = PatchGanConfig {
        input_nc: 6,
        ndf: a.ngf,
        n_layers: 3,
        norm: NormKind::Batch,
    };
    let dir = a.checkpoints_dir.join("demo");
    if dir.exists() {
        // The demo's own run folder: replaced on every demo so it always starts from scratch.
        std::fs::remove_dir_all(&dir)?;
    }
    let mut untrained = UnetGenerator::new(gcfg, &dev, pix2pix::ops::activation::splitmix(a.seed, 1))?;
    let l1_before = mean_l1(&mut untrained, &dev, &a.dataroot, "test", a.size, a.seed)?;
    drop(untrained);
    let cfg = TrainConfig {
        dataroot: a.dataroot.clone(),
        name: "demo".into(),
        checkpoints_dir: a.checkpoints_dir.clone(),
        unaligned: false,
        data: DataOptions {
            load_size: a.size + a.size / 8,
            crop_size: a.size,
            batch_size: a.batch_size,
            seed: a.seed,
            num_threads: 1,
            in_memory: true,
            ..DataOptions::default()
        },
        model: ModelConfig::Pix2Pix {
            g: gcfg,
            d: dcfg,
            opt: Pix2PixOptions::default(),
        },
        schedule: Schedule {
            lr: 2e-4,
            policy: LrPolicy::Linear,
            n_epochs: 1000,
            n_epochs_decay: 0,
            epoch_count: 1,
        },
        seed: a.seed,
        print_freq: 50,
        save_latest_freq: 1000,
        save_epoch_freq: 0,
        max_iters: None,
        max_seconds: Some(a.minutes * 60.0),
        continue_train: false,
        load_epoch: "latest".into(),
        options_text: format!("demo: {a:?}\n"),
        progress: true,
        profile: false,
        graph: true,
        val_freq: 1,
        val_images: 20,
    };
    let s = train(&cfg, &dev)?;
    let mut g = UnetGenerator::new(gcfg, &dev, 0)?;
    let gpath = net_path(&dir, "latest", "G");
    checkpoint::load_network(&gpath, &mut g.params)?;
    let l1_after = mean_l1(&mut g, &dev, &a.dataroot, "test", a.size, a.seed)?;
    let results = a.results_dir.join("demo").join("test_latest");
    let test = TestConfig {
        dataroot: a.dataroot.clone(),
        phase: "test".into(),
        model: TestModel::Pix2Pix {
            g: gcfg,
            checkpoint: gpath,
        },
        unaligned: false,
        results_dir: results.clone(),
        data: DataOptions {
            load_size: a.size,
            crop_size: a.size,
            seed: a.seed,
            ..DataOptions::test()
        },
        num_test: 50,
        eval: false,
        seed: a.seed,
    };
    let imgs = run_test(&test, &dev)?;
    println!();
    println!(
        "trained {} iterations in {:.0} s on {}",
        s.iterations,
        s.seconds,
        dev.describe()
    );
    println!("held-out L1 (test split, pixels in [-1, 1]): untrained {l1_before:.4} → trained {l1_after:.4}");
    println!(
        "result page ({} images): {}",
        imgs.len(),
        results.join("index.html").display()
    );
    println!(
        "loss plot: {}   validation: {}",
        dir.join("loss.png").display(),
        dir.join("val.png").display()
    );
    println!("training page: {}", dir.join("web/index.html").display());
    println!("total time {:.0} s", t0.elapsed().as_secs_f64());
    if l1_after >= l1_before {
        bail!("the demo did not learn: held-out L1 {l1_after:.4} is not below the untrained {l1_before:.4}");
    }
    Ok(())
}
