//! `eval` (metrics of test runs, the comparison table and page) and `plot` (a run's loss curves).

use anyhow::{Context, Result};
use clap::Args;
use pix2pix::checkpoint::write_atomic;
use pix2pix::eval::{evaluate_run, evaluate_run_fake_a, write_metrics_csv, Direction, Summary};
use pix2pix::report::{compare, plot_losses, table};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Test result folders, as `pix2pix test` writes them: results/NAME/test_EPOCH (with
    /// images/<stem>_fake_B.png and <stem>_real_B.png; a CycleGAN run's <stem>_fake_A.png are
    /// scored against <stem>_real_A.png too, as a second row NAME/test_EPOCH fake_A).
    #[arg(required = true, value_name = "RESULT_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the comparison goes: summary.csv, summary.html and index.html (replaced if present).
    #[arg(long, default_value = "results/compare")]
    pub out: PathBuf,
    /// Images shown side by side on the comparison page (the table uses all of them).
    #[arg(long, default_value_t = 30)]
    pub max_images: usize,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A training run's folder, checkpoints/NAME, holding loss_log.csv.
    #[arg(value_name = "RUN_DIR")]
    pub dir: PathBuf,
    /// The PNG to write [default: RUN_DIR/loss.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Evaluates every run, writes each one's metrics.csv, prints the table and writes the page.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let mut runs = vec![];
    for dir in &a.dirs {
        let mut run = evaluate_run(dir)?;
        // Two folders with the same NAME/test_EPOCH (e.g. a default and an --eval test in
        // different results dirs) would be indistinguishable in the table: use the path given.
        if a.dirs.iter().filter(|d| pix2pix::eval::run_name(d) == run.name).count() > 1 {
            run.name = dir.display().to_string();
        }
        // A CycleGAN run also has fake_A = G_B(real_B): scored against real_A as its own row.
        let run_a = evaluate_run_fake_a(dir)?.map(|mut r| {
            r.name = format!("{} fake_A", run.name);
            r
        });
        for run in std::iter::once(run).chain(run_a) {
            let csv = write_metrics_csv(&run)?;
            println!("{}: {} images → {}", run.name, run.images.len(), csv.display());
            runs.push(run);
        }
    }
    let summaries: Vec<Summary> = runs.iter().map(Summary::of).collect();
    println!();
    print!("{}", table::text(&summaries));
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_atomic(&a.out.join("summary.csv"), table::csv(&summaries).as_bytes())?;
    let fragment = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pix2pix metrics</title></head><body>\n{}</body></html>\n",
        table::html(&summaries)
    );
    write_atomic(&a.out.join("summary.html"), fragment.as_bytes())?;
    let page = compare::write_page(&a.out, &runs, &summaries, a.max_images)?;
    let fake_b: Vec<_> = runs
        .iter()
        .filter(|r| r.direction == Direction::AtoB)
        .cloned()
        .collect();
    let sel = compare::select(&fake_b, a.max_images);
    println!();
    if sel.dropped > 0 {
        println!("{} image(s) missing in some run: left out of the page", sel.dropped);
    }
    println!(
        "wrote {}, {} and {} ({} of {} common images shown)",
        a.out.join("summary.csv").display(),
        a.out.join("summary.html").display(),
        page.display(),
        sel.stems.len(),
        sel.common
    );
    Ok(())
}

pub fn plot(a: &PlotArgs) -> Result<()> {
    let csv = a.dir.join("loss_log.csv");
    if !csv.is_file() {
        anyhow::bail!(
            "{} not found: is {} a training run folder (checkpoints/NAME)?",
            csv.display(),
            a.dir.display()
        );
    }
    let png = a.out.clone().unwrap_or_else(|| a.dir.join("loss.png"));
    plot_losses(&csv, &png)?;
    println!("wrote {}", png.display());
    Ok(())
}
