//! Option groups shared by several commands. Names mirror the reference's options in kebab-case
//! (`--netG` keeps its spelling; `--net-g` also works).

use anyhow::{bail, Result};
use clap::Args;
use pix2pix::data::{DataOptions, Direction, Preprocess};
use pix2pix::device::{Device, Precision};
use pix2pix::models::cyclegan::CycleGanOptions;
use pix2pix::models::patchgan::PatchGanConfig;
use pix2pix::models::pix2pix::{GanMode, Pix2PixOptions};
use pix2pix::models::resnet::ResnetConfig;
use pix2pix::models::unet::UnetConfig;
use pix2pix::models::ModelConfig;
use pix2pix::nn::NormKind;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// pix2pix (U-Net G, conditional PatchGAN) or cycle_gan (two ResNet G, two PatchGANs).
    #[arg(long, default_value = "pix2pix")]
    pub model: String,
    /// Generator: unet_256 (8 levels, inputs a multiple of 256), unet_128 (7 levels, multiple of
    /// 128), resnet_9blocks or resnet_6blocks (multiples of 4). Default: unet_256 for pix2pix,
    /// resnet_9blocks for cycle_gan.
    #[arg(long = "netG", alias = "net-g")]
    pub net_g: Option<String>,
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
    /// Normalisation layer: batch or instance. Default: batch for pix2pix, instance for cycle_gan.
    #[arg(long)]
    pub norm: Option<String>,
    /// No dropout in the generator (always so for cycle_gan, as in the reference).
    #[arg(long)]
    pub no_dropout: bool,
    /// CycleGAN: generated images kept to train D on (0: none).
    #[arg(long, default_value_t = 50)]
    pub pool_size: usize,
}

impl ModelArgs {
    /// The model to build (`--model`), with its networks and loss options.
    pub fn model_config(&self, loss: &LossArgs) -> Result<ModelConfig> {
        if self.is_cycle_gan()? {
            let (g, d) = self.cycle_gan_configs()?;
            return Ok(ModelConfig::CycleGan {
                g,
                d,
                opt: CycleGanOptions {
                    gan_mode: GanMode::parse(loss.gan_mode.as_deref().unwrap_or("lsgan"))?,
                    lambda_a: loss.lambda_a,
                    lambda_b: loss.lambda_b,
                    lambda_identity: loss.lambda_identity,
                    pool_size: self.pool_size,
                    beta1: loss.beta1,
                    beta2: 0.999,
                },
            });
        }
        let (g, d) = self.configs()?;
        Ok(ModelConfig::Pix2Pix {
            g,
            d,
            opt: loss.options()?,
        })
    }

    /// `--model cycle_gan` (true) or `pix2pix` (false).
    pub fn is_cycle_gan(&self) -> Result<bool> {
        match self.model.as_str() {
            "pix2pix" => Ok(false),
            "cycle_gan" => Ok(true),
            other => bail!("unknown --model {other:?}: expected pix2pix or cycle_gan"),
        }
    }

    fn norm(&self, default: &str) -> Result<NormKind> {
        NormKind::parse(self.norm.as_deref().unwrap_or(default))
    }

    fn n_layers(&self) -> Result<usize> {
        match self.net_d.as_str() {
            "basic" => Ok(3),
            "n_layers" => Ok(self.n_layers_d),
            other => bail!("unknown --netD {other:?}: expected basic or n_layers"),
        }
    }

    /// CycleGAN's G (shared by G_A and G_B) and D (shared by D_A and D_B, 3 input channels).
    pub fn cycle_gan_configs(&self) -> Result<(ResnetConfig, PatchGanConfig)> {
        let norm = self.norm("instance")?;
        let name = self.net_g.as_deref().unwrap_or("resnet_9blocks");
        if name.starts_with("unet") {
            bail!("--netG {name} with --model cycle_gan is not supported: use resnet_9blocks or resnet_6blocks");
        }
        let g = ResnetConfig::named(name, self.ngf, norm, false)?;
        let d = PatchGanConfig {
            input_nc: g.output_nc,
            ndf: self.ndf,
            n_layers: self.n_layers()?,
            norm,
        };
        Ok((g, d))
    }

    pub fn configs(&self) -> Result<(UnetConfig, PatchGanConfig)> {
        if self.is_cycle_gan()? {
            bail!("this command supports --model pix2pix only");
        }
        let norm = self.norm("batch")?;
        let g = UnetConfig::named(
            self.net_g.as_deref().unwrap_or("unet_256"),
            self.ngf,
            !self.no_dropout,
            norm,
        )?;
        let n_layers = self.n_layers()?;
        Ok((
            g,
            PatchGanConfig {
                input_nc: g.input_nc + g.output_nc,
                ndf: self.ndf,
                n_layers,
                norm,
            },
        ))
    }
}

#[derive(Args, Clone, Debug)]
pub struct LossArgs {
    /// GAN objective: vanilla (BCE with logits) or lsgan (MSE). Default: vanilla for pix2pix,
    /// lsgan for cycle_gan.
    #[arg(long)]
    pub gan_mode: Option<String>,
    /// Weight of the L1 term in G's loss.
    #[arg(long, default_value_t = 100.0)]
    pub lambda_l1: f32,
    /// CycleGAN: weight of the A→B→A cycle loss.
    #[arg(long = "lambda-A", alias = "lambda_A", default_value_t = 10.0)]
    pub lambda_a: f32,
    /// CycleGAN: weight of the B→A→B cycle loss.
    #[arg(long = "lambda-B", alias = "lambda_B", default_value_t = 10.0)]
    pub lambda_b: f32,
    /// CycleGAN: identity loss weight, relative to lambda-A/B (0 turns it off).
    #[arg(long, default_value_t = 0.5)]
    pub lambda_identity: f32,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Adam beta1.
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
}

impl LossArgs {
    /// The defaults, for commands without loss options (init).
    pub fn defaults() -> Self {
        LossArgs {
            gan_mode: None,
            lambda_l1: 100.0,
            lambda_a: 10.0,
            lambda_b: 10.0,
            lambda_identity: 0.5,
            lr: 2e-4,
            beta1: 0.5,
        }
    }

    pub fn options(&self) -> Result<Pix2PixOptions> {
        Ok(Pix2PixOptions {
            gan_mode: GanMode::parse(self.gan_mode.as_deref().unwrap_or("vanilla"))?,
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
    /// How CUDA convolutions multiply: fp32 (fp32 SIMT kernels), tf32 or bf16 (tensor cores,
    /// operands rounded to tf32/bf16, fp32 accumulation; weights, activations, gradients and
    /// Adam moments stay fp32). Default: $PIX2PIX_CONV_VARIANT (conv variant 1-7; 4 and 5 are
    /// tf32 and bf16 staged by cp.async, 6 and 7 bf16 and tf32 on 128×128 tiles), else fp32.
    #[arg(long, value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Seeds initialisation, dropout masks, crops, flips and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl RunArgs {
    pub fn device(&self) -> Result<Device> {
        device_with_precision(&self.device, self.precision)
    }
}

pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

/// `Device::parse`, then `--precision` when given (over $PIX2PIX_CONV_VARIANT, unless that
/// names a variant of the same precision); says which precision and conv variant a CUDA device
/// runs when it is not fp32.
pub fn device_with_precision(spec: &str, precision: Option<Precision>) -> Result<Device> {
    let dev = Device::parse(spec)?;
    if let Some(p) = precision {
        if dev.precision() != p {
            dev.set_precision(p)?;
        }
    }
    if dev.precision() != Precision::Fp32 {
        eprintln!(
            "device: convolutions in {} on tensor cores (fp32 storage), conv variant {}",
            dev.precision(),
            dev.conv_variant()
        );
    }
    Ok(dev)
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
    /// aligned (A|B pairs) or unaligned (DATAROOT/trainA and trainB, or A|B pairs used unpaired).
    /// Default: aligned for pix2pix, unaligned for cycle_gan.
    #[arg(long)]
    pub dataset_mode: Option<String>,
}

impl DataArgs {
    /// Whether to read the unaligned dataset, for the given model.
    pub fn unaligned(&self, cycle_gan: bool) -> Result<bool> {
        let default = if cycle_gan { "unaligned" } else { "aligned" };
        match self.dataset_mode.as_deref().unwrap_or(default) {
            "aligned" => Ok(false),
            "unaligned" => Ok(true),
            other => bail!("unknown --dataset-mode {other:?}: expected aligned or unaligned"),
        }
    }

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
