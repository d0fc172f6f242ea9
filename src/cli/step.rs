//! `init` and `step`: the bridge to PyTorch. `init` writes freshly initialised G and D in the
//! reference's state_dict names; `step` runs exactly one training iteration from such a checkpoint
//! on one A|B image and dumps everything needed to compare it with PyTorch line by line.

use super::args::{LossArgs, ModelArgs, RunArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use pix2pix::checkpoint::{self, state_tensors, NamedTensor, Values};
use pix2pix::data::{AlignedDataset, DataOptions, Direction, Loader, Preprocess};
use pix2pix::models::pix2pix::{Losses, Pix2Pix};
use pix2pix::tensor::Shape;
use pix2pix::train::net_path;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// File prefix of the written checkpoint (PREFIX_net_G.safetensors, PREFIX_net_D.safetensors).
    #[arg(long, default_value = "latest")]
    pub epoch: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn init(a: &InitArgs) -> Result<()> {
    let (gcfg, dcfg) = a.model.configs()?;
    let dev = pix2pix::device::Device::Cpu;
    let m = Pix2Pix::new(gcfg, dcfg, Default::default(), &dev, a.run.seed)?;
    let dir = a.run.checkpoints_dir.join(&a.run.name);
    let (g, d) = (net_path(&dir, &a.epoch, "G"), net_path(&dir, &a.epoch, "D"));
    if !a.force && (g.exists() || d.exists()) {
        bail!("{} already exists; pass --force to overwrite", g.display());
    }
    checkpoint::save_network(&g, &m.g.params)?;
    checkpoint::save_network(&d, &m.d.params)?;
    println!(
        "wrote {} ({} params) and {} ({} params)",
        g.display(),
        m.g.params.num_params(),
        d.display(),
        m.d.params.num_params()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct StepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub loss: LossArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// One A|B image (A left, B right), used as it is (preprocess none: sides rounded to a multiple of 4).
    #[arg(long)]
    pub image: PathBuf,
    /// Which checkpoint in CHECKPOINTS_DIR/NAME to start from (PREFIX_net_G/D.safetensors).
    #[arg(long, default_value = "latest")]
    pub epoch: String,
    /// AtoB or BtoA.
    #[arg(long, default_value = "AtoB")]
    pub direction: String,
    /// Output file (safetensors): fake_B, the four losses, every gradient and the updated state.
    #[arg(long, default_value = "step.safetensors")]
    pub out: PathBuf,
    /// Print the step's time per phase and, on CUDA, per kernel.
    #[arg(long)]
    pub profile: bool,
}

pub fn step(a: &StepArgs) -> Result<()> {
    let (gcfg, dcfg) = a.model.configs()?;
    let dev = a.run.device()?;
    let mut m = Pix2Pix::new(gcfg, dcfg, a.loss.options()?, &dev, a.run.seed)?;
    let dir = a.run.checkpoints_dir.join(&a.run.name);
    let (g, d) = (net_path(&dir, &a.epoch, "G"), net_path(&dir, &a.epoch, "D"));
    if !g.exists() {
        bail!(
            "{} not found: write a start point with `pix2pix init --name {}` or export one from PyTorch",
            g.display(),
            a.run.name
        );
    }
    checkpoint::load_network(&g, &mut m.g.params)?;
    checkpoint::load_network(&d, &mut m.d.params)?;

    let file = a
        .image
        .canonicalize()
        .with_context(|| format!("image {}", a.image.display()))?;
    let data = DataOptions {
        direction: a.direction.parse::<Direction>()?,
        preprocess: Preprocess::None,
        no_flip: true,
        serial_batches: true,
        num_threads: 0,
        ..DataOptions::test()
    };
    let loader = Loader::new(AlignedDataset::from_paths(vec![file.clone()]), data)?;
    let s = loader
        .load_sample(0, 0)
        .with_context(|| format!("loading {}", file.display()))?;
    let shape = Shape::new(1, s.c, s.h, s.w);
    m.check_batch(shape, shape)?;
    let (ra, rb) = (dev.upload_tensor(shape, &s.a), dev.upload_tensor(shape, &s.b));
    if a.profile {
        pix2pix::profile::start(&dev, &mut m);
    }
    m.step(&dev, &ra, &rb, a.loss.lr);
    let losses = m.losses(&dev);
    if let Some(pt) = m.phase_times.as_ref() {
        print!("{}", pix2pix::profile::render(pt, &pix2pix::profile::collect(&dev)));
    }

    let dims = [1, s.c, s.h, s.w];
    let mut out = vec![
        NamedTensor::f32("real_A", &dims, s.a.clone()),
        NamedTensor::f32("real_B", &dims, s.b.clone()),
        NamedTensor::f32("fake_B", &dims, dev.download(&m.g.output().data)),
    ];
    for (name, v) in Losses::NAMES.iter().zip(losses.values()) {
        out.push(NamedTensor {
            name: format!("loss_{name}"),
            dims: vec![],
            values: Values::F32(vec![v]),
        });
    }
    out.extend(state_tensors(&m.g.params, "netG.", true, true));
    out.extend(state_tensors(&m.d.params, "netD.", true, true));
    checkpoint::write_safetensors(&a.out, &out, None)?;
    println!(
        "one step on {} ({}x{}, {}): G_GAN {:.6} G_L1 {:.6} D_real {:.6} D_fake {:.6}",
        file.display(),
        s.w,
        s.h,
        dev.describe(),
        losses.g_gan,
        losses.g_l1,
        losses.d_real,
        losses.d_fake
    );
    println!("wrote {} ({} tensors)", a.out.display(), out.len());
    Ok(())
}
