//! One run of Table 2: its training (the library's `train`, resumed with `--continue-train` after
//! an interruption) and its tests (the library's `test` on the filtered test split, on each
//! cartoon style of it, and for run 1 on its own unfiltered test split), each with its metrics.
//! Run 6 is CycleGAN on the same filtered split: its A|B pairs read unaligned (each half its own
//! crop and flip, B drawn at random), tested serially (B of the same pair) and scored as pix2pix
//! (fake_B against real_B), plus fake_A against real_A.

use super::datasets::variant_dir;
use super::measure::cycle_gan_model;
use super::plan::{Model, RunSpec, ScaleParams, TEST_STYLES};
use super::records::{command, StageRecord};
use super::StudyConfig;
use crate::data::DataOptions;
use crate::device::Device;
use crate::eval::{evaluate_run, evaluate_run_fake_a, write_metrics_csv};
use crate::infer::{run_test, TestConfig, TestModel};
use crate::models::patchgan::PatchGanConfig;
use crate::models::pix2pix::Pix2PixOptions;
use crate::models::unet::UnetConfig;
use crate::models::ModelConfig;
use crate::nn::layers::NormKind;
use crate::optim::{LrPolicy, Schedule};
use crate::train::{net_path, state_path, train, TrainConfig};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

const SAVE_LATEST_FREQ: usize = 1000;
const LOADER_THREADS: usize = 2;

pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}
pub fn results_dir(out: &Path) -> PathBuf {
    out.join("results")
}
/// Run 1 on its own (unfiltered) test split: a second results root, so the folder names match
/// `pix2pix test`'s RESULTS_DIR/NAME/test_latest.
pub fn original_results_dir(out: &Path) -> PathBuf {
    out.join("results-original")
}

/// The result folder of run `r` on the filtered test split in `style` (classic: `test`).
pub fn result_folder(out: &Path, r: &RunSpec, style: &str) -> PathBuf {
    results_dir(out)
        .join(r.dir_name())
        .join(format!("{}_latest", phase(style)))
}
pub fn original_result_folder(out: &Path, r: &RunSpec) -> PathBuf {
    original_results_dir(out).join(r.dir_name()).join("test_latest")
}
fn phase(style: &str) -> String {
    if style == "classic" {
        "test".into()
    } else {
        format!("test_{style}")
    }
}

fn nets(p: &ScaleParams) -> Result<(UnetConfig, PatchGanConfig)> {
    Ok((
        UnetConfig::named(p.net_g, p.ngf, true, NormKind::Batch)?,
        PatchGanConfig {
            input_nc: 6,
            ndf: p.ndf,
            n_layers: 3,
            norm: NormKind::Batch,
        },
    ))
}

/// The training run of `r`, as `pix2pix train` with the flags of [`train_words`] would make it.
pub fn train_config(cfg: &StudyConfig, r: &RunSpec, resume: bool) -> Result<TrainConfig> {
    let p = &cfg.params;
    let (gcfg, dcfg) = nets(p)?;
    let words = train_words(cfg, r);
    let (model, unaligned) = match r.model {
        Model::Pix2Pix => (
            ModelConfig::Pix2Pix {
                g: gcfg,
                d: dcfg,
                opt: Pix2PixOptions::default(),
            },
            false,
        ),
        Model::CycleGan => (cycle_gan_model(p)?, true),
    };
    Ok(TrainConfig {
        dataroot: variant_dir(&cfg.out, r.data.name()),
        name: r.dir_name(),
        checkpoints_dir: checkpoints_dir(&cfg.out),
        data: DataOptions {
            load_size: p.load_size,
            crop_size: p.crop_size,
            batch_size: r.batch_size,
            seed: cfg.seed,
            num_threads: LOADER_THREADS,
            in_memory: true,
            ..DataOptions::default()
        },
        unaligned,
        model,
        schedule: Schedule {
            lr: 2e-4,
            policy: LrPolicy::Linear,
            n_epochs: p.n_epochs,
            n_epochs_decay: p.n_epochs_decay,
            epoch_count: 1,
        },
        seed: cfg.seed,
        print_freq: 100,
        save_latest_freq: SAVE_LATEST_FREQ,
        save_epoch_freq: 0,
        max_iters: None,
        max_seconds: None,
        continue_train: resume,
        load_epoch: "latest".into(),
        options_text: format!("{}\n(run by pix2pix study; {})\n", command(&words), r.label()),
        progress: cfg.progress,
        profile: false,
        graph: true,
        val_freq: 1,
        val_images: p.val_images,
    })
}

/// `pix2pix train` flags equal to [`train_config`] (everything else at the CLI's defaults).
pub fn train_words(cfg: &StudyConfig, r: &RunSpec) -> Vec<String> {
    let p = &cfg.params;
    let s = |v: &dyn ToString| v.to_string();
    let mut w: Vec<String> = vec!["train".into()];
    let net_g = match r.model {
        Model::Pix2Pix => p.net_g,
        Model::CycleGan => {
            w.extend(["--model".into(), "cycle_gan".into()]);
            p.cycle_gan_net_g
        }
    };
    for (k, v) in [
        ("--dataroot", variant_dir(&cfg.out, r.data.name()).display().to_string()),
        ("--name", r.dir_name()),
        ("--checkpoints-dir", checkpoints_dir(&cfg.out).display().to_string()),
        ("--netG", s(&net_g)),
        ("--ngf", s(&p.ngf)),
        ("--ndf", s(&p.ndf)),
        ("--batch-size", s(&r.batch_size)),
        ("--load-size", s(&p.load_size)),
        ("--crop-size", s(&p.crop_size)),
        ("--n-epochs", s(&p.n_epochs)),
        ("--n-epochs-decay", s(&p.n_epochs_decay)),
        ("--seed", s(&cfg.seed)),
        ("--device", cfg.device.clone()),
        ("--num-threads", s(&LOADER_THREADS)),
        ("--save-latest-freq", s(&SAVE_LATEST_FREQ)),
        ("--save-epoch-freq", "0".into()),
        ("--val-images", s(&p.val_images)),
    ] {
        w.push(k.into());
        w.push(v);
    }
    w.push("--in-memory".into());
    w
}

/// Trains run `r`; Ok(false) when Ctrl-C stopped it (its `latest` checkpoint is saved).
pub fn train_stage(cfg: &StudyConfig, r: &RunSpec, dev: &Device, rec: &mut StageRecord) -> Result<bool> {
    let dir = checkpoints_dir(&cfg.out).join(r.dir_name());
    let resume = state_path(&dir, "latest").exists();
    if !resume && dir.exists() {
        // The study's own folder of a run that never saved a state: start it afresh.
        std::fs::remove_dir_all(&dir)?;
    }
    let tc = train_config(cfg, r, resume)?;
    let words = train_words(cfg, r);
    rec.commands.push(command(&words));
    if resume {
        rec.notes
            .push("resumed from an interrupted run with --continue-train (the same command plus that flag)".into());
        println!("{}: resuming {}", r.label(), dir.display());
    }
    let s = train(&tc, dev)?;
    let l = |i: usize| s.last_losses.get(i).copied().unwrap_or(f32::NAN);
    rec.notes.push(format!(
        "{} iterations, {} images, {:.1} s of training in this call; last losses G_GAN {:.3} G_L1 {:.3} D_real {:.3} D_fake {:.3}",
        s.iterations, s.images, s.seconds, l(0), l(1), l(2), l(3)
    ));
    Ok(!s.interrupted)
}

fn test_config(
    cfg: &StudyConfig,
    r: &RunSpec,
    dataroot: PathBuf,
    phase: &str,
    results_root: &Path,
) -> Result<TestConfig> {
    let p = &cfg.params;
    let dir = checkpoints_dir(&cfg.out).join(r.dir_name());
    let (model, unaligned) = match r.model {
        Model::Pix2Pix => (
            TestModel::Pix2Pix {
                g: nets(p)?.0,
                checkpoint: net_path(&dir, "latest", "G"),
            },
            false,
        ),
        Model::CycleGan => {
            let crate::models::ModelConfig::CycleGan { g, .. } = cycle_gan_model(p)? else {
                unreachable!("cycle_gan_model builds a CycleGAN")
            };
            (
                TestModel::CycleGan {
                    g,
                    g_a: net_path(&dir, "latest", "G_A"),
                    g_b: net_path(&dir, "latest", "G_B"),
                },
                true,
            )
        }
    };
    Ok(TestConfig {
        dataroot,
        phase: phase.to_string(),
        model,
        results_dir: results_root.join(r.dir_name()).join(format!("{phase}_latest")),
        unaligned,
        data: DataOptions {
            load_size: p.crop_size,
            crop_size: p.crop_size,
            seed: cfg.seed,
            ..DataOptions::test()
        },
        num_test: if p.num_test == 0 { usize::MAX } else { p.num_test },
        eval: false,
        seed: cfg.seed,
    })
}

fn test_words(cfg: &StudyConfig, r: &RunSpec, tc: &TestConfig, results_root: &Path) -> Vec<String> {
    let p = &cfg.params;
    let mut w: Vec<String> = vec!["test".into()];
    let net_g = match r.model {
        Model::Pix2Pix => p.net_g,
        Model::CycleGan => {
            w.extend(["--model".into(), "cycle_gan".into()]);
            p.cycle_gan_net_g
        }
    };
    for (k, v) in [
        ("--dataroot", tc.dataroot.display().to_string()),
        ("--phase", tc.phase.clone()),
        ("--name", r.dir_name()),
        ("--checkpoints-dir", checkpoints_dir(&cfg.out).display().to_string()),
        ("--results-dir", results_root.display().to_string()),
        ("--netG", net_g.to_string()),
        ("--ngf", p.ngf.to_string()),
        ("--crop-size", p.crop_size.to_string()),
        ("--num-test", tc.num_test.min(1_000_000).to_string()),
        ("--seed", cfg.seed.to_string()),
        ("--device", cfg.device.clone()),
    ] {
        w.push(k.into());
        w.push(v);
    }
    w
}

/// Tests run `r` on every style of the filtered test split (and run 1 on the original test
/// split), then scores each result folder (metrics.csv, as `pix2pix eval`). Ok(false) when
/// Ctrl-C was pressed (the stage is then redone on the next run).
pub fn test_stage(cfg: &StudyConfig, r: &RunSpec, dev: &Device, rec: &mut StageRecord) -> Result<bool> {
    let mut jobs: Vec<(PathBuf, String, PathBuf)> = TEST_STYLES
        .iter()
        .map(|s| (variant_dir(&cfg.out, "filtered"), phase(s), results_dir(&cfg.out)))
        .collect();
    if r.data.name() == "original" {
        jobs.push((
            variant_dir(&cfg.out, "original"),
            "test".into(),
            original_results_dir(&cfg.out),
        ));
    }
    let mut folders = vec![];
    for (dataroot, phase, root) in jobs {
        if crate::train::interrupted() {
            return Ok(false);
        }
        let tc = test_config(cfg, r, dataroot, &phase, &root)?;
        let checkpoint = match &tc.model {
            TestModel::Pix2Pix { checkpoint, .. } => checkpoint,
            TestModel::CycleGan { g_a, .. } => g_a,
        };
        if !checkpoint.is_file() {
            bail!(
                "{} not found: run {}'s training did not finish",
                checkpoint.display(),
                r.id
            );
        }
        rec.commands.push(command(&test_words(cfg, r, &tc, &root)));
        if tc.results_dir.exists() {
            std::fs::remove_dir_all(&tc.results_dir)?;
        }
        let imgs = run_test(&tc, dev)?;
        let run = evaluate_run(&tc.results_dir)?;
        write_metrics_csv(&run)?;
        if let Some(run_a) = evaluate_run_fake_a(&tc.results_dir)? {
            write_metrics_csv(&run_a)?; // CycleGAN's G_B: metrics_fake_A.csv
        }
        rec.notes
            .push(format!("{}: {} images", tc.results_dir.display(), imgs.len()));
        folders.push(tc.results_dir.display().to_string());
    }
    rec.commands.push(format!(
        "(study) metrics.csv in each result folder, as `pix2pix eval` writes it: pix2pix eval {} --out <any folder>",
        folders.join(" ")
    ));
    Ok(!crate::train::interrupted())
}
