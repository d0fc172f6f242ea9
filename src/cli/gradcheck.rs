//! `gradcheck`: compare one training step on a device with the CPU reference.

use super::args::{device_with_precision, parse_precision, LossArgs, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use pix2pix::device::{Device, Precision};
use pix2pix::gradcheck::{default_tol, render, run};
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
    /// How the device under test multiplies in its convolutions: fp32, tf32 or bf16 (default:
    /// $PIX2PIX_CONV_VARIANT's variant, 1-7, else fp32). The reference stays fp32.
    #[arg(long, value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Largest relative error accepted for any row. Default per precision (see `default_tol`):
    /// fp32 1e-3 (one step goes through ~30 layers forward and backward, so fp32 reduction-order
    /// differences grow past the per-op 1e-5 bound), tf32 and bf16 looser (benches/RESULTS.md).
    #[arg(long)]
    pub tol: Option<f64>,
    /// Print only the rows over the tolerance and the summary.
    #[arg(long)]
    pub failures_only: bool,
}

pub fn gradcheck(a: &GradcheckArgs) -> Result<()> {
    let cfg = a.model.model_config(&a.loss)?;
    let test = device_with_precision(&a.device, a.precision)?;
    let reference = Device::parse(&a.against)?;
    let precision = test.precision();
    let tol = a.tol.unwrap_or_else(|| default_tol(precision));
    println!(
        "gradcheck: {} [conv {}] vs {} (reference, fp32), {} {} ngf {} ndf {}, batch {} at {}², seed {}",
        test.describe(),
        test.conv_variant(),
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
    let bad: Vec<_> = rows.iter().filter(|r| !r.passes(tol)).cloned().collect();
    print!("{}", render(if a.failures_only { &bad } else { &rows }, tol));
    // The worst of the rows whose relative error means something (not zero up to rounding).
    let worst = rows
        .iter()
        .filter(|r| !r.is_noise())
        .max_by(|x, y| x.rel_err.partial_cmp(&y.rel_err).unwrap_or(std::cmp::Ordering::Greater))
        .unwrap_or(&rows[0]);
    println!(
        "{} quantities compared; worst rel err {:.2e} ({}); tolerance {:e}",
        rows.len(),
        worst.rel_err,
        worst.name,
        tol
    );
    if !bad.is_empty() {
        bail!(
            "{} of {} quantities exceed the tolerance {:e}",
            bad.len(),
            rows.len(),
            tol
        );
    }
    println!("PASS");
    Ok(())
}
