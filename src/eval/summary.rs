//! Mean ± standard deviation of each metric over a run (one row of the study's Table 3).

use super::run::RunResult;

/// Mean and standard deviation of one metric over a run's images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// Population standard deviation (divide by n, numpy's default `ddof=0`), 0 for one image.
    /// NaN when a value is infinite (PSNR of an image identical to its target), where the mean
    /// is +inf and a spread means nothing.
    pub std: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        if n == 0 {
            return Stat {
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if !mean.is_finite() {
            return Stat { mean, std: f64::NAN };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        Stat { mean, std: var.sqrt() }
    }
}

/// One run's line of the comparison table.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub name: String,
    pub images: usize,
    pub cosine_dissimilarity: Stat,
    pub l1: Stat,
    pub psnr: Stat,
    pub ssim: Stat,
}

impl Summary {
    pub fn of(run: &RunResult) -> Summary {
        let col =
            |f: fn(&super::Metrics) -> f64| Stat::of(&run.images.iter().map(|i| f(&i.metrics)).collect::<Vec<_>>());
        Summary {
            name: run.name.clone(),
            images: run.images.len(),
            cosine_dissimilarity: col(|m| m.cosine_dissimilarity),
            l1: col(|m| m.l1),
            psnr: col(|m| m.psnr),
            ssim: col(|m| m.ssim),
        }
    }

    /// The four statistics with their column names, in table order.
    pub fn stats(&self) -> [(&'static str, Stat); 4] {
        [
            ("cosine_dissimilarity", self.cosine_dissimilarity),
            ("l1", self.l1),
            ("psnr", self.psnr),
            ("ssim", self.ssim),
        ]
    }
}
