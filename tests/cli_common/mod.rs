//! Running the `pix2pix` binary from integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pix2pix"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run pix2pix")
}

/// Runs a command that must succeed; returns stdout and stderr together.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "pix2pix {args:?} failed:\n{text}");
    text
}

/// Runs a command that must fail with an error, not a panic; returns stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "pix2pix {args:?} should fail");
    assert!(!text.contains("panicked"), "pix2pix {args:?} panicked:\n{text}");
    text
}
