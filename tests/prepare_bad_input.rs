//! `prepare` and `cartoonize` on generated fixtures: bad files are counted skips or clear errors,
//! and the input folder is never modified.

use image::{ImageBuffer, Rgb, RgbImage, Rgba};
use pix2pix::data::prepare::{haar, prepare, procedural_face, run_cartoonize, CartoonizeArgs, PrepareArgs, Style};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A colourful "photo": the procedural face resized to `w × h`, tinted by `k`.
fn photo(w: u32, h: u32, k: u8) -> RgbImage {
    let f = procedural_face(256);
    let mut img = image::imageops::resize(&f, w, h, image::imageops::FilterType::Triangle);
    for p in img.pixels_mut() {
        p.0[0] = p.0[0].saturating_add(k);
    }
    img
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        m.insert(p.clone(), std::fs::read(&p).unwrap());
    }
    m
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Jpeg)
        .unwrap();
    v
}

/// The fixture folder: 5 good photos and one of each kind of bad input.
fn fixtures(dir: &Path) {
    for k in 0..5 {
        photo(200, 240, k * 10).save(dir.join(format!("good{k}.png"))).unwrap();
    }
    let j = jpeg_bytes(&photo(200, 240, 3));
    std::fs::write(dir.join("truncated.jpg"), &j[..j.len() / 2]).unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    std::fs::write(dir.join("fake.png"), b"this is not an image, just text\n").unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored: not an image extension").unwrap();
    // 16-bit RGB PNG, colourful: kept.
    let p8 = photo(180, 200, 20);
    let p16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_fn(180, 200, |x, y| Rgb(p8.get_pixel(x, y).0.map(|v| v as u16 * 257)));
    p16.save(dir.join("deep16.png")).unwrap();
    // RGBA with a transparent border: kept.
    let rgba = ImageBuffer::from_fn(190, 190, |x, y| {
        let [r, g, b] = p8.get_pixel(x.min(179), y.min(199)).0;
        Rgba([r, g, b, if x < 5 { 0 } else { 255 }])
    });
    rgba.save(dir.join("rgba.png")).unwrap();
    // One-channel gray file and an RGB JPEG holding gray pixels: grayscale.
    let gray = image::imageops::grayscale(&p8);
    gray.save(dir.join("gray1.png")).unwrap();
    let gray_rgb = RgbImage::from_fn(180, 200, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        Rgb([v, v, v])
    });
    std::fs::write(dir.join("grayrgb.jpg"), jpeg_bytes(&gray_rgb)).unwrap();
    // Smaller than the crop (kept, upscaled) and tiny (dropped).
    photo(100, 120, 7).save(dir.join("small.png")).unwrap();
    photo(40, 40, 7).save(dir.join("tiny.png")).unwrap();
}

fn manifest(out: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(out.join("manifest.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            h.iter()
                .zip(rec.unwrap().iter())
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn bad_inputs_are_counted_and_input_untouched() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    fixtures(&input);
    let before = snapshot(&input);
    let out = t.path().join("out");
    let mut args = PrepareArgs::new(&input, &out);
    args.no_face_filter = true;
    args.size = 64;
    args.min_size = 64;
    let s = prepare(&args).unwrap();
    assert_eq!(snapshot(&input), before, "input folder must be byte-identical");
    assert_eq!(s.read, 14);
    assert_eq!(s.dropped.get("unreadable"), Some(&3), "{:?}", s.dropped);
    assert_eq!(s.dropped.get("grayscale"), Some(&2), "{:?}", s.dropped);
    assert_eq!(s.dropped.get("too_small"), Some(&1), "{:?}", s.dropped);
    assert_eq!(s.kept, 8);
    assert_eq!(s.photos_per_split.iter().sum::<usize>(), 8);
    let m = manifest(&out);
    assert_eq!(m.len(), 14);
    let row = |f: &str| m.iter().find(|r| r["file"] == f).unwrap().clone();
    assert_eq!(row("truncated.jpg")["reason"], "unreadable");
    assert!(row("truncated.jpg")["detail"].contains("truncated"));
    assert_eq!(row("empty.jpg")["reason"], "unreadable");
    assert_eq!(row("fake.png")["reason"], "unreadable");
    assert_eq!(row("gray1.png")["reason"], "grayscale");
    assert_eq!(row("gray1.png")["channels"], "1");
    assert_eq!(row("grayrgb.jpg")["reason"], "grayscale");
    assert_eq!(row("tiny.png")["reason"], "too_small");
    for f in ["deep16.png", "rgba.png", "small.png", "good0.png"] {
        let r = row(f);
        assert_eq!(r["status"], "kept", "{f}");
        let pair = image::open(out.join(&r["output"])).unwrap();
        assert_eq!((pair.width(), pair.height()), (128, 64), "{f}");
    }
    assert_eq!(row("rgba.png")["channels"], "4");
    // Each split folder holds exactly the kept pairs of its split.
    let files: usize = ["train", "val", "test"]
        .iter()
        .map(|s| std::fs::read_dir(out.join(s)).unwrap().count())
        .sum();
    assert_eq!(files, 8);
}

#[test]
fn grayscale_filter_can_be_switched_off() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    fixtures(&input);
    let mut args = PrepareArgs::new(&input, t.path().join("out"));
    args.no_face_filter = true;
    args.no_grayscale_filter = true;
    args.size = 64;
    let s = prepare(&args).unwrap();
    assert_eq!(s.kept, 10);
    assert_eq!(s.dropped.get("grayscale"), None);
}

#[test]
fn folder_without_images_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("readme.txt"), b"no images here").unwrap();
    let mut args = PrepareArgs::new(&input, t.path().join("out"));
    args.no_face_filter = true;
    let e = format!("{:#}", prepare(&args).unwrap_err());
    assert!(e.contains("no image files"), "{e}");
    let missing = PrepareArgs::new(t.path().join("nope"), t.path().join("out"));
    let e = format!("{:#}", prepare(&missing).unwrap_err());
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn output_is_protected() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for k in 0..3 {
        photo(100, 100, k).save(input.join(format!("p{k}.png"))).unwrap();
    }
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("mine.txt"), b"keep me").unwrap();
    let mut args = PrepareArgs::new(&input, &out);
    args.no_face_filter = true;
    args.size = 32;
    let e = format!("{:#}", prepare(&args).unwrap_err());
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");
    args.force = true;
    prepare(&args).unwrap();
    assert_eq!(std::fs::read(out.join("mine.txt")).unwrap(), b"keep me");
    // Output inside the input folder is refused, even with --force.
    let mut inside = PrepareArgs::new(&input, input.join("out"));
    inside.no_face_filter = true;
    inside.force = true;
    let e = format!("{:#}", prepare(&inside).unwrap_err());
    assert!(e.contains("inside the input"), "{e}");
    assert!(!input.join("out").exists());
}

#[test]
fn split_is_deterministic_and_by_person_with_styles_together() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut csv = String::from("file,name,congress\n");
    for k in 0..30u32 {
        let f = format!("p{k:02}.png");
        photo(80, 90, (k * 7) as u8).save(input.join(&f)).unwrap();
        csv += &format!("{f},\"PERSON, {}\",1\n", k / 3);
    }
    let persons = t.path().join("persons.csv");
    std::fs::write(&persons, csv).unwrap();
    let run = |out: &str, seed: u64| {
        let mut a = PrepareArgs::new(&input, t.path().join(out));
        a.no_face_filter = true;
        a.size = 32;
        a.seed = seed;
        a.persons = Some(persons.clone());
        a.styles = vec![Style::Classic, Style::Sketch];
        prepare(&a).unwrap();
        manifest(&t.path().join(out))
    };
    let m1 = run("a", 7);
    let m2 = run("b", 7);
    let m3 = run("c", 8);
    let splits = |m: &[BTreeMap<String, String>]| {
        m.iter()
            .map(|r| (r["file"].clone(), r["split"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(splits(&m1), splits(&m2));
    assert_ne!(splits(&m1), splits(&m3));
    assert_eq!(m1.len(), 60, "one row per photo and style");
    // A person (3 photos) and both styles of a photo are in one split.
    let mut by_person: BTreeMap<u32, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in &m1 {
        let k: u32 = r["file"][1..3].parse().unwrap();
        by_person.entry(k / 3).or_default().insert(r["split"].clone());
        let o = &r["output"];
        assert!(o.starts_with(&format!("{}/", r["split"])), "{o}");
        assert!(o.ends_with(&format!("_{}.png", r["style"])), "{o}");
    }
    assert!(by_person.values().all(|s| s.len() == 1), "{by_person:?}");
    let count = |s: &str| m1.iter().filter(|r| r["split"] == s).count() / 2;
    assert_eq!((count("train"), count("val"), count("test")), (18, 6, 6));
}

#[test]
fn no_face_is_dropped_when_the_detector_is_installed() {
    let Some(path) = haar::find_cascade(None) else {
        eprintln!(
            "skipped: no Haar face cascade (install with `{}`)",
            haar::CASCADE_INSTALL_HINT
        );
        return;
    };
    assert!(haar::Cascade::load(&path).is_ok());
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Colourful smooth noise: no face.
    let img = RgbImage::from_fn(160, 200, |x, y| {
        Rgb([(x * 255 / 160) as u8, (y * 255 / 200) as u8, ((x * y) % 256) as u8])
    });
    img.save(input.join("landscape.png")).unwrap();
    let mut args = PrepareArgs::new(&input, t.path().join("out"));
    args.size = 32;
    let s = prepare(&args).unwrap();
    assert_eq!(s.dropped.get("no_face"), Some(&1), "{:?}", s.dropped);
    assert_eq!(s.kept, 0);
    args.keep_no_face = true;
    args.force = true;
    let s = prepare(&args).unwrap();
    assert_eq!(s.kept, 1);
    // A missing cascade file is a clear error.
    let mut bad = PrepareArgs::new(&input, t.path().join("out2"));
    bad.cascade = Some(t.path().join("missing.xml"));
    let e = format!("{:#}", prepare(&bad).unwrap_err());
    assert!(e.contains("missing.xml"), "{e}");
}

#[test]
fn cartoonize_command_file_and_folder() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    photo(61, 47, 0).save(input.join("a.png")).unwrap();
    std::fs::write(input.join("b.jpg"), jpeg_bytes(&photo(50, 40, 9))).unwrap();
    let before = snapshot(&input);
    let out = t.path().join("cartoons");
    let args = CartoonizeArgs {
        input: input.clone(),
        output: out.clone(),
        style: Style::Bold,
        force: false,
    };
    run_cartoonize(&args).unwrap();
    assert_eq!(snapshot(&input), before);
    let a = image::open(out.join("a.png")).unwrap();
    assert_eq!((a.width(), a.height()), (61, 47));
    let b = image::open(out.join("b.png")).unwrap();
    assert_eq!((b.width(), b.height()), (50, 40));
    // Existing outputs are not overwritten without --force.
    let one = CartoonizeArgs {
        input: input.join("a.png"),
        output: out.join("a.png"),
        style: Style::Sketch,
        force: false,
    };
    assert!(run_cartoonize(&one).is_err());
    run_cartoonize(&CartoonizeArgs { force: true, ..one }).unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = run_cartoonize(&CartoonizeArgs {
        input: empty,
        output: t.path().join("o"),
        style: Style::Classic,
        force: false,
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("no image files"));
}

#[test]
fn faces_are_found_framed_and_small_faces_dropped() {
    let Some(path) = haar::find_cascade(None) else {
        eprintln!(
            "skipped: no Haar face cascade (install with `{}`)",
            haar::CASCADE_INSTALL_HINT
        );
        return;
    };
    let cascade = haar::Cascade::load(&path).unwrap();
    let face = procedural_face(192);
    let found = cascade.detect(&pix2pix::data::prepare::cartoon::to_gray(&face), 24, 3);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = found[0];
    let (cx, cy) = (f.x + f.w / 2.0, f.y + f.h / 2.0);
    assert!((cx - 96.0).abs() < 15.0 && (cy - 96.0).abs() < 20.0, "{f:?}");

    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir(&input).unwrap();
    face.save(input.join("face.png")).unwrap();
    // The same face, small in a big colourful canvas.
    let mut wide = RgbImage::from_fn(600, 600, |x, y| Rgb([(x / 3) as u8, 120, (y / 3) as u8]));
    image::imageops::replace(&mut wide, &procedural_face(96), 250, 250);
    wide.save(input.join("far.png")).unwrap();
    let out = t.path().join("out");
    let mut args = PrepareArgs::new(&input, &out);
    args.size = 64;
    let s = prepare(&args).unwrap();
    assert_eq!(s.kept, 1, "{:?}", s.dropped);
    assert_eq!(s.dropped.get("small_face"), Some(&1), "{:?}", s.dropped);
    let m = manifest(&out);
    let row = m.iter().find(|r| r["file"] == "face.png").unwrap();
    let ratio: f32 = row["face_ratio"].parse().unwrap();
    assert!(ratio > 0.2, "{ratio}");
    let far = m.iter().find(|r| r["file"] == "far.png").unwrap();
    assert!(far["face_ratio"].parse::<f32>().unwrap() < 0.08);
    // With the small-face filter off the far face is kept and cropped around the face.
    args.min_face_ratio = 0.0;
    args.force = true;
    let s = prepare(&args).unwrap();
    assert_eq!(s.kept, 2);
}
