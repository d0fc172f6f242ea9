//! `init` and `step`: the bridge to PyTorch, for any model. `init` writes its freshly initialised
//! networks (G, D; G_A, G_B, D_A, D_B) in the reference's state_dict names; `step` runs exactly
//! one training iteration from such a checkpoint on one A|B image (for CycleGAN its halves are
//! real_A and real_B) and dumps everything needed to compare it with PyTorch line by line.

use super::args::{LossArgs, ModelArgs, RunArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use pix2pix::checkpoint::{self, state_tensors, NamedTensor, Values};
use pix2pix::data::{AlignedDataset, DataOptions, Direction, Loader, Preprocess};
use pix2pix::tensor::Shape;
use pix2pix::train::{loss_line, net_path};
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
    let dev = pix2pix::device::Device::Cpu;
    let m = a.model.model_config(&LossArgs::defaults())?.build(&dev, a.run.seed)?;
    let dir = a.run.checkpoints_dir.join(&a.run.name);
    let paths: Vec<_> = m.networks().iter().map(|(n, _)| net_path(&dir, &a.epoch, n)).collect();
    if let Some(p) = paths.iter().find(|p| p.exists()).filter(|_| !a.force) {
        bail!("{} already exists; pass --force to overwrite", p.display());
    }
    let mut wrote = vec![];
    for ((_, ps), path) in m.networks().into_iter().zip(&paths) {
        checkpoint::save_network(path, ps)?;
        wrote.push(format!("{} ({} params)", path.display(), ps.num_params()));
    }
    println!("wrote {}", wrote.join(", "));
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
    /// CycleGAN: fill both image pools with --pool-size known images before the step (the pools
    /// of a warm run: D may train on a stored image), and dump them before and after it
    /// (`pool_A`, `pool_A.after`, `pool_B`, `pool_B.after`) for the comparison with PyTorch.
    #[arg(long)]
    pub warm_pool: bool,
}

/// Pool image `j` of pool `which` (0: pool_A, 1: pool_B): a smooth colour pattern in (−1, 1),
/// different for every image and pool. Only its values matter (they are dumped): any images do.
fn known_pool_image(which: usize, j: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(c * h * w);
    let f = (which * 64 + j + 1) as f64;
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let t = 0.37 * f + 1.9 * ch as f64 + (0.05 + 0.003 * f) * y as f64 + 0.07 * x as f64;
                v.push((0.9 * t.sin() * (0.02 * f * x as f64 / w as f64 + 0.5).cos()) as f32);
            }
        }
    }
    v
}

/// Loads `pool_size` known images into each pool (metadata as a train state would hold it).
fn warm_pools(
    dev: &pix2pix::device::Device,
    m: &mut dyn pix2pix::models::model::Model,
    pool_size: usize,
    shape: Shape,
) -> Result<Vec<NamedTensor>> {
    if m.kind() != "cycle_gan" || pool_size == 0 {
        bail!("--warm-pool needs --model cycle_gan and --pool-size above 0");
    }
    let (_, mut meta) = m.extra_state(dev);
    meta.retain(|(k, _)| !k.starts_with("pool_"));
    let mut tensors = std::collections::BTreeMap::new();
    let mut dump = vec![];
    for (which, name) in ["pool_A", "pool_B"].into_iter().enumerate() {
        let mut v = vec![];
        for j in 0..pool_size {
            v.extend(known_pool_image(which, j, shape.c, shape.h, shape.w));
        }
        let t = NamedTensor::f32(name, &[pool_size, shape.c, shape.h, shape.w], v);
        meta.push((format!("{name}.stored"), pool_size.to_string()));
        meta.push((format!("{name}.draws"), "0".to_string()));
        meta.push((format!("{name}.size"), pool_size.to_string()));
        dump.push(t.clone());
        tensors.insert(name.to_string(), t);
    }
    let meta: std::collections::HashMap<String, String> = meta.into_iter().collect();
    m.load_extra_state(dev, std::path::Path::new("--warm-pool"), &tensors, &meta)?;
    Ok(dump)
}

pub fn step(a: &StepArgs) -> Result<()> {
    let dev = a.run.device()?;
    let mut m = a.model.model_config(&a.loss)?.build(&dev, a.run.seed)?;
    let dir = a.run.checkpoints_dir.join(&a.run.name);
    for (name, ps) in m.networks_mut() {
        let path = net_path(&dir, &a.epoch, name);
        if !path.exists() {
            bail!(
                "{} not found: write a start point with `pix2pix init --name {}` (same model options) or export one from PyTorch",
                path.display(),
                a.run.name
            );
        }
        checkpoint::load_network(&path, ps)?;
    }

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
    let pools_before = if a.warm_pool {
        warm_pools(&dev, m.as_mut(), a.model.pool_size, shape)?
    } else {
        vec![]
    };
    if a.profile {
        pix2pix::profile::start(&dev, m.as_mut());
    }
    m.step(&dev, &ra, &rb, a.loss.lr);
    let losses = m.losses(&dev);
    if let Some(pt) = m.phase_times() {
        print!("{}", pix2pix::profile::render(pt, &pix2pix::profile::collect(&dev)));
    }

    let dims = [1, s.c, s.h, s.w];
    let mut out = vec![
        NamedTensor::f32("real_A", &dims, s.a.clone()),
        NamedTensor::f32("real_B", &dims, s.b.clone()),
    ];
    for (name, v) in m.visuals(&dev) {
        out.push(NamedTensor::f32(name, &dims, v));
    }
    for (name, &v) in m.loss_names().iter().zip(&losses) {
        out.push(NamedTensor {
            name: format!("loss_{name}"),
            dims: vec![],
            values: Values::F32(vec![v]),
        });
    }
    for (name, ps) in m.networks() {
        out.extend(state_tensors(ps, &format!("net{name}."), true, true));
    }
    if a.warm_pool {
        let (after, _) = m.extra_state(&dev);
        out.extend(pools_before);
        out.extend(after.into_iter().map(|t| NamedTensor {
            name: format!("{}.after", t.name),
            ..t
        }));
    }
    checkpoint::write_safetensors(&a.out, &out, None)?;
    println!(
        "one {} step on {} ({}x{}, {}): {}",
        m.kind(),
        file.display(),
        s.w,
        s.h,
        dev.describe(),
        loss_line(m.loss_names(), &losses, " ")
    );
    if pix2pix::nvtx::enabled() {
        println!("NVTX ranges went to {}", pix2pix::nvtx::target());
    }
    println!("wrote {} ({} tensors)", a.out.display(), out.len());
    Ok(())
}
