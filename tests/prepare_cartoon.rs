//! The cartoonizer on constructed images with known answers.

use image::{Rgb, RgbImage};
use pix2pix::data::prepare::{cartoonize, procedural_face, style_gallery, Style};

#[test]
fn output_size_equals_input_size() {
    for (w, h) in [(1, 1), (2, 3), (7, 5), (175, 220), (64, 64), (33, 100)] {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 13) as u8, (y * 7) as u8, 99]));
        for s in Style::ALL {
            assert_eq!(cartoonize(&img, s).dimensions(), (w, h), "{s} {w}x{h}");
        }
    }
}

#[test]
fn flat_image_stays_flat() {
    let img = RgbImage::from_pixel(50, 41, Rgb([90, 140, 200]));
    for s in [Style::Classic, Style::Smooth, Style::Bold] {
        let c = cartoonize(&img, s);
        assert!(c.pixels().all(|p| p.0 == [90, 140, 200]), "{s}");
    }
    let c = cartoonize(&img, Style::Posterized);
    let first = c.get_pixel(0, 0).0;
    assert!(c.pixels().all(|p| p.0 == first));
    // Sketch of a flat image: nothing to draw, white paper.
    let c = cartoonize(&img, Style::Sketch);
    assert!(c.pixels().all(|p| p.0[0] >= 250 && p.0[0] == p.0[1]));
}

#[test]
fn edges_become_black_lines() {
    // A dark square on a light background: the classic cartoon draws black on the dark side of
    // its border and keeps the flat interior and background.
    let img = RgbImage::from_fn(64, 64, |x, y| {
        if (20..44).contains(&x) && (20..44).contains(&y) {
            Rgb([60, 30, 30])
        } else {
            Rgb([220, 220, 200])
        }
    });
    let c = cartoonize(&img, Style::Classic);
    assert_eq!(c.get_pixel(21, 32).0, [0, 0, 0]);
    assert_ne!(c.get_pixel(32, 32).0, [0, 0, 0]);
    assert_ne!(c.get_pixel(5, 5).0, [0, 0, 0]);
    let black = |im: &RgbImage| im.pixels().filter(|p| p.0 == [0, 0, 0]).count();
    assert!(
        black(&cartoonize(&img, Style::Bold)) > black(&c),
        "bold lines are thicker"
    );
}

#[test]
fn styles_differ_from_each_other() {
    let face = procedural_face(128);
    let outs: Vec<RgbImage> = Style::ALL.iter().map(|&s| cartoonize(&face, s)).collect();
    for i in 0..outs.len() {
        for j in (i + 1)..outs.len() {
            let diff: u64 = outs[i]
                .as_raw()
                .iter()
                .zip(outs[j].as_raw())
                .map(|(a, b)| a.abs_diff(*b) as u64)
                .sum();
            let mean = diff as f64 / outs[i].as_raw().len() as f64;
            assert!(mean > 1.0, "{} vs {}: mean diff {mean}", Style::ALL[i], Style::ALL[j]);
        }
    }
    // The sketch is gray.
    assert!(outs[4].pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
}

#[test]
fn gallery_renders_a_strip() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("styles.png");
    style_gallery(&p, None).unwrap();
    let g = image::open(&p).unwrap();
    assert_eq!(g.height(), 192);
    assert_eq!(g.width(), 6 * 192 + 5 * 4);
    style_gallery(t.path(), None).unwrap();
    assert!(t.path().join("style_sketch.png").is_file());
}

#[test]
fn style_names_parse() {
    for s in Style::ALL {
        assert_eq!(s.name().parse::<Style>().unwrap(), s);
    }
    assert!("watercolour".parse::<Style>().is_err());
}

#[test]
fn clap_args_parse() {
    use clap::{CommandFactory, Parser};
    use pix2pix::data::prepare::{CartoonizeArgs, PrepareArgs};
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: PrepareArgs,
    }
    #[derive(Parser)]
    struct C {
        #[command(flatten)]
        a: CartoonizeArgs,
    }
    P::command().debug_assert();
    C::command().debug_assert();
    let p = P::parse_from([
        "x",
        "--photos",
        "in",
        "--out",
        "out",
        "--styles",
        "classic,sketch",
        "--seed",
        "3",
    ]);
    assert_eq!(p.a.styles, vec![Style::Classic, Style::Sketch]);
    assert_eq!((p.a.size, p.a.seed, p.a.min_face_ratio), (256, 3, 0.08));
    let d = PrepareArgs::new("in", "out");
    assert_eq!(
        (d.margin, d.min_size, d.min_colourfulness),
        (p.a.margin, p.a.min_size, p.a.min_colourfulness)
    );
    let c = C::parse_from(["x", "a.jpg", "b.png", "--style", "posterized"]);
    assert_eq!(c.a.style, Style::Posterized);
}
