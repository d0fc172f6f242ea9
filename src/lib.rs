//! pix2pix on a hand-written tensor engine. See README.md for the commands and shared/DESIGN.md
//! (in the project's shared folder) for the layout: tensor → device → ops → nn → models → step.

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod eval;
pub mod gradcheck;
pub mod infer;
pub mod models;
pub mod nn;
pub mod nvtx;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod report;
pub mod study;
pub mod tensor;
pub mod train;
pub mod validate;
