//! Layers that own parameter layouts (in a flat ParamStore) and call the ops.

pub mod layers;
pub mod params;

pub use layers::{BatchNorm2d, Conv2d, ConvTranspose2d, InstanceNorm2d, Norm2d, NormKind};
pub use params::{Init, ParamBuilder, ParamStore};
