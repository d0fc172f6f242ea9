//! Metrics on constructed images with known answers, and against scikit-image on the fixture that
//! tests/fixtures/eval/make_fixture.py wrote (tests/fixtures/eval/expected.csv).

use pix2pix::eval::{compare, cosine_dissimilarity, l1, psnr, ssim, Image};
use std::path::Path;

/// A smooth, non-constant RGB test image in [0, 1].
fn pattern(w: usize, h: usize) -> Image {
    let mut d = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            d.push(0.5 + 0.4 * ((x as f32) / 3.0).sin() * ((y as f32) / 5.0).cos());
            d.push(x as f32 / w as f32);
            d.push(y as f32 / h as f32);
        }
    }
    Image::new(w, h, 3, d).unwrap()
}

fn map(img: &Image, mut f: impl FnMut(f32) -> f32) -> Image {
    Image::new(
        img.width,
        img.height,
        img.channels,
        img.data.iter().map(|&v| f(v)).collect(),
    )
    .unwrap()
}

#[test]
fn identical_images() {
    let a = pattern(32, 24);
    let m = compare(&a, &a).unwrap();
    assert_eq!(m.cosine_dissimilarity, 0.0);
    assert_eq!(m.l1, 0.0);
    assert_eq!(m.psnr, f64::INFINITY);
    assert!((m.ssim - 1.0).abs() < 1e-12, "ssim {}", m.ssim);
}

#[test]
fn cosine_is_scale_invariant_but_not_offset_invariant() {
    let a = pattern(16, 16);
    let half = map(&a, |v| v * 0.5);
    assert!(cosine_dissimilarity(&a.data, &half.data).abs() < 1e-12);
    // The same pair mapped to [-1, 1] is no longer a pure rescaling: the offset changes the angle.
    let a11 = map(&a, |v| 2.0 * v - 1.0);
    let half11 = map(&half, |v| 2.0 * v - 1.0);
    assert!(cosine_dissimilarity(&a11.data, &half11.data) > 0.05);
}

#[test]
fn cosine_of_orthogonal_and_zero_vectors() {
    // Disjoint supports: x·y = 0.
    let x = [1.0, 0.0, 0.5, 0.0];
    let y = [0.0, 0.3, 0.0, 0.9];
    assert!((cosine_dissimilarity(&x, &y) - 1.0).abs() < 1e-12);
    // Opposite directions reach the top of the range.
    assert!((cosine_dissimilarity(&[1.0, -2.0], &[-1.0, 2.0]) - 2.0).abs() < 1e-12);
    // Our definition for all-zero vectors.
    assert_eq!(cosine_dissimilarity(&[0.0; 4], &[0.0; 4]), 0.0);
    assert_eq!(cosine_dissimilarity(&[0.0; 4], &y), 1.0);
    assert_eq!(cosine_dissimilarity(&x, &[0.0; 4]), 1.0);
}

#[test]
fn constant_offset_gives_known_l1_and_psnr() {
    let a = map(&pattern(20, 20), |v| v * 0.8);
    let b = map(&a, |v| v + 0.1);
    // MSE = 0.01 → PSNR = 20 dB; L1 = 0.1. f32 storage of a + 0.1 costs ~1e-7.
    assert!((l1(&a.data, &b.data) - 0.1).abs() < 1e-6);
    assert!((psnr(&a.data, &b.data) - 20.0).abs() < 1e-4);
    let c = map(&a, |v| v + 0.01);
    assert!((psnr(&a.data, &c.data) - 40.0).abs() < 1e-3);
}

#[test]
fn ssim_drops_for_negation_and_noise() {
    let a = pattern(32, 32);
    let neg = map(&a, |v| 1.0 - v);
    let mut state = 12345u32;
    let noisy = map(&a, |v| {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (v + ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.4).clamp(0.0, 1.0)
    });
    let s_neg = ssim(&a, &neg).unwrap();
    let s_noise = ssim(&a, &noisy).unwrap();
    assert!(s_neg < 0.0, "negation should anti-correlate: {s_neg}");
    assert!(s_noise < 0.9 && s_noise > s_neg, "noise: {s_noise}");
    // Symmetric in its arguments.
    assert!((ssim(&noisy, &a).unwrap() - s_noise).abs() < 1e-12);
}

#[test]
fn shape_errors_are_reported() {
    let a = pattern(16, 16);
    let b = pattern(16, 17);
    let e = compare(&a, &b).unwrap_err().to_string();
    assert!(e.contains("size mismatch"), "{e}");
    let tiny = pattern(8, 8);
    let e = ssim(&tiny, &tiny).unwrap_err().to_string();
    assert!(e.contains("11×11"), "{e}");
    assert!(Image::new(2, 2, 3, vec![0.0; 5]).is_err());
}

#[test]
fn matches_scikit_image_on_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval");
    let text = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let want: Vec<f64> = f[1..].iter().map(|v| v.parse().unwrap()).collect();
        let fake = Image::load(&dir.join(format!("{}_fake_B.png", f[0]))).unwrap();
        let real = Image::load(&dir.join(format!("{}_real_B.png", f[0]))).unwrap();
        let m = compare(&fake, &real).unwrap();
        let got = [m.cosine_dissimilarity, m.l1, m.psnr, m.ssim];
        for (name, (g, w)) in ["cosine", "l1", "psnr", "ssim"].iter().zip(got.iter().zip(&want)) {
            // We read 8-bit values as f32 (v/255) where skimage uses f64: ~1e-8 apart. PSNR is in dB
            // (tens), so it gets the same bound relative to its size.
            let tol = if *name == "psnr" { 1e-6 * w.abs() } else { 1e-6 };
            assert!((g - w).abs() < tol, "{} {name}: ours {g}, skimage {w}", f[0]);
        }
        n += 1;
    }
    assert_eq!(n, 4);
}
