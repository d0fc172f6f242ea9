//! Reports built from numbers on disk: the runs' comparison table and page (`pix2pix eval`) and the
//! loss plot (`pix2pix plot`, and the training loop at each epoch end); multi-line figures and
//! labelled image grids (`pix2pix study`).

pub mod compare;
pub mod grid;
pub mod html;
pub mod lines;
pub mod plot;
pub mod table;

pub use plot::plot_losses;
