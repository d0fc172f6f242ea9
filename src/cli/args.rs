//! Option groups shared by several commands. Names mirror the reference's options in kebab-case
//! (`--netG` keeps its spelling; `--net-g` also works).

use anyhow::{bail, Result};
use clap::Args;
use pix2pix::data::{DataOptions, Direction, Preprocess};
use pix2pix::device::Device;
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::pix2pix::{GanMode, Pix2PixOptions};
use pix2pix::models::unet::UnetConfig;
use pix2pix::models::ModelConfig;
use pix2pix::nn::NormKind;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Generator: unet_256 (8 levels, inputs a multiple of 256) or unet_128 (7 levels, multiple of 128).
    #[arg(long = "netG", alias = "net-g", default_value = "unet_256")]
    pub net_g: String,
    /// Generator filters in the first conv layer.
    #[arg(long, default_value_t = 64)]
    pub ngf: usize,
    /// Discriminator filters in the first conv layer.
    #[arg(long, default_value_t = 64)]
    pub ndf: usize,
    /// Discriminator: basic (the 70×70 PatchGAN) or n_layers (with --n-layers-d).
    #[arg(long = "netD", alias = "net-d", default_value = "basic")]
    pub net_d: String,
    /// Conv layers of the n_layers discriminator (basic = 3).
    #[arg(long, default_value_t = 3)]
    pub n_layers_d: usize,
    /// Normalisation layer: batch (instance is planned with CycleGAN).
    #[arg(long, default_value = "batch")]
    pub norm: String,
    /// No dropout in the generator.
    #[arg(long)]
    pub no_dropout: bool,
}

impl ModelArgs {
    /// The model to build (`--model`), with its networks and loss options.
    pub fn model_config(&self, loss: &LossArgs) -> Result<ModelConfig> {
        let (g, d) = self.configs()?;
        Ok(ModelConfig::Pix2Pix {
            g,
            d,
            opt: loss.options()?,
        })
    }

    pub fn configs(&self) -> Result<(UnetConfig, PatchGanConfig)> {
        if self.norm != "batch" {
            bail!("--norm {:?} is not supported yet: only batch", self.norm);
        }
        let g = UnetConfig::named(&self.net_g, self.ngf, !self.no_dropout)?;
        let n_layers = match self.net_d.as_str() {
            "basic" => 3,
            "n_layers" => self.n_layers_d,
            other => bail!("unknown --netD {other:?}: expected basic or n_layers"),
        };
        Ok((
            g,
            PatchGanConfig {
                input_nc: g.input_nc + g.output_nc,
                ndf: self.ndf,
                n_layers,
                norm: NormKind::Batch,
            },
        ))
    }
}

#[derive(Args, Clone, Debug)]
pub struct LossArgs {
    /// GAN objective: vanilla (BCE with logits, pix2pix) or lsgan (MSE).
    #[arg(long, default_value = "vanilla")]
    pub gan_mode: String,
    /// Weight of the L1 term in G's loss.
    #[arg(long, default_value_t = 100.0)]
    pub lambda_l1: f32,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Adam beta1.
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
}

impl LossArgs {
    pub fn options(&self) -> Result<Pix2PixOptions> {
        Ok(Pix2PixOptions {
            gan_mode: GanMode::parse(&self.gan_mode)?,
            lambda_l1: self.lambda_l1,
            beta1: self.beta1,
            beta2: 0.999,
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Experiment name: outputs go to CHECKPOINTS_DIR/NAME.
    #[arg(long, default_value = "experiment_name")]
    pub name: String,
    /// Where runs are stored.
    #[arg(long, default_value = "./checkpoints")]
    pub checkpoints_dir: PathBuf,
    /// auto (GPU 0 if usable, else CPU with a note), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seeds initialisation, dropout masks, crops, flips and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl RunArgs {
    pub fn device(&self) -> Result<Device> {
        Device::parse(&self.device)
    }
}

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Dataset root holding train/, val/, test/ folders of A|B images.
    #[arg(long)]
    pub dataroot: PathBuf,
    /// AtoB: left half is the input; BtoA: right half is.
    #[arg(long, default_value = "AtoB")]
    pub direction: String,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Resize to this size before cropping.
    #[arg(long, default_value_t = 286)]
    pub load_size: usize,
    /// Crop to this size.
    #[arg(long, default_value_t = 256)]
    pub crop_size: usize,
    /// resize_and_crop, crop, scale_width, scale_width_and_crop or none.
    #[arg(long, default_value = "resize_and_crop")]
    pub preprocess: String,
    /// No random horizontal flips.
    #[arg(long)]
    pub no_flip: bool,
    /// Take images in file order instead of shuffling.
    #[arg(long)]
    pub serial_batches: bool,
    /// Decoding threads.
    #[arg(long, default_value_t = 4)]
    pub num_threads: usize,
    /// Decode the whole dataset into memory once.
    #[arg(long)]
    pub in_memory: bool,
}

impl DataArgs {
    pub fn options(&self, seed: u64) -> Result<DataOptions> {
        let o = DataOptions {
            direction: self.direction.parse::<Direction>()?,
            preprocess: self.preprocess.parse::<Preprocess>()?,
            load_size: self.load_size,
            crop_size: self.crop_size,
            no_flip: self.no_flip,
            serial_batches: self.serial_batches,
            batch_size: self.batch_size,
            seed,
            num_threads: self.num_threads,
            in_memory: self.in_memory,
        };
        o.validate()?;
        Ok(o)
    }
}
