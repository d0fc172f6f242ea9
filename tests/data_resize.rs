//! Our bicubic resize and per-half chain against outputs made by Pillow
//! (tests/fixtures/resize/make_fixtures.py): they must be bit-identical.

use pix2pix::data::transform::{make_sample, transform_half, SampleParams};
use pix2pix::data::{load_rgb, resize_bicubic, DataOptions, Direction};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resize")
        .join(name)
}

#[test]
fn bicubic_resize_matches_pillow_exactly() {
    let cases = std::fs::read_to_string(fixture("cases.txt")).unwrap();
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let src = load_rgb(&fixture(f[0])).unwrap();
        let (w, h): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let expected = load_rgb(&fixture(f[3])).unwrap();
        let ours = resize_bicubic(&src, w, h);
        assert_eq!(ours.dimensions(), expected.dimensions(), "{line}");
        let diffs: Vec<_> = ours
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .collect();
        assert!(
            diffs.is_empty(),
            "{line}: {} bytes differ, first {:?}",
            diffs.len(),
            &diffs[..diffs.len().min(5)]
        );
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn transform_chain_matches_pillow() {
    let pair = load_rgb(&fixture("pair_24x10.png")).unwrap();
    let opts = DataOptions {
        load_size: 15,
        crop_size: 11,
        ..DataOptions::default()
    };
    let params = SampleParams {
        crop_x: 3,
        crop_y: 2,
        flip: true,
    };
    let (a, b) = pix2pix::data::transform::split_ab(&pair, Direction::AtoB).unwrap();
    for (half, name) in [(a, "A"), (b, "B")] {
        let ours = transform_half(&half, &params, &opts).unwrap();
        let expected = load_rgb(&fixture(&format!("pair_24x10_{name}_load15_crop11_x3_y2_flip.png"))).unwrap();
        assert_eq!(ours, expected, "half {name}");
    }
    // And through ToTensor + Normalize: exactly (v/255 − 0.5)/0.5 of Pillow's bytes.
    let s = make_sample(&pair, &params, &opts, "pair".into()).unwrap();
    let exp_a = load_rgb(&fixture("pair_24x10_A_load15_crop11_x3_y2_flip.png")).unwrap();
    assert_eq!((s.c, s.h, s.w), (3, 11, 11));
    for (i, p) in exp_a.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(s.a[c * 121 + i], (p.0[c] as f32 / 255.0 - 0.5) / 0.5);
        }
    }
}
