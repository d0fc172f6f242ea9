//! The training loop around the pix2pix step: data, schedule, logs, checkpoints, resume, Ctrl-C.
//! Files under `checkpoints/NAME/` follow the reference (SPEC.md §10) with `.safetensors` weights:
//! `train_opt.txt`, `loss_log.txt` (the reference's line format), `loss_log.csv`,
//! `<prefix>_net_G.safetensors`, `<prefix>_net_D.safetensors` and `<prefix>_train_state.safetensors`
//! (Adam moments and the loop position, so `--continue-train` resumes exactly).

use crate::checkpoint::{self, NamedTensor, Values};
use crate::data::{AlignedDataset, DataOptions, Loader};
use crate::device::Device;
use crate::models::patchgan::PatchGanConfig;
use crate::models::pix2pix::{Losses, Pix2Pix, Pix2PixOptions};
use crate::models::unet::UnetConfig;
use crate::nn::ParamStore;
use crate::optim::Schedule;
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub dataroot: PathBuf,
    pub name: String,
    pub checkpoints_dir: PathBuf,
    pub data: DataOptions,
    pub gcfg: UnetConfig,
    pub dcfg: PatchGanConfig,
    pub opt: Pix2PixOptions,
    pub schedule: Schedule,
    pub seed: u64,
    /// Log a loss line every this many images.
    pub print_freq: usize,
    /// Save `latest` every this many images.
    pub save_latest_freq: usize,
    /// Save `<epoch>` every this many epochs.
    pub save_epoch_freq: usize,
    /// Stop after this many iterations in total (quick runs, tests, the demo).
    pub max_iters: Option<usize>,
    /// Stop after this many seconds of training (checked between iterations).
    pub max_seconds: Option<f64>,
    /// Resume from `<load_epoch>_*` in the run's folder.
    pub continue_train: bool,
    pub load_epoch: String,
    /// Every option as the CLI saw it, for train_opt.txt.
    pub options_text: String,
    pub progress: bool,
    /// Time every phase (and, on CUDA, every kernel) from the second iteration on, and print
    /// the table at the end.
    pub profile: bool,
    /// Validate on DATAROOT/val every this many epochs (0: never).
    pub val_freq: usize,
    /// At most this many validation images per validation.
    pub val_images: usize,
}

impl TrainConfig {
    pub fn run_dir(&self) -> PathBuf {
        self.checkpoints_dir.join(&self.name)
    }
}

#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub iterations: usize,
    pub images: usize,
    pub last_epoch: usize,
    pub last_losses: Losses,
    pub interrupted: bool,
    pub seconds: f64,
}

/// Where the loop stands; saved with each checkpoint so a resume continues where it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Position {
    /// The epoch in progress (or finished, when `batches_done` is 0 and `epoch_done`).
    epoch: usize,
    /// Batches of `epoch` already trained on.
    batches_done: usize,
    epoch_done: bool,
    total_iters: usize,
    total_images: usize,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once per process: the loop saves `latest` and returns. Public so
/// that a caller running several stages (`study`) shares the one handler and can see the flag.
pub fn install_ctrlc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing this iteration, saving `latest`, then stopping (Ctrl-C again to abort)");
        });
    });
}

/// Whether Ctrl-C was pressed since the handler was installed or the last training run started.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Paths of one saved state.
pub fn checkpoint_paths(dir: &Path, prefix: &str) -> [PathBuf; 3] {
    [
        dir.join(format!("{prefix}_net_G.safetensors")),
        dir.join(format!("{prefix}_net_D.safetensors")),
        dir.join(format!("{prefix}_train_state.safetensors")),
    ]
}

fn adam_tensors(ps: &ParamStore, net: &str) -> Vec<NamedTensor> {
    let dev = &ps.device;
    vec![
        NamedTensor::f32(format!("{net}.adam_m"), &[ps.num_params()], dev.download(&ps.adam_m)),
        NamedTensor::f32(format!("{net}.adam_v"), &[ps.num_params()], dev.download(&ps.adam_v)),
    ]
}

fn save_state(dir: &Path, prefix: &str, m: &Pix2Pix, pos: Position) -> Result<()> {
    let [g, d, st] = checkpoint_paths(dir, prefix);
    let g_bytes = checkpoint::serialize(&checkpoint::state_tensors(&m.g.params, "", true, false), None)?;
    let d_bytes = checkpoint::serialize(&checkpoint::state_tensors(&m.d.params, "", true, false), None)?;
    let mut tensors = adam_tensors(&m.g.params, "netG");
    tensors.extend(adam_tensors(&m.d.params, "netD"));
    let meta: HashMap<String, String> = [
        ("epoch", pos.epoch.to_string()),
        ("batches_done", pos.batches_done.to_string()),
        ("epoch_done", pos.epoch_done.to_string()),
        ("total_iters", pos.total_iters.to_string()),
        ("total_images", pos.total_images.to_string()),
        ("adam_step_G", m.g.params.adam_step.to_string()),
        ("adam_step_D", m.d.params.adam_step.to_string()),
        ("iteration", m.iteration.to_string()),
        ("seed", m.seed.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let st_bytes = checkpoint::serialize(&tensors, Some(meta))?;
    // G, D and the loop state are replaced together, so a resume never mixes iterations.
    checkpoint::write_atomic_group(&[(&g, &g_bytes), (&d, &d_bytes), (&st, &st_bytes)])
}

fn load_state(dir: &Path, prefix: &str, m: &mut Pix2Pix) -> Result<Option<Position>> {
    let [g, d, st] = checkpoint_paths(dir, prefix);
    if !g.exists() || !d.exists() {
        bail!("--continue-train: {} or {} not found", g.display(), d.display());
    }
    checkpoint::load_network(&g, &mut m.g.params)?;
    checkpoint::load_network(&d, &mut m.d.params)?;
    if !st.exists() {
        eprintln!(
            "note: {} not found; optimizer state starts fresh (as in the reference)",
            st.display()
        );
        return Ok(None);
    }
    let bytes = std::fs::read(&st).with_context(|| format!("reading {}", st.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a safetensors file", st.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: metadata {k} missing", st.display()))
    };
    let tensors = checkpoint::read_safetensors(&st)?;
    for (net, ps) in [("netG", &mut m.g.params), ("netD", &mut m.d.params)] {
        for (which, buf) in [("adam_m", &mut ps.adam_m), ("adam_v", &mut ps.adam_v)] {
            let name = format!("{net}.{which}");
            match tensors.get(&name).map(|t| &t.values) {
                Some(Values::F32(v)) if v.len() == buf.len() => ps.device.write(buf, v),
                _ => bail!("{}: {name} missing or of the wrong size", st.display()),
            }
        }
    }
    m.g.params.adam_step = get("adam_step_G")?;
    m.d.params.adam_step = get("adam_step_D")?;
    m.iteration = get("iteration")?;
    Ok(Some(Position {
        epoch: get("epoch")? as usize,
        batches_done: get("batches_done")? as usize,
        epoch_done: meta.get("epoch_done").is_some_and(|v| v == "true"),
        total_iters: get("total_iters")? as usize,
        total_images: get("total_images")? as usize,
    }))
}

/// Uploads a batch into `t`, reallocating only when the shape changes (the last, smaller batch).
fn upload_into(dev: &Device, t: &mut Option<Tensor>, shape: Shape, v: &[f32]) {
    match t {
        Some(t) if t.shape == shape => dev.write(&mut t.data, v),
        _ => *t = Some(dev.upload_tensor(shape, v)),
    }
}

struct Logs {
    txt: std::fs::File,
    csv: std::fs::File,
}

impl Logs {
    fn open(dir: &Path) -> Result<Self> {
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .with_context(|| format!("opening {}", dir.join(name).display()))
        };
        let csv_path = dir.join("loss_log.csv");
        let new_csv = !csv_path.exists();
        let mut csv = open("loss_log.csv")?;
        if new_csv {
            writeln!(
                csv,
                "epoch,iters,images,G_GAN,G_L1,D_real,D_fake,lr,sec_per_iter,data_wait_s"
            )?;
        }
        let mut txt = open("loss_log.txt")?;
        writeln!(
            txt,
            "================ Training Loss ({}) ================",
            now_string()
        )?;
        Ok(Logs { txt, csv })
    }
}

fn now_string() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix time {secs}")
}

/// Trains pix2pix as configured; returns what was done. Errors name the file or loss at fault.
pub fn train(cfg: &TrainConfig, dev: &Device) -> Result<TrainSummary> {
    cfg.data.validate()?;
    let dir = cfg.run_dir();
    let dataset = AlignedDataset::open(&cfg.dataroot, "train")?;
    let n_images = dataset.len();
    let loader = Loader::new(dataset, cfg.data.clone())?;
    let mut model = Pix2Pix::new(cfg.gcfg, cfg.dcfg, cfg.opt, dev, cfg.seed)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut pos = Position {
        epoch: cfg.schedule.epoch_count,
        ..Default::default()
    };
    if cfg.continue_train {
        if let Some(p) = load_state(&dir, &cfg.load_epoch, &mut model)? {
            pos = if p.epoch_done {
                Position {
                    epoch: p.epoch + 1,
                    batches_done: 0,
                    epoch_done: false,
                    ..p
                }
            } else {
                p
            };
        }
        println!(
            "resuming {} at epoch {}, batch {} ({} iterations done)",
            dir.display(),
            pos.epoch,
            pos.batches_done,
            pos.total_iters
        );
    } else if checkpoint_paths(&dir, "latest")[0].exists() {
        bail!(
            "{} already holds a run (latest_net_G.safetensors); pass --continue-train to resume it or choose another --name",
            dir.display()
        );
    }
    checkpoint::write_atomic(&dir.join("train_opt.txt"), cfg.options_text.as_bytes())?;
    let mut logs = Logs::open(&dir)?;
    let val = if cfg.val_freq > 0 {
        crate::validate::val_loader(&cfg.dataroot, &cfg.data)?
    } else {
        None
    };
    if cfg.val_freq > 0 && val.is_none() {
        println!("note: no images in {}/val: validation is off", cfg.dataroot.display());
    }
    install_ctrlc();
    INTERRUPTED.store(false, Ordering::SeqCst);

    println!(
        "training pix2pix {} on {} images from {} ({}), G {} params, D {} params",
        dir.display(),
        n_images,
        cfg.dataroot.display(),
        dev.describe(),
        model.g.params.num_params(),
        model.d.params.num_params()
    );
    let start = Instant::now();
    let mut last = Losses::default();
    let (mut ta, mut tb) = (None, None);
    let mut since_latest = 0usize;
    let mut since_print = 0usize;
    let bpe = loader.batches_per_epoch();
    let mut interrupted = false;
    let first_iter = pos.total_iters;
    let mut kernel_times = vec![];
    'epochs: while pos.epoch <= cfg.schedule.last_epoch() {
        let epoch = pos.epoch;
        let lr = cfg.schedule.lr_at(epoch);
        let pb = if cfg.progress {
            ProgressBar::new(bpe as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        pb.set_prefix(epoch_label(cfg, epoch, &start));
        pb.set_position(pos.batches_done as u64);
        let epoch_start = Instant::now();
        let mut iter = loader.epoch(epoch as u64);
        for batch in iter.by_ref().skip(pos.batches_done) {
            let shape = Shape::new(batch.n, batch.c, batch.h, batch.w);
            model
                .check_batch(shape, shape)
                .with_context(|| format!("batch starting with {}", batch.paths[0].display()))?;
            upload_into(dev, &mut ta, shape, &batch.a);
            upload_into(dev, &mut tb, shape, &batch.b);
            if cfg.profile && pos.total_iters == first_iter + 1 {
                // The first iteration allocates and loads modules: profile from the second.
                crate::profile::start(dev, &mut model);
            }
            let t0 = Instant::now();
            model.step(dev, ta.as_ref().unwrap(), tb.as_ref().unwrap(), lr);
            // Reading the losses waits for the step: it is also where a diverged run is caught.
            last = model.losses(dev);
            if model.phase_times.is_some() {
                kernel_times = crate::profile::collect(dev);
            }
            let step_s = t0.elapsed().as_secs_f64();
            for (name, v) in Losses::NAMES.iter().zip(last.values()) {
                if !v.is_finite() {
                    let kept = if checkpoint_paths(&dir, "latest")[0].exists() {
                        format!("the last good checkpoint in {} was kept", dir.display())
                    } else {
                        "no checkpoint had been written yet".to_string()
                    };
                    bail!(
                        "loss {name} became {v} at epoch {epoch}, iteration {}; stopping: {kept}",
                        pos.total_iters + 1
                    );
                }
            }
            pos.batches_done += 1;
            pos.total_iters += 1;
            pos.total_images += batch.n;
            since_latest += batch.n;
            since_print += batch.n;
            pb.inc(1);
            pb.set_message(format!(
                "G_GAN {:.3} G_L1 {:.3} D_real {:.3} D_fake {:.3}",
                last.g_gan, last.g_l1, last.d_real, last.d_fake
            ));
            // The CSV gets every iteration (the plot's raw curve); the text log every
            // --print-freq images, as the reference's loss_log.txt.
            let iters_in_epoch = pos.batches_done * cfg.data.batch_size;
            writeln!(
                logs.csv,
                "{epoch},{iters_in_epoch},{},{},{},{},{},{lr:e},{step_s:.5},{:.5}",
                pos.total_images, last.g_gan, last.g_l1, last.d_real, last.d_fake, batch.wait_s
            )?;
            if since_print >= cfg.print_freq {
                since_print = 0;
                let per_img = step_s / batch.n as f64;
                writeln!(
                    logs.txt,
                    "(epoch: {epoch}, iters: {iters_in_epoch}, time: {per_img:.3}, data: {:.3}) , G_GAN: {:.3}, G_L1: {:.3}, D_real: {:.3}, D_fake: {:.3}",
                    batch.wait_s, last.g_gan, last.g_l1, last.d_real, last.d_fake
                )?;
            }
            let stop_iters = cfg.max_iters.is_some_and(|m| pos.total_iters >= m);
            let stop_time = cfg.max_seconds.is_some_and(|s| start.elapsed().as_secs_f64() >= s);
            interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if since_latest >= cfg.save_latest_freq || stop_iters || stop_time || interrupted {
                since_latest = 0;
                pos.epoch_done = pos.batches_done == bpe;
                save_state(&dir, "latest", &model, pos)?;
            }
            if stop_iters || stop_time || interrupted {
                pb.abandon();
                if interrupted {
                    println!("interrupted: saved {}", checkpoint_paths(&dir, "latest")[0].display());
                }
                break 'epochs;
            }
        }
        pb.finish_and_clear();
        if iter.skipped() > 0 {
            println!("epoch {epoch}: skipped {} unreadable file(s)", iter.skipped());
        }
        pos.epoch_done = true;
        save_state(&dir, "latest", &model, pos)?;
        if cfg.save_epoch_freq > 0 && epoch.is_multiple_of(cfg.save_epoch_freq) {
            save_state(&dir, &epoch.to_string(), &model, pos)?;
        }
        epoch_report(cfg, dev, &mut model, val.as_ref(), epoch, pos.total_images)?;
        println!(
            "End of epoch {} \t Time Taken: {:.1} sec \t lr {lr:.7}  G_GAN {:.3} G_L1 {:.3} D_real {:.3} D_fake {:.3}",
            epoch_label(cfg, epoch, &start),
            epoch_start.elapsed().as_secs_f64(),
            last.g_gan,
            last.g_l1,
            last.d_real,
            last.d_fake
        );
        pos = Position {
            epoch: epoch + 1,
            batches_done: 0,
            epoch_done: false,
            ..pos
        };
    }
    if interrupted || pos.batches_done > 0 {
        // Stopped mid-epoch: the loss plot still shows everything logged.
        let _ = crate::report::plot_losses(&dir.join("loss_log.csv"), &dir.join("loss.png"));
    }
    if let Some(pt) = model.phase_times.as_ref() {
        print!("{}", crate::profile::render(pt, &kernel_times));
    } else if cfg.profile {
        println!("profile: nothing to report (it starts at the second iteration)");
    }
    Ok(TrainSummary {
        iterations: pos.total_iters,
        images: pos.total_images,
        last_epoch: pos.epoch.min(cfg.schedule.last_epoch()),
        last_losses: last,
        interrupted,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// "E / LAST" (the reference's), or for a run bounded by --max-minutes, where the last epoch is
/// not what stops it, "E (M.M of T.T min)".
fn epoch_label(cfg: &TrainConfig, epoch: usize, start: &Instant) -> String {
    match cfg.max_seconds {
        Some(s) => format!(
            "{epoch} ({:.1} of {:.1} min)",
            start.elapsed().as_secs_f64() / 60.0,
            s / 60.0
        ),
        None => format!("{epoch} / {}", cfg.schedule.last_epoch()),
    }
}

/// End-of-epoch outputs: loss.png, and when due, validation (val_log.csv, val.png, a sample strip)
/// and the run's web page (web/index.html).
fn epoch_report(
    cfg: &TrainConfig,
    dev: &Device,
    m: &mut Pix2Pix,
    val: Option<&Loader>,
    epoch: usize,
    images: usize,
) -> Result<()> {
    let dir = cfg.run_dir();
    // A plot that cannot be drawn (no rows yet) is not worth stopping a run for.
    if let Err(e) = crate::report::plot_losses(&dir.join("loss_log.csv"), &dir.join("loss.png")) {
        eprintln!("note: loss plot not written: {e:#}");
    }
    let Some(loader) = val.filter(|_| cfg.val_freq > 0 && epoch.is_multiple_of(cfg.val_freq)) else {
        return Ok(());
    };
    let v = crate::validate::validate(&mut m.g, dev, loader, cfg.val_images, cfg.seed ^ epoch as u64)?;
    let csv = dir.join("val_log.csv");
    let new = !csv.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&csv)
        .with_context(|| format!("opening {}", csv.display()))?;
    if new {
        writeln!(f, "epoch,images,val_cosine,val_l1,val_images")?;
    }
    writeln!(f, "{epoch},{images},{},{},{}", v.cosine, v.l1, v.images)?;
    println!(
        "validation after epoch {epoch}: cosine dissimilarity {:.4}, L1 {:.4} ({} images)",
        v.cosine, v.l1, v.images
    );
    let title = format!("validation: {}", dir.display());
    if let Err(e) =
        crate::report::plot::plot_columns(&csv, "images", &["val_cosine", "val_l1"], &dir.join("val.png"), &title)
    {
        eprintln!("note: validation plot not written: {e:#}");
    }
    let web = dir.join("web");
    crate::validate::save_strip(&web, epoch, &v)?;
    write_web_page(&web, &cfg.name)
}

/// web/index.html: the loss and validation plots, then each epoch's validation strip, newest first.
fn write_web_page(web: &Path, name: &str) -> Result<()> {
    let mut strips: Vec<String> = std::fs::read_dir(web.join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    strips.retain(|f| f.starts_with("epoch") && f.ends_with("_val.png"));
    strips.sort();
    strips.reverse();
    let esc = crate::report::html::esc;
    let mut h = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head><body>\n<h2>{0}</h2>\n\
         <p><img src=\"../loss.png\" width=\"800\"></p>\n<p><img src=\"../val.png\" width=\"800\"></p>\n",
        esc(name)
    );
    for f in strips {
        let epoch = f
            .trim_start_matches("epoch")
            .trim_end_matches("_val.png")
            .trim_start_matches('0');
        h += &format!(
            "<h3>epoch {}</h3>\n<p>real_A | fake_B | real_B</p><img src=\"images/{}\">\n",
            esc(epoch),
            esc(&f)
        );
    }
    h += "</body></html>\n";
    checkpoint::write_atomic(&web.join("index.html"), h.as_bytes())
}
