//! Data options with the reference's defaults (SPEC §6): train and test presets plus validation.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;

/// Which half of the A|B file is the input. `BtoA` swaps the halves (the facades script uses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    AtoB,
    BtoA,
}

/// The reference's `--preprocess` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preprocess {
    /// Bicubic resize to load_size × load_size (aspect ignored), then a crop_size crop.
    #[default]
    ResizeAndCrop,
    /// Crop only.
    Crop,
    /// Width → load_size keeping the aspect ratio, height at least crop_size.
    ScaleWidth,
    /// `ScaleWidth`, then a crop_size crop.
    ScaleWidthAndCrop,
    /// Only round each side to a multiple of 4 (bicubic).
    None,
}

impl FromStr for Direction {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "AtoB" => Ok(Direction::AtoB),
            "BtoA" => Ok(Direction::BtoA),
            _ => bail!("unknown direction {s:?}: expected AtoB or BtoA"),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::AtoB => "AtoB",
            Direction::BtoA => "BtoA",
        })
    }
}

impl FromStr for Preprocess {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "resize_and_crop" => Preprocess::ResizeAndCrop,
            "crop" => Preprocess::Crop,
            "scale_width" => Preprocess::ScaleWidth,
            "scale_width_and_crop" => Preprocess::ScaleWidthAndCrop,
            "none" => Preprocess::None,
            _ => bail!(
                "unknown preprocess mode {s:?}: expected resize_and_crop, crop, scale_width, \
                 scale_width_and_crop or none"
            ),
        })
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preprocess::ResizeAndCrop => "resize_and_crop",
            Preprocess::Crop => "crop",
            Preprocess::ScaleWidth => "scale_width",
            Preprocess::ScaleWidthAndCrop => "scale_width_and_crop",
            Preprocess::None => "none",
        })
    }
}

impl Preprocess {
    /// The reference tests `'crop' in opt.preprocess`.
    pub fn crops(self) -> bool {
        matches!(
            self,
            Preprocess::ResizeAndCrop | Preprocess::Crop | Preprocess::ScaleWidthAndCrop
        )
    }
}

/// Everything the aligned pipeline and the loader need to know.
#[derive(Clone, Debug, PartialEq)]
pub struct DataOptions {
    pub direction: Direction,
    pub preprocess: Preprocess,
    pub load_size: usize,
    pub crop_size: usize,
    pub no_flip: bool,
    /// Keep the sorted file order instead of shuffling each epoch.
    pub serial_batches: bool,
    pub batch_size: usize,
    /// Drives the epoch shuffles and every per-sample crop and flip.
    pub seed: u64,
    /// Decoding threads; 0 loads on the consumer's thread (the reference's test-time setting).
    pub num_threads: usize,
    /// Decode every file once at construction and transform from RAM afterwards.
    pub in_memory: bool,
}

impl Default for DataOptions {
    /// The reference's training defaults: 286 → 256 resize_and_crop, flips, shuffled, batch 1.
    fn default() -> Self {
        DataOptions {
            direction: Direction::AtoB,
            preprocess: Preprocess::ResizeAndCrop,
            load_size: 286,
            crop_size: 256,
            no_flip: false,
            serial_batches: false,
            batch_size: 1,
            seed: 0,
            num_threads: 4,
            in_memory: false,
        }
    }
}

impl DataOptions {
    /// The reference's test-time defaults (TestOptions + test.py): load_size = crop_size, so the
    /// resize_and_crop chain is a plain bicubic resize; no flip, file order, batch 1. We keep one
    /// decoding thread (the reference uses 0) since it cannot change the result.
    pub fn test() -> Self {
        DataOptions {
            load_size: 256,
            crop_size: 256,
            no_flip: true,
            serial_batches: true,
            batch_size: 1,
            num_threads: 1,
            ..DataOptions::default()
        }
    }

    /// Reject combinations the reference would assert on or that cannot produce a batch.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1 (got 0)");
        }
        if self.crop_size == 0 || self.load_size == 0 {
            bail!(
                "load_size ({}) and crop_size ({}) must be at least 1",
                self.load_size,
                self.crop_size
            );
        }
        // The reference asserts load_size >= crop_size; it matters where the image is first
        // scaled to load_size and then cropped (otherwise the crop would pad with black).
        let scales_then_crops = matches!(
            self.preprocess,
            Preprocess::ResizeAndCrop | Preprocess::ScaleWidthAndCrop
        );
        if scales_then_crops && self.crop_size > self.load_size {
            bail!(
                "crop_size ({}) is larger than load_size ({}) with preprocess {}: \
                 the crop must fit inside the resized image",
                self.crop_size,
                self.load_size,
                self.preprocess
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let d = DataOptions::default();
        assert_eq!(
            (d.load_size, d.crop_size, d.batch_size, d.num_threads),
            (286, 256, 1, 4)
        );
        assert_eq!(
            (d.direction, d.preprocess),
            (Direction::AtoB, Preprocess::ResizeAndCrop)
        );
        let t = DataOptions::test();
        assert!(t.no_flip && t.serial_batches && t.load_size == t.crop_size);
        assert!(d.validate().is_ok() && t.validate().is_ok());
    }

    #[test]
    fn validation_names_the_values() {
        let bad = DataOptions {
            load_size: 200,
            crop_size: 256,
            ..Default::default()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("256") && msg.contains("200"), "{msg}");
        let zero = DataOptions {
            batch_size: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let crop_only = DataOptions {
            load_size: 200,
            preprocess: Preprocess::Crop,
            ..Default::default()
        };
        assert!(crop_only.validate().is_ok());
    }

    #[test]
    fn names_round_trip() {
        for p in ["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"] {
            assert_eq!(p.parse::<Preprocess>().unwrap().to_string(), p);
        }
        assert_eq!("BtoA".parse::<Direction>().unwrap(), Direction::BtoA);
        assert!("sideways".parse::<Direction>().is_err());
    }
}
