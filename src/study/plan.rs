//! What the study runs: the scales (tiny, small, full) and the study's Table 2 (six runs: five
//! pix2pix, and CycleGAN on the same filtered split, its A|B pairs used unpaired).

use anyhow::{bail, Result};
use std::fmt;

/// How big the study is. `full` is the study's protocol; `small` and `tiny` keep its comparisons
/// (same epochs for every batch size, one split for all runs) at sizes a CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Tiny,
    Small,
    Full,
}

impl std::str::FromStr for Scale {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Scale> {
        Ok(match s {
            "tiny" => Scale::Tiny,
            "small" => Scale::Small,
            "full" => Scale::Full,
            _ => bail!("unknown --scale {s:?}: expected tiny, small or full"),
        })
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Full => "full",
        })
    }
}

/// Every size-dependent setting of a study.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleParams {
    pub scale: Scale,
    /// Side of the prepared photos (prepare --size) and the test size.
    pub size: u32,
    pub net_g: &'static str,
    /// Run 6's generator (CycleGAN; same ngf and ndf as pix2pix's).
    pub cycle_gan_net_g: &'static str,
    pub ngf: usize,
    pub ndf: usize,
    pub load_size: usize,
    pub crop_size: usize,
    pub n_epochs: usize,
    pub n_epochs_decay: usize,
    /// Use at most this many photos of the folder (evenly spaced in name order); None: all.
    pub max_photos: Option<usize>,
    /// Test images per result folder (0: the whole split).
    pub num_test: usize,
    /// Validation images after each epoch.
    pub val_images: usize,
}

impl ScaleParams {
    pub fn of(scale: Scale) -> ScaleParams {
        match scale {
            Scale::Tiny => ScaleParams {
                scale,
                size: 128,
                net_g: "unet_128",
                cycle_gan_net_g: "resnet_6blocks",
                ngf: 8,
                ndf: 8,
                load_size: 142,
                crop_size: 128,
                n_epochs: 1,
                n_epochs_decay: 1,
                max_photos: Some(60),
                num_test: 8,
                val_images: 4,
            },
            Scale::Small => ScaleParams {
                scale,
                size: 128,
                net_g: "unet_128",
                cycle_gan_net_g: "resnet_6blocks",
                ngf: 32,
                ndf: 32,
                load_size: 142,
                crop_size: 128,
                n_epochs: 2,
                n_epochs_decay: 1,
                max_photos: None,
                num_test: 0,
                val_images: 30,
            },
            Scale::Full => ScaleParams {
                scale,
                size: 256,
                net_g: "unet_256",
                cycle_gan_net_g: "resnet_9blocks",
                ngf: 64,
                ndf: 64,
                load_size: 286,
                crop_size: 256,
                n_epochs: 100,
                n_epochs_decay: 100,
                max_photos: None,
                num_test: 0,
                val_images: 50,
            },
        }
    }

    pub fn epochs(&self) -> usize {
        self.n_epochs + self.n_epochs_decay
    }

    /// One line for the plan and the record of every stage that depends on the scale.
    pub fn describe(&self) -> String {
        format!(
            "scale {} ({}², {} ngf {} ndf {}, load {} crop {}, {}+{} epochs, {} photos, {} test images, {} val images)",
            self.scale,
            self.size,
            self.net_g,
            self.ngf,
            self.ndf,
            self.load_size,
            self.crop_size,
            self.n_epochs,
            self.n_epochs_decay,
            self.max_photos.map_or("all".to_string(), |n| format!("≤ {n}")),
            if self.num_test == 0 {
                "all".to_string()
            } else {
                format!("≤ {}", self.num_test)
            },
            self.val_images
        )
    }
}

/// Which prepared dataset a run trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataVariant {
    /// Every readable photo, no grayscale or face filter (same framing as filtered).
    Original,
    /// Grayscale and small-face photos dropped (prepare's default filters).
    Filtered,
    /// Filtered, each train photo in the 4 cartoon styles.
    Augmented,
}

impl DataVariant {
    pub fn name(self) -> &'static str {
        match self {
            DataVariant::Original => "original",
            DataVariant::Filtered => "filtered",
            DataVariant::Augmented => "augmented",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    Pix2Pix,
    /// CycleGAN (`train --model cycle_gan`): the run's A|B pairs read unaligned.
    CycleGan,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Pix2Pix => "pix2pix",
            Model::CycleGan => "cycle_gan",
        }
    }
}

/// One row of the study's Table 2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSpec {
    pub id: usize,
    pub model: Model,
    pub data: DataVariant,
    pub batch_size: usize,
    pub change: &'static str,
}

impl RunSpec {
    /// The run's folder name under checkpoints/ and results/.
    pub fn dir_name(&self) -> String {
        match self.model {
            Model::Pix2Pix => format!("run{}_{}_b{}", self.id, self.data.name(), self.batch_size),
            Model::CycleGan => format!("run{}_{}_{}", self.id, self.model.name(), self.data.name()),
        }
    }

    pub fn label(&self) -> String {
        format!(
            "run {} ({}, {}, {})",
            self.id,
            self.model.name(),
            self.data.name(),
            self.change
        )
    }
}

/// The study's Table 2.
pub const RUNS: [RunSpec; 6] = [
    RunSpec {
        id: 1,
        model: Model::Pix2Pix,
        data: DataVariant::Original,
        batch_size: 1,
        change: "defaults",
    },
    RunSpec {
        id: 2,
        model: Model::Pix2Pix,
        data: DataVariant::Filtered,
        batch_size: 1,
        change: "defaults",
    },
    RunSpec {
        id: 3,
        model: Model::Pix2Pix,
        data: DataVariant::Filtered,
        batch_size: 8,
        change: "batch 8",
    },
    RunSpec {
        id: 4,
        model: Model::Pix2Pix,
        data: DataVariant::Filtered,
        batch_size: 64,
        change: "batch 64",
    },
    RunSpec {
        id: 5,
        model: Model::Pix2Pix,
        data: DataVariant::Augmented,
        batch_size: 1,
        change: "defaults",
    },
    RunSpec {
        id: 6,
        model: Model::CycleGan,
        data: DataVariant::Filtered,
        batch_size: 1,
        change: "defaults",
    },
];

/// The seed study's Table 3 (colorFERET, 256², 200 epochs): mean cosine dissimilarity by batch
/// size, for the runs that vary only the batch (2, 3, 4).
pub const SEED_TABLE3: [(usize, f64); 3] = [(1, 0.00136), (8, 0.00622), (64, 0.01052)];

/// Parses `--only 2,3` into run ids (each 1..=6, at least one).
pub fn parse_only(s: &str) -> Result<Vec<usize>> {
    let mut ids = vec![];
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match t.parse::<usize>() {
            Ok(i) if (1..=RUNS.len()).contains(&i) => ids.push(i),
            _ => bail!(
                "--only {s:?}: expected run numbers 1-{} separated by commas",
                RUNS.len()
            ),
        }
    }
    if ids.is_empty() {
        bail!("--only {s:?}: give at least one run number");
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The four training styles (run 5's augmentation) and the out-of-distribution sketch.
pub const TRAIN_STYLES: [&str; 4] = ["classic", "smooth", "bold", "posterized"];
pub const TEST_STYLES: [&str; 5] = ["classic", "smooth", "bold", "posterized", "sketch"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parses_run_numbers() {
        assert_eq!(parse_only("3, 2,3").unwrap(), vec![2, 3]);
        assert!(parse_only("7").is_err());
        assert!(parse_only("a").is_err());
        assert!(parse_only("").is_err());
    }

    #[test]
    fn the_run_table_is_the_studys() {
        let batches: Vec<usize> = RUNS[1..4].iter().map(|r| r.batch_size).collect();
        assert_eq!(batches, [1, 8, 64]);
        assert!(RUNS[..5].iter().all(|r| r.model == Model::Pix2Pix));
        assert_eq!(RUNS[5].model.name(), "cycle_gan");
        assert_eq!(RUNS[5].data, DataVariant::Filtered);
        let names: std::collections::HashSet<String> = RUNS.iter().map(|r| r.dir_name()).collect();
        assert_eq!(names.len(), RUNS.len());
    }
}
