//! Reports built from numbers on disk: the runs' comparison table and page (`pix2pix eval`) and the
//! loss plot (`pix2pix plot`, and the training loop at each epoch end).

pub mod compare;
pub mod html;
pub mod plot;
pub mod table;

pub use plot::plot_losses;
