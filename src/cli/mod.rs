//! Subcommands. Each file turns command-line options into the library's configs and reports.

pub mod args;
pub mod demo;
pub mod eval;
pub mod gradcheck;
pub mod step;
pub mod study;
pub mod train;
