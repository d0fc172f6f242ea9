//! pix2pix on a hand-written tensor engine. See README.md for the commands and shared/DESIGN.md
//! (in the project's shared folder) for the layout: tensor → device → ops → nn → models → step.

pub mod data;
pub mod device;
pub mod ops;
pub mod tensor;
