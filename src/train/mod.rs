//! The one training loop, for every model (through `models::model::Model`): data, schedule,
//! logs, checkpoints, resume, Ctrl-C. Files under `checkpoints/NAME/` follow the reference
//! (SPEC.md §10) with `.safetensors` weights: `train_opt.txt`, `loss_log.txt` (the reference's line
//! format), `loss_log.csv`, `<prefix>_net_<network>.safetensors` for each of the model's networks
//! (G, D; G_A, G_B, D_A, D_B) and `<prefix>_train_state.safetensors` (Adam moments, the model's
//! extra state and the loop position, so `--continue-train` resumes exactly).

use crate::checkpoint::{self, NamedTensor, Values};
use crate::data::{AlignedDataset, DataOptions, Dataset, Loader, UnalignedDataset};
use crate::device::Device;
use crate::models::graph::StepGraph;
use crate::models::model::Model;
use crate::models::ModelConfig;
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

mod losses;
use losses::LossReader;

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub dataroot: PathBuf,
    pub name: String,
    pub checkpoints_dir: PathBuf,
    pub data: DataOptions,
    /// Read DATAROOT/train as an unaligned dataset (trainA/trainB, or A|B pairs used unpaired).
    pub unaligned: bool,
    pub model: ModelConfig,
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
    /// On CUDA, capture the step as a CUDA graph and replay it (`--no-graph` turns it off).
    pub graph: bool,
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
    /// The model's loss names and the last iteration's values.
    pub loss_names: Vec<&'static str>,
    pub last_losses: Vec<f32>,
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

/// The weights of network `net` ("G", "D_A" …) saved under `prefix` ("latest", "5").
pub fn net_path(dir: &Path, prefix: &str, net: &str) -> PathBuf {
    dir.join(format!("{prefix}_net_{net}.safetensors"))
}

/// The train state (Adam moments, the model's extra state, the loop position) under `prefix`.
pub fn state_path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}_train_state.safetensors"))
}

fn adam_tensors(ps: &ParamStore, net: &str) -> Vec<NamedTensor> {
    let dev = &ps.device;
    vec![
        NamedTensor::f32(format!("net{net}.adam_m"), &[ps.num_params()], dev.download(&ps.adam_m)),
        NamedTensor::f32(format!("net{net}.adam_v"), &[ps.num_params()], dev.download(&ps.adam_v)),
    ]
}

fn save_state(dir: &Path, prefix: &str, m: &dyn Model, dev: &Device, pos: Position) -> Result<()> {
    let mut files = vec![];
    let mut tensors = vec![];
    let mut meta: HashMap<String, String> = [
        ("model", m.kind().to_string()),
        ("epoch", pos.epoch.to_string()),
        ("batches_done", pos.batches_done.to_string()),
        ("epoch_done", pos.epoch_done.to_string()),
        ("total_iters", pos.total_iters.to_string()),
        ("total_images", pos.total_images.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, ps) in m.networks() {
        let bytes = checkpoint::serialize(&checkpoint::state_tensors(ps, "", true, false), None)?;
        files.push((net_path(dir, prefix, name), bytes));
        tensors.extend(adam_tensors(ps, name));
        meta.insert(format!("adam_step_{name}"), ps.adam_step.to_string());
    }
    let (extra, extra_meta) = m.extra_state(dev);
    tensors.extend(extra);
    meta.extend(extra_meta);
    let st_bytes = checkpoint::serialize(&tensors, Some(meta))?;
    files.push((state_path(dir, prefix), st_bytes));
    // The networks and the loop state are replaced together, so a resume never mixes iterations.
    let group: Vec<(&Path, &[u8])> = files.iter().map(|(p, b)| (p.as_path(), b.as_slice())).collect();
    checkpoint::write_atomic_group(&group)
}

fn load_state(dir: &Path, prefix: &str, m: &mut dyn Model, dev: &Device) -> Result<Option<Position>> {
    let kind = m.kind();
    for (name, ps) in m.networks_mut() {
        let path = net_path(dir, prefix, name);
        if !path.exists() {
            bail!(
                "--continue-train: {} not found (a {kind} run saves {})",
                path.display(),
                kind_files(kind)
            );
        }
        checkpoint::load_network(&path, ps)?;
    }
    let st = state_path(dir, prefix);
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
    if let Some(saved) = meta.get("model").filter(|k| k.as_str() != kind) {
        bail!("{}: saved by a {saved} run, not {kind}", st.display());
    }
    let get = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: metadata {k} missing", st.display()))
    };
    let tensors = checkpoint::read_safetensors(&st)?;
    for (net, ps) in m.networks_mut() {
        for (which, buf) in [("adam_m", &mut ps.adam_m), ("adam_v", &mut ps.adam_v)] {
            let name = format!("net{net}.{which}");
            match tensors.get(&name).map(|t| &t.values) {
                Some(Values::F32(v)) if v.len() == buf.len() => ps.device.write(buf, v),
                _ => bail!("{}: {name} missing or of the wrong size", st.display()),
            }
        }
        ps.adam_step = get(&format!("adam_step_{net}"))?;
    }
    m.load_extra_state(dev, &st, &tensors, &meta)?;
    Ok(Some(Position {
        epoch: get("epoch")? as usize,
        batches_done: get("batches_done")? as usize,
        epoch_done: meta.get("epoch_done").is_some_and(|v| v == "true"),
        total_iters: get("total_iters")? as usize,
        total_images: get("total_images")? as usize,
    }))
}

/// The weight files a run of this kind writes, for error messages.
fn kind_files(kind: &str) -> &'static str {
    match kind {
        "cycle_gan" => "latest_net_G_A/G_B/D_A/D_B.safetensors",
        _ => "latest_net_G/D.safetensors",
    }
}

/// "NAME v NAME v …" (3 decimals) for the progress bar and the end-of-epoch line.
pub fn loss_line(names: &[&str], values: &[f32], sep: &str) -> String {
    let parts: Vec<String> = names.iter().zip(values).map(|(n, v)| format!("{n} {v:.3}")).collect();
    parts.join(sep)
}

/// A weight file of a run already in `dir` (any model), if there is one.
fn existing_run(dir: &Path) -> Option<PathBuf> {
    let p = state_path(dir, "latest");
    if p.exists() {
        return Some(p);
    }
    ["G", "G_A"]
        .iter()
        .map(|n| net_path(dir, "latest", n))
        .find(|p| p.exists())
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
    fn open(dir: &Path, loss_names: &[&str]) -> Result<Self> {
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
                "epoch,iters,images,{},lr,sec_per_iter,data_wait_s",
                loss_names.join(",")
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

/// Trains the configured model; returns what was done. Errors name the file or loss at fault.
pub fn train(cfg: &TrainConfig, dev: &Device) -> Result<TrainSummary> {
    cfg.data.validate()?;
    let dir = cfg.run_dir();
    let dataset: Dataset = if cfg.unaligned {
        UnalignedDataset::open(&cfg.dataroot, "train")?.into()
    } else {
        AlignedDataset::open(&cfg.dataroot, "train")?.into()
    };
    let n_images = dataset.len();
    let loader = Loader::new(dataset, cfg.data.clone())?;
    let mut model = cfg.model.build(dev, cfg.seed)?;
    let model = model.as_mut();
    let loss_names = model.loss_names();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut pos = Position {
        epoch: cfg.schedule.epoch_count,
        ..Default::default()
    };
    if cfg.continue_train {
        if let Some(p) = load_state(&dir, &cfg.load_epoch, model, dev)? {
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
    } else if let Some(p) = existing_run(&dir) {
        bail!(
            "{} already holds a run ({}); pass --continue-train to resume it or choose another --name",
            dir.display(),
            p.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    checkpoint::write_atomic(&dir.join("train_opt.txt"), cfg.options_text.as_bytes())?;
    let mut logs = Logs::open(&dir, loss_names)?;
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

    let nets: Vec<String> = model
        .networks()
        .iter()
        .map(|(n, ps)| format!("{n} {} params", ps.num_params()))
        .collect();
    println!(
        "training {} {} on {} images from {} ({}), {}",
        model.kind(),
        dir.display(),
        n_images,
        cfg.dataroot.display(),
        dev.describe(),
        nets.join(", ")
    );
    if crate::nvtx::enabled() {
        println!("NVTX ranges go to {}", crate::nvtx::target());
    }
    let start = Instant::now();
    let mut last = vec![0.0f32; loss_names.len()];
    let (mut ta, mut tb): (Option<Tensor>, Option<Tensor>) = (None, None);
    let mut since_latest = 0usize;
    let mut since_print = 0usize;
    let bpe = loader.batches_per_epoch();
    let mut interrupted = false;
    let first_iter = pos.total_iters;
    let mut kernel_times = vec![];
    let mut graph = StepGraph::new(cfg.graph);
    let mut reader = LossReader::new(dev, model.loss_buffer().len());
    let mut last_push = Instant::now();
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
                crate::profile::start(dev, model);
            }
            model.prepare_step(dev, lr, shape);
            graph.run(dev, model, ta.as_ref().unwrap(), tb.as_ref().unwrap())?;
            if model.phase_times().is_some() {
                kernel_times = crate::profile::collect(dev);
            }
            pos.batches_done += 1;
            pos.total_iters += 1;
            pos.total_images += batch.n;
            since_latest += batch.n;
            let now = Instant::now();
            let row = Row {
                epoch,
                iters_in_epoch: pos.batches_done * cfg.data.batch_size,
                images: pos.total_images,
                iteration: pos.total_iters,
                lr,
                step_s: ((now - last_push).as_secs_f64() - batch.wait_s).max(0.0),
                wait_s: batch.wait_s,
                n: batch.n,
            };
            last_push = now;
            for (row, raw) in reader.push(dev, model.loss_buffer(), row) {
                last = model.losses_from(&raw);
                log_row(&mut logs, cfg, &dir, loss_names, &row, &last, &mut since_print)?;
                pb.set_message(loss_line(loss_names, &last, " "));
            }
            pb.inc(1);
            let stop_iters = cfg.max_iters.is_some_and(|m| pos.total_iters >= m);
            let stop_time = cfg.max_seconds.is_some_and(|s| start.elapsed().as_secs_f64() >= s);
            interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if since_latest >= cfg.save_latest_freq || stop_iters || stop_time || interrupted {
                since_latest = 0;
                // Every loss up to this step is read (and checked) before its state is saved.
                for (row, raw) in reader.drain() {
                    last = model.losses_from(&raw);
                    log_row(&mut logs, cfg, &dir, loss_names, &row, &last, &mut since_print)?;
                }
                pos.epoch_done = pos.batches_done == bpe;
                save_state(&dir, "latest", model, dev, pos)?;
            }
            if stop_iters || stop_time || interrupted {
                pb.abandon();
                if interrupted {
                    println!("interrupted: saved {}", state_path(&dir, "latest").display());
                }
                break 'epochs;
            }
        }
        for (row, raw) in reader.drain() {
            last = model.losses_from(&raw);
            log_row(&mut logs, cfg, &dir, loss_names, &row, &last, &mut since_print)?;
        }
        pb.finish_and_clear();
        if iter.skipped() > 0 {
            println!("epoch {epoch}: skipped {} unreadable file(s)", iter.skipped());
        }
        pos.epoch_done = true;
        save_state(&dir, "latest", model, dev, pos)?;
        if cfg.save_epoch_freq > 0 && epoch.is_multiple_of(cfg.save_epoch_freq) {
            save_state(&dir, &epoch.to_string(), model, dev, pos)?;
        }
        epoch_report(cfg, dev, model, val.as_ref(), epoch, pos.total_images)?;
        println!(
            "End of epoch {} \t Time Taken: {:.1} sec \t lr {lr:.7}  {}",
            epoch_label(cfg, epoch, &start),
            epoch_start.elapsed().as_secs_f64(),
            loss_line(loss_names, &last, " ")
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
    if dev.is_cuda() {
        let how = match graph.eager_reason(dev, model) {
            None => format!(
                "{} step(s) replayed from one CUDA graph ({} capture(s), {} eager)",
                graph.replays, graph.captures, graph.eager
            ),
            Some(why) => format!("{} step(s) launched one by one ({why})", graph.eager),
        };
        println!("steps: {how}");
    }
    if let Some(pt) = model.phase_times() {
        print!("{}", crate::profile::render(pt, &kernel_times));
    } else if cfg.profile {
        println!("profile: nothing to report (it starts at the second iteration)");
    }
    Ok(TrainSummary {
        iterations: pos.total_iters,
        images: pos.total_images,
        last_epoch: pos.epoch.min(cfg.schedule.last_epoch()),
        loss_names: loss_names.to_vec(),
        last_losses: last,
        interrupted,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// What the loop knows of a step when it queues the step's losses.
struct Row {
    epoch: usize,
    /// Images of this epoch trained on (the reference's `iters` column).
    iters_in_epoch: usize,
    /// Images trained on in total.
    images: usize,
    /// 1-based iteration number over the whole run.
    iteration: usize,
    lr: f64,
    /// The loop's period at this step less the wait for data (on CUDA the host runs ahead of
    /// the device by at most `losses::SLOTS` steps, so over a window this is the device's step
    /// time; on the CPU it is the step's time).
    step_s: f64,
    wait_s: f64,
    n: usize,
}

/// One step's losses: checked (a non-finite loss stops the run before anything is saved), then
/// written to loss_log.csv and, every --print-freq images, to loss_log.txt.
fn log_row(
    logs: &mut Logs,
    cfg: &TrainConfig,
    dir: &Path,
    names: &[&str],
    row: &Row,
    losses: &[f32],
    since_print: &mut usize,
) -> Result<()> {
    for (name, v) in names.iter().zip(losses) {
        if !v.is_finite() {
            let kept = if state_path(dir, "latest").exists() {
                format!("the last good checkpoint in {} was kept", dir.display())
            } else {
                "no checkpoint had been written yet".to_string()
            };
            bail!(
                "loss {name} became {v} at epoch {}, iteration {}; stopping: {kept}",
                row.epoch,
                row.iteration
            );
        }
    }
    let values: Vec<String> = losses.iter().map(|v| v.to_string()).collect();
    writeln!(
        logs.csv,
        "{},{},{},{},{:e},{:.5},{:.5}",
        row.epoch,
        row.iters_in_epoch,
        row.images,
        values.join(","),
        row.lr,
        row.step_s,
        row.wait_s
    )?;
    *since_print += row.n;
    if *since_print >= cfg.print_freq {
        *since_print = 0;
        let per_img = row.step_s / row.n as f64;
        let parts: Vec<String> = names.iter().zip(losses).map(|(n, v)| format!("{n}: {v:.3}")).collect();
        writeln!(
            logs.txt,
            "(epoch: {}, iters: {}, time: {per_img:.3}, data: {:.3}) , {}",
            row.epoch,
            row.iters_in_epoch,
            row.wait_s,
            parts.join(", ")
        )?;
    }
    Ok(())
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
    m: &mut dyn Model,
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
    let v = crate::validate::validate(m.generator_ab(), dev, loader, cfg.val_images, cfg.seed ^ epoch as u64)?;
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
