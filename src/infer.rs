//! `test`: run the generator over `DATAROOT/test` and write the reference's result page
//! (results/NAME/test_<epoch>/images/<stem>_{real_A,fake_B,real_B}.png and index.html).
//! Default is the reference's test mode: BN with the test image's own statistics and dropout on
//! (seeded); `eval` uses the running statistics and no dropout (SPEC.md §5).

use crate::checkpoint;
use crate::data::{save_image, AlignedDataset, DataOptions, Loader};
use crate::device::Device;
use crate::models::unet::{UnetConfig, UnetGenerator};
use crate::ops::activation::splitmix;
use crate::tensor::Shape;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct TestConfig {
    pub dataroot: PathBuf,
    pub phase: String,
    pub checkpoint: PathBuf,
    pub results_dir: PathBuf,
    pub gcfg: UnetConfig,
    pub data: DataOptions,
    pub num_test: usize,
    pub eval: bool,
    pub seed: u64,
}

/// One generated image: where its three PNGs went.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub stem: String,
    pub real_a: PathBuf,
    pub fake_b: PathBuf,
    pub real_b: PathBuf,
}

pub fn run_test(cfg: &TestConfig, dev: &Device) -> Result<Vec<TestImage>> {
    let dataset = AlignedDataset::open(&cfg.dataroot, &cfg.phase)?;
    let loader = Loader::new(
        dataset,
        DataOptions {
            batch_size: 1,
            ..cfg.data.clone()
        },
    )?;
    let mut g = UnetGenerator::new(cfg.gcfg, dev, 0)?;
    checkpoint::load_network(&cfg.checkpoint, &mut g.params)?;
    let images_dir = cfg.results_dir.join("images");
    std::fs::create_dir_all(&images_dir).with_context(|| format!("creating {}", images_dir.display()))?;
    let mut out = vec![];
    for (i, batch) in loader.epoch(0).enumerate() {
        if out.len() >= cfg.num_test {
            break;
        }
        let shape = Shape::new(1, batch.c, batch.h, batch.w);
        g.check_input(shape)
            .with_context(|| format!("{}", batch.paths[0].display()))?;
        let x = dev.upload_tensor(shape, &batch.a);
        let seed = (!cfg.eval).then(|| splitmix(cfg.seed, i as u64));
        let fake = dev.download(&g.forward(dev, &x, !cfg.eval, seed).data);
        let stem = batch.paths[0]
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{i:05}"));
        let path = |label: &str| images_dir.join(format!("{stem}_{label}.png"));
        let img = TestImage {
            stem: stem.clone(),
            real_a: path("real_A"),
            fake_b: path("fake_B"),
            real_b: path("real_B"),
        };
        save_image(&img.real_a, &batch.a, batch.h, batch.w)?;
        save_image(&img.fake_b, &fake, batch.h, batch.w)?;
        save_image(&img.real_b, &batch.b, batch.h, batch.w)?;
        out.push(img);
    }
    write_index(
        &cfg.results_dir,
        &format!(
            "{} ({})",
            cfg.checkpoint.display(),
            if cfg.eval {
                "eval mode"
            } else {
                "train-mode BN, dropout on"
            }
        ),
        &out,
    )?;
    Ok(out)
}

/// The reference's page: one header per image, then real_A, fake_B, real_B in a row.
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
        for (label, p) in [
            ("real_A", &img.real_a),
            ("fake_B", &img.fake_b),
            ("real_B", &img.real_b),
        ] {
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
