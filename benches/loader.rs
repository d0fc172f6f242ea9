//! Loader throughput on synthetic 256² pairs with the training defaults (286 resize, 256 crop,
//! flips): `cargo bench --bench loader`. Prints images/s per thread count, streaming and
//! in-memory, and the time to generate the demo dataset (200 pairs of 128²).

use pix2pix::data::seeding::sample_rng;
use pix2pix::data::transform::sample_from_image;
use pix2pix::data::{load_rgb, make_synthetic_dataset, AlignedDataset, DataOptions, Loader};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let n = 64;
    let dir = tempfile::TempDir::new()?;
    let t = Instant::now();
    make_synthetic_dataset(dir.path(), n, 0, 0, 256, 1)?;
    println!(
        "generate {n} synthetic 512x256 pairs: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let ds = AlignedDataset::open(dir.path(), "train")?;
    // Per-stage cost on this thread (best of 5 passes; the machine may be shared): decode, then
    // the whole per-sample chain from RAM.
    let opts = DataOptions::default();
    let (mut decode, mut chain) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        let imgs = ds
            .paths()
            .iter()
            .map(|p| load_rgb(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        decode = decode.min(t.elapsed().as_secs_f64() / n as f64);
        let t = Instant::now();
        for (i, img) in imgs.iter().enumerate() {
            let mut rng = sample_rng(0, 1, i as u64);
            std::hint::black_box(sample_from_image(img, &opts, &mut rng, "x".into())?);
        }
        chain = chain.min(t.elapsed().as_secs_f64() / n as f64);
    }
    println!(
        "per image on one thread: decode {:.2} ms, resize+crop+flip+normalise {:.2} ms",
        decode * 1e3,
        chain * 1e3
    );
    for in_memory in [false, true] {
        for threads in [0, 1, 2, 4] {
            let opts = DataOptions {
                num_threads: threads,
                in_memory,
                ..DataOptions::default()
            };
            let loader = Loader::new(ds.clone(), opts)?;
            let _warm: usize = loader.epoch(0).map(|b| b.n).sum();
            let t = Instant::now();
            let mut images = 0;
            let mut wait = 0.0;
            for e in 1..=2 {
                for b in loader.epoch(e) {
                    images += b.n;
                    wait += b.wait_s;
                }
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "in_memory={in_memory:<5} threads={threads}: {:7.1} images/s ({images} in {s:.2} s, consumer waited {wait:.2} s)",
                images as f64 / s
            );
        }
    }
    let demo = tempfile::TempDir::new()?;
    let t = Instant::now();
    make_synthetic_dataset(demo.path(), 200, 0, 0, 128, 1)?;
    println!(
        "generate 200 synthetic 256x128 pairs: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
