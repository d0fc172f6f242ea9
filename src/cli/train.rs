//! `train` and `test` for pix2pix (aligned A|B pairs) and CycleGAN (unaligned A and B).

use super::args::{DataArgs, LossArgs, ModelArgs, RunArgs};
use anyhow::{Context, Result};
use clap::Args;
use pix2pix::data::DataOptions;
use pix2pix::infer::{run_test, TestConfig, TestModel};
use pix2pix::optim::{LrPolicy, Schedule};
use pix2pix::train::{loss_line, net_path, train, TrainConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub loss: LossArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Epochs at the initial learning rate.
    #[arg(long, default_value_t = 100)]
    pub n_epochs: usize,
    /// Epochs of decay to zero after that.
    #[arg(long, default_value_t = 100)]
    pub n_epochs_decay: usize,
    /// The first epoch's number (the schedule counts from it).
    #[arg(long, default_value_t = 1)]
    pub epoch_count: usize,
    /// linear, step or cosine.
    #[arg(long, default_value = "linear")]
    pub lr_policy: String,
    /// Epochs between ×0.1 steps of the step policy.
    #[arg(long, default_value_t = 50)]
    pub lr_decay_iters: usize,
    /// Write a loss line every this many images.
    #[arg(long, default_value_t = 100)]
    pub print_freq: usize,
    /// Save `latest` every this many images.
    #[arg(long, default_value_t = 5000)]
    pub save_latest_freq: usize,
    /// Save `<epoch>` checkpoints every this many epochs.
    #[arg(long, default_value_t = 5)]
    pub save_epoch_freq: usize,
    /// Stop after this many iterations (for quick runs).
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Stop after this many minutes of training.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Resume the run in CHECKPOINTS_DIR/NAME from `--epoch`.
    #[arg(long)]
    pub continue_train: bool,
    /// Which checkpoint to resume from.
    #[arg(long, default_value = "latest")]
    pub epoch: String,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print where the time goes: per phase of the step and, on CUDA, per kernel (CUDA events),
    /// from the second iteration on. Adds synchronisations; use with --max-iters.
    #[arg(long)]
    pub profile: bool,
    /// On CUDA, launch every kernel of every step one by one instead of capturing the step once
    /// as a CUDA graph and replaying it (the default; for comparison and debugging).
    #[arg(long)]
    pub no_graph: bool,
    /// Validate on DATAROOT/val every this many epochs: mean cosine dissimilarity and L1 into
    /// val_log.csv and val.png, sample images into web/index.html (0: never).
    #[arg(long, default_value_t = 1)]
    pub val_freq: usize,
    /// At most this many validation images each time.
    #[arg(long, default_value_t = 50)]
    pub val_images: usize,
}

pub fn run_train(a: &TrainArgs, options_text: String) -> Result<()> {
    let model = a.model.model_config(&a.loss)?;
    let dev = a.run.device()?;
    let cfg = TrainConfig {
        dataroot: a.data.dataroot.clone(),
        name: a.run.name.clone(),
        checkpoints_dir: a.run.checkpoints_dir.clone(),
        data: a.data.options(a.run.seed)?,
        unaligned: a.data.unaligned(a.model.is_cycle_gan()?)?,
        model,
        schedule: Schedule {
            lr: a.loss.lr,
            policy: LrPolicy::parse(&a.lr_policy, a.lr_decay_iters)?,
            n_epochs: a.n_epochs,
            n_epochs_decay: a.n_epochs_decay,
            epoch_count: a.epoch_count,
        },
        seed: a.run.seed,
        print_freq: a.print_freq.max(1),
        save_latest_freq: a.save_latest_freq.max(1),
        save_epoch_freq: a.save_epoch_freq,
        max_iters: a.max_iters,
        max_seconds: a.max_minutes.map(|m| m * 60.0),
        continue_train: a.continue_train,
        load_epoch: a.epoch.clone(),
        options_text,
        progress: !a.no_progress,
        profile: a.profile,
        graph: !a.no_graph,
        val_freq: a.val_freq,
        val_images: a.val_images,
    };
    let s = train(&cfg, &dev)?;
    println!(
        "{} {} iterations ({} images) in {:.1} s; last losses {}; checkpoints in {}",
        if s.interrupted { "stopped after" } else { "done:" },
        s.iterations,
        s.images,
        s.seconds,
        loss_line(&s.loss_names, &s.last_losses, " "),
        cfg.run_dir().display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Dataset root; images are read from DATAROOT/PHASE.
    #[arg(long)]
    pub dataroot: PathBuf,
    /// Which split to run on.
    #[arg(long, default_value = "test")]
    pub phase: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Which checkpoint (PREFIX_net_G.safetensors in CHECKPOINTS_DIR/NAME).
    #[arg(long, default_value = "latest")]
    pub epoch: String,
    /// How many images to run.
    #[arg(long, default_value_t = 50)]
    pub num_test: usize,
    /// Eval mode: BN running statistics and no dropout (default: the reference's test mode,
    /// batch statistics of each image and dropout on).
    #[arg(long)]
    pub eval: bool,
    /// Images are resized to this size (no crop, no flip).
    #[arg(long, default_value_t = 256)]
    pub crop_size: usize,
    /// AtoB or BtoA.
    #[arg(long, default_value = "AtoB")]
    pub direction: String,
    /// Where result pages go (RESULTS_DIR/NAME/PHASE_EPOCH).
    #[arg(long, default_value = "./results")]
    pub results_dir: PathBuf,
    /// aligned or unaligned (testA/testB, or A|B pairs used unpaired). Default: aligned for
    /// pix2pix, unaligned for cycle_gan.
    #[arg(long)]
    pub dataset_mode: Option<String>,
}

pub fn run_test_cmd(a: &TestArgs) -> Result<()> {
    let dev = a.run.device()?;
    let dir = a.run.checkpoints_dir.join(&a.run.name);
    let cycle_gan = a.model.is_cycle_gan()?;
    let model = if cycle_gan {
        let (g, _) = a.model.cycle_gan_configs()?;
        TestModel::CycleGan {
            g,
            g_a: net_path(&dir, &a.epoch, "G_A"),
            g_b: net_path(&dir, &a.epoch, "G_B"),
        }
    } else {
        let (g, _) = a.model.configs()?;
        TestModel::Pix2Pix {
            g,
            checkpoint: net_path(&dir, &a.epoch, "G"),
        }
    };
    let unaligned = match a
        .dataset_mode
        .as_deref()
        .unwrap_or(if cycle_gan { "unaligned" } else { "aligned" })
    {
        "aligned" => false,
        "unaligned" => true,
        other => anyhow::bail!("unknown --dataset-mode {other:?}: expected aligned or unaligned"),
    };
    let results = a.results_dir.join(&a.run.name).join(format!("{}_{}", a.phase, a.epoch));
    let cfg = TestConfig {
        dataroot: a.dataroot.clone(),
        phase: a.phase.clone(),
        model,
        unaligned,
        results_dir: results.clone(),
        data: DataOptions {
            load_size: a.crop_size,
            crop_size: a.crop_size,
            direction: a.direction.parse().context("--direction")?,
            seed: a.run.seed,
            ..DataOptions::test()
        },
        num_test: a.num_test,
        eval: a.eval,
        seed: a.run.seed,
    };
    let images = run_test(&cfg, &dev)?;
    println!(
        "{} test images written; page: {}",
        images.len(),
        results.join("index.html").display()
    );
    Ok(())
}
