//! Networks written once against the ops (SPEC.md §1, §2, §7), and the pix2pix training step (§3).

pub mod patchgan;
pub mod pix2pix;
pub mod resnet;
pub mod unet;
