//! `gradcheck`: compare one training step on a device with the CPU reference.

use super::args::{LossArgs, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use pix2pix::device::Device;
use pix2pix::gradcheck::{render, run};
use pix2pix::tensor::Shape;

#[derive(Args, Debug)]
pub struct GradcheckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub loss: LossArgs,
    /// The device under test.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// The reference device.
    #[arg(long, default_value = "cpu")]
    pub against: String,
    /// Image size (square; a multiple of 256 for unet_256, 128 for unet_128).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest relative error accepted for any row. One step goes through ~30 layers forward and
    /// backward, so fp32 reduction-order differences grow past the per-op 1e-5 bound.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Print only the rows over the tolerance and the summary.
    #[arg(long)]
    pub failures_only: bool,
}

pub fn gradcheck(a: &GradcheckArgs) -> Result<()> {
    let cfg = a.model.model_config(&a.loss)?;
    let test = Device::parse(&a.device)?;
    let reference = Device::parse(&a.against)?;
    println!(
        "gradcheck: {} vs {} (reference), {} {} ngf {} ndf {}, batch {} at {}², seed {}",
        test.describe(),
        reference.describe(),
        cfg.kind(),
        a.model.net_g.as_deref().unwrap_or("(default netG)"),
        a.model.ngf,
        a.model.ndf,
        a.batch_size,
        a.size,
        a.seed
    );
    let shape = Shape::new(a.batch_size, 3, a.size, a.size);
    let rows = run(&cfg, shape, a.seed, &test, &reference)?;
    let bad: Vec<_> = rows.iter().filter(|r| !r.passes(a.tol)).cloned().collect();
    print!("{}", render(if a.failures_only { &bad } else { &rows }, a.tol));
    // The worst of the rows whose relative error means something (not zero up to rounding).
    let worst = rows
        .iter()
        .filter(|r| !r.is_noise())
        .max_by(|x, y| x.rel_err.partial_cmp(&y.rel_err).unwrap_or(std::cmp::Ordering::Greater))
        .unwrap_or(&rows[0]);
    println!(
        "{} quantities compared; worst rel err {:.2e} ({}); tolerance {:.0e}",
        rows.len(),
        worst.rel_err,
        worst.name,
        a.tol
    );
    if !bad.is_empty() {
        bail!(
            "{} of {} quantities exceed the tolerance {:.0e}",
            bad.len(),
            rows.len(),
            a.tol
        );
    }
    println!("PASS");
    Ok(())
}
