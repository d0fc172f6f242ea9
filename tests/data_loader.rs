//! The aligned dataset, the SPEC §6 transforms and the batch loader, on files made here.

use image::{ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use pix2pix::data::transform::{draw_params, make_sample, SampleParams};
use pix2pix::data::{
    load_rgb, make_synthetic_dataset, save_image, save_pair, AlignedDataset, Batch, DataOptions, Direction, Loader,
    Preprocess,
};
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn save(img: &RgbImage, path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// Normalised value of an 8-bit sample, as ToTensor + Normalize compute it.
fn norm(v: u8) -> f32 {
    (v as f32 / 255.0 - 0.5) / 0.5
}

fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7919 + y * 104729 + seed * 1299709).wrapping_mul(2654435761);
        Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
    })
}

/// An A|B image whose two halves are the same picture.
fn twin_pair(w: u32, h: u32, seed: u32) -> RgbImage {
    let half = noise(w, h, seed);
    RgbImage::from_fn(2 * w, h, |x, y| *half.get_pixel(x % w, y))
}

fn synthetic(n: usize, size: usize, seed: u64) -> TempDir {
    let dir = TempDir::new().unwrap();
    make_synthetic_dataset(dir.path(), n, 0, 0, size, seed).unwrap();
    dir
}

fn all_batches(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).collect()
}

fn small_opts() -> DataOptions {
    DataOptions {
        load_size: 36,
        crop_size: 32,
        ..DataOptions::default()
    }
}

#[test]
fn listing_is_sorted_recursive_and_filtered() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    let img = noise(4, 2, 0);
    for name in [
        "train/b.png",
        "train/a.JPG",
        "train/sub/c.jpeg",
        "train/a-c.bmp",
        "train/a/b.tif",
    ] {
        save(&img, &root.join(name));
    }
    fs::write(root.join("train/notes.txt"), "not an image").unwrap();
    fs::write(
        root.join("train/mixed.Png"),
        "mixed case is not in the reference's list",
    )
    .unwrap();
    let ds = AlignedDataset::open(root, "train").unwrap();
    let names: Vec<String> = ds
        .paths()
        .iter()
        .map(|p| {
            p.strip_prefix(root.join("train"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // Python's sorted() on full path strings: '-' (0x2d) sorts before '/' (0x2f).
    assert_eq!(names, ["a-c.bmp", "a.JPG", "a/b.tif", "b.png", "sub/c.jpeg"]);
    assert_eq!(ds.len(), 5);
    assert_eq!(ds.path(3), root.join("train/b.png"));
}

#[test]
fn missing_and_empty_folders_are_errors_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let err = AlignedDataset::open(dir.path(), "train").unwrap_err().to_string();
    assert!(err.contains(&dir.path().join("train").display().to_string()), "{err}");
    fs::create_dir_all(dir.path().join("val/sub")).unwrap();
    fs::write(dir.path().join("val/readme.txt"), "x").unwrap();
    let err = AlignedDataset::open(dir.path(), "val").unwrap_err().to_string();
    assert!(err.contains("no images") && err.contains("val"), "{err}");
}

#[test]
fn split_and_direction_swap() {
    // Left half red-ish, right half blue-ish, a 9-wide image: A = 4 columns, B = 5 (int(W/2)).
    let img = RgbImage::from_fn(9, 4, |x, _| if x < 4 { Rgb([200, 10, 0]) } else { Rgb([0, 20, 255]) });
    let opts = DataOptions {
        preprocess: Preprocess::Crop,
        crop_size: 4,
        load_size: 4,
        no_flip: true,
        ..DataOptions::default()
    };
    let params = SampleParams {
        crop_x: 0,
        crop_y: 0,
        flip: false,
    };
    let s = make_sample(&img, &params, &opts, "x".into()).unwrap();
    assert_eq!((s.c, s.h, s.w), (3, 4, 4));
    assert!(s.a[..16].iter().all(|&v| v == norm(200)));
    assert!(s.a[32..].iter().all(|&v| v == norm(0)));
    assert!(s.b[..16].iter().all(|&v| v == norm(0)));
    assert!(s.b[32..].iter().all(|&v| v == norm(255)));
    let swapped = DataOptions {
        direction: Direction::BtoA,
        ..opts.clone()
    };
    let t = make_sample(&img, &params, &swapped, "x".into()).unwrap();
    assert_eq!((t.a.clone(), t.b.clone()), (s.b.clone(), s.a.clone()));
    // A 1-pixel-wide image cannot be split.
    let thin = RgbImage::new(1, 4);
    assert!(make_sample(&thin, &params, &opts, "x".into()).is_err());
}

#[test]
fn crop_offsets_stay_in_bounds_and_cover_the_range() {
    let opts = small_opts(); // offsets in [0, 4]
    let mut seen = [false; 5];
    for i in 0..400 {
        let mut rng = pix2pix::data::seeding::sample_rng(3, 1, i);
        let p = draw_params(&opts, 50, 40, &mut rng);
        assert!(p.crop_x <= 4 && p.crop_y <= 4, "{p:?}");
        seen[p.crop_x] = true;
    }
    assert!(seen.iter().all(|&s| s), "every offset 0..=4 should occur: {seen:?}");
}

#[test]
fn crop_and_flip_are_shared_by_a_and_b() {
    let dir = TempDir::new().unwrap();
    for i in 0..6 {
        save(&twin_pair(40, 30, i), &dir.path().join(format!("train/{i}.png")));
    }
    let ds = AlignedDataset::open(dir.path(), "train").unwrap();
    let loader = Loader::new(
        ds,
        DataOptions {
            num_threads: 2,
            ..small_opts()
        },
    )
    .unwrap();
    let mut flips = 0;
    for e in 1..=4 {
        for batch in all_batches(&loader, e) {
            assert_eq!(batch.a, batch.b, "identical halves must stay identical");
            assert_eq!((batch.n, batch.c, batch.h, batch.w), (1, 3, 32, 32));
        }
        for i in 0..6 {
            let s = loader.load_sample(i, e).unwrap();
            let noflip = DataOptions {
                no_flip: true,
                ..small_opts()
            };
            let img = load_rgb(loader.dataset().path(i)).unwrap();
            let mut rng = pix2pix::data::seeding::sample_rng(0, e, i as u64);
            let p = draw_params(&small_opts(), 40, 30, &mut rng);
            let plain = make_sample(&img, &p, &noflip, "x".into()).unwrap();
            if p.flip {
                flips += 1;
                // Flipped: column x of the sample is column 31 − x of the unflipped one.
                for c in 0..3 {
                    for y in 0..32 {
                        for x in 0..32 {
                            assert_eq!(s.a[c * 1024 + y * 32 + x], plain.a[c * 1024 + y * 32 + 31 - x]);
                        }
                    }
                }
            } else {
                assert_eq!(s.a, plain.a);
            }
        }
    }
    assert!(flips > 0 && flips < 24, "flip should be a coin toss, got {flips}/24");
}

#[test]
fn values_are_normalised_to_minus_one_one() {
    let img = RgbImage::from_fn(16, 8, |x, y| {
        if (x + y) % 2 == 0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let opts = DataOptions {
        preprocess: Preprocess::None,
        no_flip: true,
        ..DataOptions::default()
    };
    let s = make_sample(
        &img,
        &SampleParams {
            crop_x: 0,
            crop_y: 0,
            flip: false,
        },
        &opts,
        "x".into(),
    )
    .unwrap();
    let (lo, hi) = s.a.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert_eq!((lo, hi), (-1.0, 1.0));
    let dir = synthetic(4, 32, 5);
    let loader = Loader::new(AlignedDataset::open(dir.path(), "train").unwrap(), small_opts()).unwrap();
    for b in all_batches(&loader, 1) {
        assert!(b.a.iter().chain(&b.b).all(|v| (-1.0..=1.0).contains(v)));
    }
}

#[test]
fn same_seed_same_batches_different_seed_different() {
    let dir = synthetic(12, 32, 1);
    let ds = AlignedDataset::open(dir.path(), "train").unwrap();
    let run = |seed: u64, threads: usize, in_memory: bool| {
        let opts = DataOptions {
            seed,
            num_threads: threads,
            batch_size: 3,
            in_memory,
            ..small_opts()
        };
        let loader = Loader::new(ds.clone(), opts).unwrap();
        all_batches(&loader, 2)
            .into_iter()
            .map(|b| (b.a, b.b, b.paths))
            .collect::<Vec<_>>()
    };
    let reference = run(7, 3, false);
    assert_eq!(reference.len(), 4);
    assert_eq!(reference, run(7, 1, false), "thread count must not matter");
    assert_eq!(reference, run(7, 0, false), "loading on the consumer thread must match");
    assert_eq!(reference, run(7, 2, true), "in_memory must match streaming");
    assert_ne!(reference, run(8, 3, false));
    // Shuffled differently per epoch, and serial_batches keeps file order.
    let loader = Loader::new(
        ds.clone(),
        DataOptions {
            seed: 7,
            ..small_opts()
        },
    )
    .unwrap();
    assert_ne!(loader.epoch_order(1), loader.epoch_order(2));
    let serial = Loader::new(
        ds,
        DataOptions {
            serial_batches: true,
            ..small_opts()
        },
    )
    .unwrap();
    let paths: Vec<PathBuf> = all_batches(&serial, 1).into_iter().flat_map(|b| b.paths).collect();
    assert_eq!(paths, serial.dataset().paths());
}

#[test]
fn batches_keep_epoch_order_and_the_last_one_is_partial() {
    let dir = synthetic(10, 32, 2);
    let ds = AlignedDataset::open(dir.path(), "train").unwrap();
    let loader = Loader::new(
        ds,
        DataOptions {
            batch_size: 4,
            num_threads: 3,
            ..small_opts()
        },
    )
    .unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let batches = all_batches(&loader, 5);
    assert_eq!(batches.iter().map(|b| b.n).collect::<Vec<_>>(), [4, 4, 2]);
    let plane = 3 * 32 * 32;
    let order = loader.epoch_order(5);
    for (k, b) in batches.iter().enumerate() {
        assert_eq!(b.a.len(), b.n * plane);
        for (j, p) in b.paths.iter().enumerate() {
            let index = order[k * 4 + j];
            assert_eq!(p, loader.dataset().path(index));
            let s = loader.load_sample(index, 5).unwrap();
            assert_eq!(&b.a[j * plane..(j + 1) * plane], &s.a[..]);
        }
        assert!(b.wait_s >= 0.0);
    }
    assert!(loader.total_wait_s() >= 0.0);
    // Dropping an epoch half-way stops its workers cleanly.
    let mut it = loader.epoch(6);
    assert!(it.next().is_some());
    drop(it);
}

#[test]
fn bad_files_are_skipped_and_counted_odd_formats_load() {
    let dir = TempDir::new().unwrap();
    let train = dir.path().join("train");
    fs::create_dir_all(&train).unwrap();
    let good = twin_pair(20, 16, 1);
    save(&good, &train.join("00_good.png"));
    fs::write(train.join("01_empty.png"), b"").unwrap();
    fs::write(train.join("02_text.png"), b"this is not a PNG at all\n").unwrap();
    let mut jpeg = Vec::new();
    RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8 * 4, y as u8 * 4, 90]))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    fs::write(train.join("03_truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // 16-bit gray, 8-bit gray, RGBA and 16-bit RGB all load as RGB.
    ImageBuffer::<Luma<u16>, _>::from_fn(20, 8, |x, _| Luma([x as u16 * 3000]))
        .save(train.join("04_gray16.png"))
        .unwrap();
    ImageBuffer::<Luma<u8>, _>::from_fn(20, 8, |x, _| Luma([x as u8 * 10]))
        .save(train.join("05_gray.png"))
        .unwrap();
    ImageBuffer::<Rgba<u8>, _>::from_fn(20, 8, |x, _| Rgba([x as u8, 50, 60, 0]))
        .save(train.join("06_rgba.png"))
        .unwrap();
    ImageBuffer::<LumaA<u8>, _>::from_fn(20, 8, |x, _| LumaA([x as u8, 7]))
        .save(train.join("07_graya.png"))
        .unwrap();
    ImageBuffer::<Rgb<u16>, _>::from_fn(20, 8, |x, _| Rgb([x as u16 * 3000, 0x1234, 0xffff]))
        .save(train.join("08_rgb16.png"))
        .unwrap();

    let gray16 = load_rgb(&train.join("04_gray16.png")).unwrap();
    assert_eq!(gray16.get_pixel(5, 0).0, [(15000u16 >> 8) as u8; 3]);
    let rgba = load_rgb(&train.join("06_rgba.png")).unwrap();
    assert_eq!(rgba.get_pixel(3, 0).0, [3, 50, 60], "alpha is dropped, not composited");
    let rgb16 = load_rgb(&train.join("08_rgb16.png")).unwrap();
    assert_eq!(rgb16.get_pixel(1, 0).0, [(3000u16 >> 8) as u8, 0x12, 0xff]);
    assert_eq!(
        load_rgb(&train.join("07_graya.png")).unwrap().get_pixel(9, 0).0,
        [9, 9, 9]
    );

    let ds = AlignedDataset::open(dir.path(), "train").unwrap();
    assert_eq!(ds.len(), 9);
    for in_memory in [false, true] {
        let opts = DataOptions {
            serial_batches: true,
            batch_size: 4,
            num_threads: 2,
            in_memory,
            ..small_opts()
        };
        let loader = Loader::new(ds.clone(), opts).unwrap();
        let batches = all_batches(&loader, 1);
        assert_eq!(
            batches.iter().map(|b| b.n).collect::<Vec<_>>(),
            [4, 2],
            "good samples fill batches"
        );
        assert_eq!(loader.skipped(), 3);
        let skipped: Vec<_> = loader.skipped_files().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            skipped,
            [
                train.join("01_empty.png"),
                train.join("02_text.png"),
                train.join("03_truncated.jpg")
            ]
        );
        for (path, reason) in loader.skipped_files() {
            assert!(reason.contains(&path.display().to_string()), "{reason}");
        }
    }
}

#[test]
fn mixed_sizes_in_a_batch_are_skipped_with_preprocess_none() {
    let dir = TempDir::new().unwrap();
    save(&twin_pair(16, 16, 1), &dir.path().join("train/a.png"));
    save(&twin_pair(24, 16, 2), &dir.path().join("train/b.png"));
    save(&twin_pair(16, 16, 3), &dir.path().join("train/c.png"));
    let opts = DataOptions {
        preprocess: Preprocess::None,
        serial_batches: true,
        batch_size: 3,
        ..DataOptions::default()
    };
    let loader = Loader::new(AlignedDataset::open(dir.path(), "train").unwrap(), opts).unwrap();
    let mut it = loader.epoch(1);
    let b = it.next().unwrap();
    assert_eq!((b.n, b.h, b.w), (2, 16, 16));
    assert!(it.next().is_none());
    assert_eq!(it.skipped(), 1);
    assert!(loader.skipped_files()[0].1.contains("b.png"));
}

#[test]
fn options_are_validated_by_the_loader() {
    let dir = synthetic(1, 8, 0);
    let ds = AlignedDataset::open(dir.path(), "train").unwrap();
    let err = Loader::new(
        ds.clone(),
        DataOptions {
            load_size: 100,
            crop_size: 128,
            ..DataOptions::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("100") && err.contains("128"), "{err}");
    assert!(Loader::new(
        ds,
        DataOptions {
            batch_size: 0,
            ..DataOptions::default()
        }
    )
    .is_err());
}

#[test]
fn save_image_and_pair_round_trip_atomically() {
    let dir = TempDir::new().unwrap();
    let (h, w) = (5, 7);
    let img = noise(w as u32, h as u32, 9);
    let chw: Vec<f32> = (0..3)
        .flat_map(|c| img.pixels().map(move |p| norm(p.0[c])).collect::<Vec<_>>())
        .collect();
    let path = dir.path().join("out/x.png");
    save_image(&path, &chw, h, w).unwrap();
    let back = load_rgb(&path).unwrap();
    for (a, b) in back.pixels().zip(img.pixels()) {
        for c in 0..3 {
            // Truncation can lose one LSB to float rounding, as in the reference.
            assert!(b.0[c] - a.0[c] <= 1, "{a:?} vs {b:?}");
        }
    }
    let pair_path = dir.path().join("pair.png");
    let other = vec![1.0f32; 3 * h * w];
    save_pair(&pair_path, &chw, &other, h, w).unwrap();
    let pair = load_rgb(&pair_path).unwrap();
    assert_eq!(pair.dimensions(), (2 * w as u32, h as u32));
    assert_eq!(pair.get_pixel(w as u32, 0).0, [255, 255, 255]);
    assert_eq!(pair.get_pixel(0, 0), back.get_pixel(0, 0));
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    assert!(save_image(&path, &chw[..10], h, w).is_err());
}

#[test]
fn synthetic_dataset_writes_what_it_says() {
    let dir = TempDir::new().unwrap();
    make_synthetic_dataset(dir.path(), 5, 2, 3, 32, 11).unwrap();
    for (phase, n) in [("train", 5), ("val", 2), ("test", 3)] {
        let ds = AlignedDataset::open(dir.path(), phase).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!(ds.path(0).file_name().unwrap(), "0000.png");
        for p in ds.paths() {
            assert_eq!(load_rgb(p).unwrap().dimensions(), (64, 32));
        }
    }
    let again = TempDir::new().unwrap();
    make_synthetic_dataset(again.path(), 5, 0, 0, 32, 11).unwrap();
    let a = fs::read(dir.path().join("train/0003.png")).unwrap();
    assert_eq!(
        a,
        fs::read(again.path().join("train/0003.png")).unwrap(),
        "deterministic"
    );
    let pair = load_rgb(&dir.path().join("train/0003.png")).unwrap();
    let (cartoon, photo) = (
        image::imageops::crop_imm(&pair, 0, 0, 32, 32).to_image(),
        image::imageops::crop_imm(&pair, 32, 0, 32, 32).to_image(),
    );
    assert_ne!(cartoon, photo);
    assert!(make_synthetic_dataset(dir.path(), 1, 0, 0, 2, 0).is_err());
}

#[test]
fn every_preprocess_mode_gives_the_reference_shape() {
    // One 80x30 A|B file: each half is 40 wide, 30 high.
    let img = twin_pair(40, 30, 4);
    let cases = [
        (Preprocess::ResizeAndCrop, 20, 16, (16, 16)),
        (Preprocess::Crop, 20, 16, (16, 16)),
        // Width → 20, height int(max(20·30/40, 16)) = 16.
        (Preprocess::ScaleWidth, 20, 16, (20, 16)),
        (Preprocess::ScaleWidthAndCrop, 20, 16, (16, 16)),
        // round(30/4) = 8 (7.5 rounds half to even), round(40/4) = 10 → 40x32.
        (Preprocess::None, 20, 16, (40, 32)),
    ];
    for (preprocess, load_size, crop_size, (w, h)) in cases {
        let opts = DataOptions {
            preprocess,
            load_size,
            crop_size,
            ..DataOptions::default()
        };
        for i in 0..8 {
            let mut rng = pix2pix::data::seeding::sample_rng(1, 1, i);
            let s = pix2pix::data::transform::sample_from_image(&img, &opts, &mut rng, "x".into()).unwrap();
            assert_eq!((s.w, s.h), (w, h), "{preprocess}");
            assert_eq!(s.a, s.b, "{preprocess}: shared params");
        }
    }
}
