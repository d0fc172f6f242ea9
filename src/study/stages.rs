//! The study's stages in order (measure, data, each run's training and tests, the report), the
//! plan printed before starting (with the time estimate from the measured step), the overall
//! progress line between stages, and the skip / resume / `--force` rules.

use super::datasets::{self, count_images, variant_dir};
use super::measure::{self, fmt_duration, Measured, StepTimes};
use super::plan::{Model, RunSpec, Scale, ScaleParams, RUNS, TEST_STYLES};
use super::records::{unix_now, Records, StageRecord};
use super::{report, runs, StudyConfig};
use crate::data::prepare::haar::{find_cascade, CASCADE_INSTALL_HINT};
use crate::data::prepare::list_images;
use crate::device::Device;
use anyhow::{bail, Context, Result};
use std::time::Instant;

#[derive(Clone, Debug)]
enum Kind {
    Data,
    Train(RunSpec),
    Test(RunSpec),
}

#[derive(Clone, Debug)]
struct Stage {
    name: String,
    kind: Kind,
    options: String,
    estimate_s: f64,
}

/// Image counts the estimate uses: measured after the data stage, else from the photo count.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub photos: usize,
    pub original_train: usize,
    pub filtered_train: usize,
    pub augmented_train: usize,
    pub original_test: usize,
    pub filtered_test: usize,
    /// False: estimated from the photo count (60 % train, no photo filtered out: an upper bound).
    pub measured: bool,
}

impl Counts {
    fn of(cfg: &StudyConfig, photos: usize, data_done: bool) -> Counts {
        let c = |v: &str, split: &str| count_images(&variant_dir(&cfg.out, v).join(split));
        if data_done {
            Counts {
                photos,
                original_train: c("original", "train"),
                filtered_train: c("filtered", "train"),
                augmented_train: c("augmented", "train"),
                original_test: c("original", "test"),
                filtered_test: c("filtered", "test"),
                measured: true,
            }
        } else {
            let (train, test) = (photos * 6 / 10, photos / 5);
            Counts {
                photos,
                original_train: train,
                filtered_train: train,
                augmented_train: 4 * train,
                original_test: test,
                filtered_test: test,
                measured: false,
            }
        }
    }

    pub fn train_images(&self, r: &RunSpec) -> usize {
        match r.data.name() {
            "original" => self.original_train,
            "augmented" => self.augmented_train,
            _ => self.filtered_train,
        }
    }
}

/// Estimated seconds of training run `r` (steps, and validation forwards each epoch).
pub fn train_estimate(p: &ScaleParams, t: &StepTimes, n_train: usize, r: &RunSpec) -> f64 {
    let iters = p.epochs() * n_train.div_ceil(r.batch_size);
    iters as f64 * t.step(r.batch_size) + (p.epochs() * p.val_images) as f64 * t.fwd_s
}

fn test_estimate(p: &ScaleParams, t: &StepTimes, c: &Counts, r: &RunSpec) -> f64 {
    let cap = |n: usize| if p.num_test == 0 { n } else { n.min(p.num_test) };
    let mut n = TEST_STYLES.len() * cap(c.filtered_test);
    if r.data.name() == "original" {
        n += cap(c.original_test);
    }
    n as f64 * t.fwd_s
}

fn stage_list(cfg: &StudyConfig, m: &Measured, c: &Counts, prepare_s: f64) -> Vec<Stage> {
    let data_opts = datasets::stage_options(cfg);
    let mut v = vec![Stage {
        name: "data".into(),
        kind: Kind::Data,
        options: data_opts.clone(),
        estimate_s: prepare_s,
    }];
    for r in RUNS.iter().filter(|r| cfg.selected(r)) {
        let t = m.of(r).expect("every selected run's step is measured");
        let mut train_opts = format!(
            "{data_opts} | {} | {} batch {}",
            cfg.params.describe(),
            r.label(),
            r.batch_size
        );
        if r.model == Model::CycleGan {
            train_opts += &format!(" | {}", measure::cycle_gan_config_name(&cfg.params));
        }
        v.push(Stage {
            name: format!("train_run{}", r.id),
            kind: Kind::Train(*r),
            options: train_opts.clone(),
            estimate_s: train_estimate(&cfg.params, t, c.train_images(r), r),
        });
        v.push(Stage {
            name: format!("test_run{}", r.id),
            kind: Kind::Test(*r),
            options: train_opts,
            estimate_s: test_estimate(&cfg.params, t, c, r),
        });
    }
    v
}

/// Checks everything that can be checked before any work: the photos, the persons CSV, the face
/// detector (Debian's opencv-data) and the device.
fn check_inputs(cfg: &StudyConfig) -> Result<usize> {
    if !cfg.photos.is_dir() {
        bail!(
            "--photos {}: no such folder (expected a folder of face photos)",
            cfg.photos.display()
        );
    }
    let n = list_images(&cfg.photos)?.len();
    if n < 5 {
        bail!(
            "--photos {}: {n} image file(s) (jpg, png, bmp, tif, pnm); a study needs at least 5 for its train, val and test splits",
            cfg.photos.display()
        );
    }
    if let Some(p) = &cfg.persons {
        if !p.is_file() {
            bail!(
                "--persons {}: no such file (expected a CSV: file name, person id)",
                p.display()
            );
        }
    }
    if !cfg.no_face_filter && find_cascade(cfg.cascade.as_deref()).is_none() {
        bail!(
            "the face filter needs OpenCV's frontal-face Haar cascade, which was not found \
             (--cascade, $PIX2PIX_FACE_CASCADE, {}): install Debian's opencv-data (`{CASCADE_INSTALL_HINT}`), \
             pass --cascade FILE, or run with --no-face-filter (no small-face filter and no face score)",
            crate::data::prepare::haar::CASCADE_SEARCH[0]
        );
    }
    Ok(cfg.params.max_photos.map_or(n, |m| n.min(m)))
}

/// The measured steps: the study's configuration, run 6's CycleGAN when selected, and, below
/// `full`, the full protocol's pix2pix (for the projection). Measured once per study folder
/// (redone with --force); CycleGAN's is its own stage (`measure_cycle_gan`, measure_cycle_gan.csv).
fn measure_stage(cfg: &StudyConfig, dev: &Device, records: &Records) -> Result<Measured> {
    let (pix2pix, full) = measure_pix2pix(cfg, dev, records)?;
    let cycle_gan = if cfg.selected(&RUNS[5]) {
        Some(measure_cycle_gan_stage(cfg, dev, records)?)
    } else {
        None
    };
    Ok(Measured {
        pix2pix,
        cycle_gan,
        full,
    })
}

fn measure_pix2pix(cfg: &StudyConfig, dev: &Device, records: &Records) -> Result<(StepTimes, Option<StepTimes>)> {
    let full = ScaleParams::of(Scale::Full);
    let project = cfg.params.scale == Scale::Small;
    let options = format!(
        "{} | {} | project full {project}",
        measure::config_name(&cfg.params),
        dev.describe()
    );
    let csv = cfg.out.join("measure.csv");
    if records.done("measure", &options, cfg.force && cfg.only.is_none())? {
        let text = std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
        let ours = StepTimes::parse(&text, &measure::config_name(&cfg.params), true)
            .with_context(|| format!("{}: no rows for {}", csv.display(), measure::config_name(&cfg.params)))?;
        return Ok((ours, StepTimes::parse(&text, &measure::config_name(&full), true)));
    }
    let t0 = Instant::now();
    println!(
        "measuring a training step of {} on {} …",
        measure::config_name(&cfg.params),
        dev.describe()
    );
    let ours = measure::measure(&cfg.params, dev, cfg.seed, 2)?;
    let full_t = if project {
        println!(
            "measuring a step of the full protocol ({}) for the projection …",
            measure::config_name(&full)
        );
        Some(measure::measure(&full, dev, cfg.seed, 1)?)
    } else {
        None
    };
    let all: Vec<&StepTimes> = std::iter::once(&ours).chain(full_t.as_ref()).collect();
    measure::write_csv(&csv, &all)?;
    let mut rec = StageRecord::new("measure", &options);
    rec.seconds = t0.elapsed().as_secs_f64();
    rec.finished = unix_now();
    rec.commands.push(format!(
        "(study) {} warm-up + timed pix2pix steps at batch 1 and 8 on random images, and G forwards → {}",
        if project { "1+2 (full: 1+1)" } else { "1+2" },
        csv.display()
    ));
    records.write(&rec)?;
    Ok((ours, full_t))
}

fn measure_cycle_gan_stage(cfg: &StudyConfig, dev: &Device, records: &Records) -> Result<StepTimes> {
    let name = measure::cycle_gan_config_name(&cfg.params);
    let options = format!("{name} | {}", dev.describe());
    let csv = cfg.out.join("measure_cycle_gan.csv");
    if records.done("measure_cycle_gan", &options, cfg.force)? {
        let text = std::fs::read_to_string(&csv).with_context(|| format!("reading {}", csv.display()))?;
        return StepTimes::parse(&text, &name, false).with_context(|| format!("{}: no rows for {name}", csv.display()));
    }
    let t0 = Instant::now();
    println!("measuring a training step of {name} (run 6) on {} …", dev.describe());
    let t = measure::measure_cycle_gan(&cfg.params, dev, cfg.seed, 2)?;
    measure::write_csv(&csv, &[&t])?;
    let mut rec = StageRecord::new("measure_cycle_gan", &options);
    rec.seconds = t0.elapsed().as_secs_f64();
    rec.finished = unix_now();
    rec.commands.push(format!(
        "(study) 1+2 warm-up + timed CycleGAN steps at batch 1 on random images, and G_A forwards → {}",
        csv.display()
    ));
    records.write(&rec)?;
    Ok(t)
}

fn print_plan(cfg: &StudyConfig, stages: &[Stage], m: &Measured, c: &Counts, records: &Records) -> Result<()> {
    let t = &m.pix2pix;
    println!("\nstudy plan: {} → {}", cfg.photos.display(), cfg.out.display());
    println!("  {}", cfg.params.describe());
    match find_cascade(cfg.cascade.as_deref()) {
        Some(p) if !cfg.no_face_filter => println!("  face detector: {} (opencv-data)", p.display()),
        _ => println!("  face detector: off (--no-face-filter): no small-face filter, no face score"),
    }
    println!(
        "  measured on {}: {:.3} s per step at batch 1, {:.3} s at batch 8, {:.4} s per G forward",
        t.device, t.step_s[0], t.step_s[1], t.fwd_s
    );
    if let Some(cg) = &m.cycle_gan {
        println!(
            "  run 6 ({}): {:.3} s per step at batch 1, {:.4} s per G_A forward",
            cg.config, cg.step_s[0], cg.fwd_s
        );
    }
    println!(
        "  images: {} photos; train {} original / {} filtered / {} augmented{}",
        c.photos,
        c.original_train,
        c.filtered_train,
        c.augmented_train,
        if c.measured {
            ""
        } else {
            " (before prepare: 60 % of the photos, none filtered out)"
        }
    );
    for r in &RUNS {
        let status = match m.of(r) {
            _ if !cfg.selected(r) => "not selected (--only)".to_string(),
            None => "not measured".to_string(),
            Some(t) => {
                let done = records.get(&format!("train_run{}", r.id))?.is_some();
                let est = train_estimate(&cfg.params, t, c.train_images(r), r);
                format!(
                    "{}{}",
                    if done { "trained; " } else { "" },
                    format_args!(
                        "{} steps at batch {}: ≈ {}{}",
                        cfg.params.epochs() * c.train_images(r).div_ceil(r.batch_size),
                        r.batch_size,
                        fmt_duration(est),
                        if StepTimes::is_measured(r.batch_size) {
                            ""
                        } else {
                            " (step time extrapolated from batch 1 and 8)"
                        }
                    )
                )
            }
        };
        println!(
            "  run {} {:<9} {:<10} {:<9} {status}",
            r.id,
            r.model.name(),
            r.data.name(),
            r.change
        );
    }
    let mut left = 0.0;
    for s in stages {
        if records.get(&s.name)?.is_none() {
            left += s.estimate_s;
        }
    }
    println!(
        "  estimated time of the stages still to run: ≈ {} (compute only; the data stage from one photo)\n",
        fmt_duration(left)
    );
    Ok(())
}

fn progress_line(i: usize, n: usize, name: &str, start: &Instant, left_s: f64) {
    let width = 30;
    let filled = (i * width).checked_div(n).unwrap_or(width);
    println!(
        "study [{}{}] stage {}/{} {name} · elapsed {} · estimated left ≈ {}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        i + 1,
        n,
        fmt_duration(start.elapsed().as_secs_f64()),
        fmt_duration(left_s)
    );
}

fn interrupted_error(stage: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "interrupted (Ctrl-C) during stage {stage}: finished stages are recorded and an interrupted \
         training run saved its latest checkpoint; rerun the same command to resume"
    )
}

/// Removes a run's outputs and records (training and tests).
fn forget_run(cfg: &StudyConfig, records: &Records, r: &RunSpec) -> Result<()> {
    for d in [
        runs::checkpoints_dir(&cfg.out).join(r.dir_name()),
        runs::results_dir(&cfg.out).join(r.dir_name()),
        runs::original_results_dir(&cfg.out).join(r.dir_name()),
    ] {
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    records.remove(&format!("train_run{}", r.id))?;
    records.remove(&format!("test_run{}", r.id))
}

fn run_stage(cfg: &StudyConfig, s: &Stage, dev: &Device, records: &Records, rec: &mut StageRecord) -> Result<bool> {
    match &s.kind {
        Kind::Data => {
            // New data invalidates every run made from the old data.
            for r in &RUNS {
                forget_run(cfg, records, r)?;
            }
            datasets::run_data_stage(cfg, rec)?;
            Ok(!crate::train::interrupted())
        }
        Kind::Train(r) => {
            records.remove(&format!("test_run{}", r.id))?;
            runs::train_stage(cfg, r, dev, rec)
        }
        Kind::Test(r) => runs::test_stage(cfg, r, dev, rec),
    }
}

/// `pix2pix study`.
pub fn run_study(cfg: &StudyConfig) -> Result<()> {
    let photos = check_inputs(cfg)?;
    let dev = Device::parse(&cfg.device)?;
    if cfg.out.exists() && !cfg.out.join("stages").is_dir() && std::fs::read_dir(&cfg.out)?.next().is_some() {
        bail!(
            "--out {} exists and is not a study folder (no stages/): choose a new or empty folder",
            cfg.out.display()
        );
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    crate::train::install_ctrlc();
    let records = Records::new(&cfg.out);
    let start = Instant::now();
    let times = measure_stage(cfg, &dev, &records)?;
    let first = list_images(&cfg.photos)?;
    let prepare_s = measure::prepare_estimate(cfg, &first[0], photos)?;
    let data_options = datasets::stage_options(cfg);
    let force_data = cfg.force && cfg.only.is_none();
    let data_done = records.done("data", &data_options, force_data)?;
    let mut counts = Counts::of(cfg, photos, data_done);
    let mut stages = stage_list(cfg, &times, &counts, prepare_s);
    print_plan(cfg, &stages, &times, &counts, &records)?;
    let n = stages.len();
    for i in 0..n {
        let s = stages[i].clone();
        // --force redoes the selected stages; with --only, the data stage only when it never ran.
        let force = match s.kind {
            Kind::Data => force_data,
            _ => cfg.force,
        };
        if records.done(&s.name, &s.options, force)? {
            println!(
                "stage {} already finished (recorded in {}): skipped",
                s.name,
                cfg.out.join("stages").display()
            );
            continue;
        }
        if force {
            if let Kind::Train(r) = &s.kind {
                forget_run(cfg, &records, r)?;
            }
        }
        let left: f64 = stages[i..].iter().map(|s| s.estimate_s).sum();
        progress_line(i, n, &s.name, &start, left);
        if crate::train::interrupted() {
            return Err(interrupted_error(&s.name));
        }
        let mut rec = StageRecord::new(&s.name, &s.options);
        rec.notes.push(format!("device: {}", dev.describe()));
        let t0 = Instant::now();
        if !run_stage(cfg, &s, &dev, &records, &mut rec)? {
            return Err(interrupted_error(&s.name));
        }
        rec.seconds = t0.elapsed().as_secs_f64();
        rec.finished = unix_now();
        rec.notes
            .push(format!("estimated before it ran: {:.0} s", s.estimate_s));
        records.write(&rec)?;
        println!("stage {} finished in {}", s.name, fmt_duration(rec.seconds));
        if matches!(s.kind, Kind::Data) {
            // Re-estimate from the real image counts.
            counts = Counts::of(cfg, photos, true);
            stages = stage_list(cfg, &times, &counts, prepare_s);
            print_plan(cfg, &stages, &times, &counts, &records)?;
        }
    }
    let page = report::write_report(cfg, &records, &counts, &times)?;
    println!(
        "study done in {}; report: {}",
        fmt_duration(start.elapsed().as_secs_f64()),
        page.display()
    );
    Ok(())
}
