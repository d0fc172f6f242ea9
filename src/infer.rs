//! `test`: run the generator(s) over `DATAROOT/test` and write the reference's result page
//! (results/NAME/test_<epoch>/images/<stem>_<label>.png and index.html):
//! - pix2pix: real_A, fake_B, real_B. Default is the reference's test mode: BN with the test
//!   image's own statistics and dropout on (seeded); `eval` uses the running statistics and no
//!   dropout (SPEC.md §5).
//! - CycleGAN: real_A, fake_B = G_A(A), rec_A = G_B(fake_B), real_B, fake_A = G_B(B),
//!   rec_B = G_A(fake_A), on the unaligned test set read serially (B = B[i mod |B|]).

use crate::checkpoint;
use crate::data::{save_image, AlignedDataset, DataOptions, Dataset, Loader, UnalignedDataset};
use crate::device::Device;
use crate::models::model::Generator;
use crate::models::resnet::{ResnetConfig, ResnetGenerator};
use crate::models::unet::{UnetConfig, UnetGenerator};
use crate::ops::activation::splitmix;
use crate::ops::tensor::copy;
use crate::tensor::Shape;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The networks a test run loads.
#[derive(Clone, Debug)]
pub enum TestModel {
    Pix2Pix {
        g: UnetConfig,
        checkpoint: PathBuf,
    },
    CycleGan {
        g: ResnetConfig,
        g_a: PathBuf,
        g_b: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct TestConfig {
    pub dataroot: PathBuf,
    pub phase: String,
    pub model: TestModel,
    pub results_dir: PathBuf,
    /// Read `phase` as an unaligned dataset (phaseA/phaseB, or A|B pairs used unpaired).
    pub unaligned: bool,
    pub data: DataOptions,
    pub num_test: usize,
    pub eval: bool,
    pub seed: u64,
}

/// One test input: its stem and where each labelled PNG went, in page order.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub stem: String,
    pub images: Vec<(&'static str, PathBuf)>,
}

impl TestImage {
    pub fn path(&self, label: &str) -> Option<&Path> {
        self.images.iter().find(|(l, _)| *l == label).map(|(_, p)| p.as_path())
    }
}

/// The loaded generators: G (pix2pix), or G_A and G_B (CycleGAN). One per test run, so the
/// variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Nets {
    Pix2Pix(UnetGenerator),
    CycleGan(ResnetGenerator, ResnetGenerator),
}

pub fn run_test(cfg: &TestConfig, dev: &Device) -> Result<Vec<TestImage>> {
    let dataset: Dataset = if cfg.unaligned {
        UnalignedDataset::open(&cfg.dataroot, &cfg.phase)?.into()
    } else {
        AlignedDataset::open(&cfg.dataroot, &cfg.phase)?.into()
    };
    let loader = Loader::new(
        dataset,
        DataOptions {
            batch_size: 1,
            ..cfg.data.clone()
        },
    )?;
    let (mut nets, title) = match &cfg.model {
        TestModel::Pix2Pix { g, checkpoint } => {
            let mut net = UnetGenerator::new(*g, dev, 0)?;
            checkpoint::load_network(checkpoint, &mut net.params)?;
            let mode = if cfg.eval {
                "eval mode"
            } else {
                "train-mode BN, dropout on"
            };
            (Nets::Pix2Pix(net), format!("{} ({mode})", checkpoint.display()))
        }
        TestModel::CycleGan { g, g_a, g_b } => {
            let (mut a, mut b) = (ResnetGenerator::new(*g, dev, 0)?, ResnetGenerator::new(*g, dev, 0)?);
            checkpoint::load_network(g_a, &mut a.params)?;
            checkpoint::load_network(g_b, &mut b.params)?;
            (Nets::CycleGan(a, b), format!("{} and {}", g_a.display(), g_b.display()))
        }
    };
    let images_dir = cfg.results_dir.join("images");
    std::fs::create_dir_all(&images_dir).with_context(|| format!("creating {}", images_dir.display()))?;
    let mut out = vec![];
    for (i, batch) in loader.epoch(0).enumerate() {
        if out.len() >= cfg.num_test {
            break;
        }
        let shape = Shape::new(1, batch.c, batch.h, batch.w);
        let file = || format!("{}", batch.paths[0].display());
        let (xa, xb) = (dev.upload_tensor(shape, &batch.a), dev.upload_tensor(shape, &batch.b));
        let train = !cfg.eval;
        let mut visuals: Vec<(&'static str, Vec<f32>)> = vec![("real_A", batch.a.clone())];
        match &mut nets {
            Nets::Pix2Pix(g) => {
                Generator::check_input(g, shape).with_context(file)?;
                let seed = train.then(|| splitmix(cfg.seed, i as u64));
                visuals.push(("fake_B", dev.download(&g.forward(dev, &xa, train, seed).data)));
                visuals.push(("real_B", batch.b.clone()));
            }
            Nets::CycleGan(ga, gb) => {
                Generator::check_input(ga, shape).with_context(file)?;
                let mut fake_b = dev.zeros_tensor(shape);
                copy(dev, ga.forward(dev, &xa, train), &mut fake_b, false);
                visuals.push(("fake_B", dev.download(&fake_b.data)));
                visuals.push(("rec_A", dev.download(&gb.forward(dev, &fake_b, train).data)));
                visuals.push(("real_B", batch.b.clone()));
                let mut fake_a = dev.zeros_tensor(shape);
                copy(dev, gb.forward(dev, &xb, train), &mut fake_a, false);
                visuals.push(("fake_A", dev.download(&fake_a.data)));
                visuals.push(("rec_B", dev.download(&ga.forward(dev, &fake_a, train).data)));
            }
        }
        let stem = batch.paths[0]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{i:05}"));
        let mut img = TestImage {
            stem: stem.clone(),
            images: vec![],
        };
        for (label, v) in visuals {
            let path = images_dir.join(format!("{stem}_{label}.png"));
            save_image(&path, &v, batch.h, batch.w)?;
            img.images.push((label, path));
        }
        out.push(img);
    }
    write_index(&cfg.results_dir, &title, &out)?;
    Ok(out)
}

/// The reference's page: one header per image, then its images in a row.
pub fn write_index(dir: &Path, title: &str, images: &[TestImage]) -> Result<()> {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>",
        esc(title)
    );
    let _ = writeln!(h, "<h2>{}</h2>", esc(title));
    for img in images {
        let _ = writeln!(h, "<h3>{}</h3>\n<table><tr>", esc(&img.stem));
        for (label, p) in &img.images {
            let rel = p.strip_prefix(dir).unwrap_or(p).to_string_lossy().into_owned();
            let _ = writeln!(
                h,
                "<td style=\"text-align:center\"><a href=\"{0}\"><img src=\"{0}\" width=\"256\"></a><br>{1}</td>",
                esc(&rel),
                label
            );
        }
        let _ = writeln!(h, "</tr></table>");
    }
    h.push_str("</body></html>\n");
    checkpoint::write_atomic(&dir.join("index.html"), h.as_bytes())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
