//! Evaluation of test results: per-image metrics (cosine dissimilarity, L1, PSNR, SSIM) on
//! [0, 1] pixels, a run's `metrics.csv`, and mean ± std per run. Knows images and numbers, not
//! networks; the pages and plots built from these numbers live in `report/`.

pub mod metrics;
pub mod run;
pub mod ssim_core;
pub mod summary;

pub use metrics::{compare, cosine_dissimilarity, l1, mse, psnr, ssim, Image, Metrics};
pub use run::{
    evaluate_run, evaluate_run_fake_a, evaluate_run_in, find_pairs, find_pairs_in, fmt_num, run_name,
    write_metrics_csv, Direction, ImagePaths, ImageResult, RunResult,
};
pub use summary::{Stat, Summary};
