//! Optional runs on the real portraits in ../shared/data (not part of the project). Ignored by
//! default; run with `cargo test --release --test prepare_real_data -- --ignored --nocapture`.
//! Set PIX2PIX_PREPARE_OUT to keep the output (default: a temporary folder).

use pix2pix::data::prepare::{prepare, PrepareArgs, Style};
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [root.join("../shared/data"), PathBuf::from("/work/shared/data")]
        .into_iter()
        .find(|p| p.join("congress-portraits").is_dir())
}

#[test]
#[ignore]
fn prepare_congress_portraits() {
    let Some(data) = shared() else {
        eprintln!("skipped: ../shared/data/congress-portraits is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("PIX2PIX_PREPARE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("out"));
    let mut args = PrepareArgs::new(data.join("congress-portraits"), &out);
    args.persons = Some(data.join("congress-portraits.csv"));
    args.force = true;
    if let Ok(s) = std::env::var("PIX2PIX_PREPARE_STYLES") {
        args.styles = s.split(',').map(|x| x.parse::<Style>().unwrap()).collect();
    }
    let s = prepare(&args).unwrap();
    assert!(s.kept > 0);
}
