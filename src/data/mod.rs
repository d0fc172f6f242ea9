//! The data side (SPEC §6): the aligned A|B dataset, the unaligned (CycleGAN) one, the reference's transforms with PIL-exact
//! bicubic resizing, a prefetching batch loader, PNG saving, and a synthetic dataset generator.
//! This module knows images and numbers, not networks.

pub mod aligned;
pub mod image_io;
pub mod loader;
pub mod options;
pub mod prepare;
pub mod resample;
pub mod seeding;
pub mod synthetic;
pub mod transform;
pub mod unaligned;

pub use aligned::AlignedDataset;
pub use image_io::{load_rgb, save_image, save_pair};
pub use loader::{Batch, Dataset, EpochIter, Loader};
pub use options::{DataOptions, Direction, Preprocess};
pub use resample::resize_bicubic;
pub use synthetic::make_synthetic_dataset;
pub use transform::{Sample, SampleParams};
pub use unaligned::UnalignedDataset;
