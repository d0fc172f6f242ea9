//! `pix2pix study` end to end on a few drawn faces (no shared data, no face cascade, no GPU):
//! every table and figure of the report is there and holds numbers; a rerun skips every stage;
//! changed options and bad folders are clear errors. And prepare's person grouping by file name.

mod cli_common;
use cli_common::{fails, ok};
use std::path::Path;

/// Writes `n` drawn face photos (160²) into `dir`, the first `gray` of them in grayscale.
fn photos(dir: &Path, n: usize, gray: usize, name: impl Fn(usize) -> String) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let mut img = pix2pix::data::synthetic::synthetic_photo(7, 0, i as u64, 160);
        if i < gray {
            for p in img.pixels_mut() {
                let y = ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8;
                *p = image::Rgb([y, y, y]);
            }
        }
        img.save(dir.join(name(i))).unwrap();
    }
}

fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records().map(|x| x.unwrap()).collect()
}

fn num(rec: &csv::StringRecord, i: usize) -> f64 {
    rec[i]
        .parse()
        .unwrap_or_else(|_| panic!("{rec:?}: column {i} is not a number"))
}

#[test]
fn tiny_study_writes_every_table_and_figure_and_resumes() {
    let t = tempfile::tempdir().unwrap();
    photos(&t.path().join("photos"), 16, 3, |i| format!("face{i:02}.png"));
    let args = [
        "study",
        "--photos",
        "photos",
        "--out",
        "st",
        "--scale",
        "tiny",
        "--no-face-filter",
        "--device",
        "cpu",
        "--no-progress",
    ];
    let log = ok(t.path(), &args);
    assert!(
        log.contains("run 6 (cycle_gan resnet_6blocks ngf 8 ndf 8 128²)"),
        "the plan shows run 6's measured step:\n{log}"
    );
    assert!(log.contains("stage train_run6 finished"), "{log}");
    assert!(log.contains("measured on"), "the plan shows the measured step:\n{log}");
    let st = t.path().join("st");
    for f in [
        "index.html",
        "table3.csv",
        "run1_split.csv",
        "styles.csv",
        "stages.csv",
        "projection.csv",
        "measure.csv",
        "commands.txt",
    ] {
        let len = std::fs::metadata(st.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty");
    }
    let mut figures = vec!["fig5_losses.png".to_string(), "fig10_validation.png".to_string()];
    figures.extend(["classic", "smooth", "bold", "posterized", "sketch"].map(|s| format!("styles_{s}.jpg")));
    figures.extend((1..=6).map(|i| format!("samples_run{i}.jpg")));
    for f in &figures {
        let img = image::open(st.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            img.width() > 100 && img.height() > 100,
            "{f} is {}x{}",
            img.width(),
            img.height()
        );
    }
    let html = std::fs::read_to_string(st.join("index.html")).unwrap();
    for needle in figures.iter().map(String::as_str).chain([
        "0.00136",
        "0.00622",
        "0.01052",
        "colorFERET",
        "pix2pix train --model cycle_gan --dataroot",
        "Inception V3",
        "pix2pix train --dataroot",
        "pix2pix prepare --photos",
    ]) {
        assert!(html.contains(needle), "index.html lacks {needle:?}");
    }
    // Table 3: all six runs scored (cosine dissimilarity in (0, 2)), seed values for 2-4 only.
    let t3 = csv_rows(&st.join("table3.csv"));
    assert_eq!(t3.len(), 6);
    for r in &t3 {
        assert!(num(r, 4) >= 1.0, "{r:?}: no test images");
        let c = num(r, 5);
        assert!(c > 0.0 && c < 2.0, "{r:?}");
    }
    assert_eq!(&t3[5][1], "cycle_gan");
    assert!(t3[5][13].is_empty(), "run 6 has no seed value: {:?}", t3[5]);
    // Run 6 was trained as CycleGAN (four networks) and its G_B scored too (fake_A vs real_A).
    let run6 = st.join("checkpoints/run6_cycle_gan_filtered");
    for net in ["G_A", "G_B", "D_A", "D_B"] {
        assert!(run6.join(format!("latest_net_{net}.safetensors")).is_file(), "{net}");
    }
    let fake_a = csv_rows(&st.join("results/run6_cycle_gan_filtered/test_latest/metrics_fake_A.csv"));
    assert_eq!(
        fake_a.len() as f64,
        num(&t3[5], 4),
        "every test image scored in both directions"
    );
    assert!(
        csv_rows(&st.join("measure_cycle_gan.csv")).len() == 2,
        "step and forward rows"
    );
    assert_eq!([&t3[1][13], &t3[2][13], &t3[3][13]], ["0.00136", "0.00622", "0.01052"]);
    // Run 1's split: the 3 grayscale photos that landed in the test split are counted apart.
    let split = csv_rows(&st.join("run1_split.csv"));
    let groups: Vec<&str> = split.iter().map(|r| &r[0]).collect();
    assert_eq!(groups, ["grayscale", "small_face", "rest", "all"]);
    let n = |g: usize| num(&split[g], 1) as usize;
    assert_eq!(n(0) + n(1) + n(2), n(3));
    assert!(n(3) > 0);
    // Styles: every run in every style.
    assert_eq!(csv_rows(&st.join("styles.csv")).len(), 6 * 5);
    let photos_csv = csv_rows(&st.join("data/photos.csv"));
    assert_eq!(photos_csv.iter().filter(|r| &r[2] == "grayscale").count(), 3);

    // A rerun skips every stage and rebuilds the report.
    let again = ok(t.path(), &args);
    for s in ["data", "train_run1", "test_run5", "train_run6", "test_run6"] {
        assert!(
            again.contains(&format!("stage {s} already finished")),
            "{s} was not skipped:\n{again}"
        );
    }
    assert!(
        !again.contains("training pix2pix"),
        "a finished run was trained again:\n{again}"
    );
    // A training stage without its record (as after Ctrl-C) resumes from `latest`, and its
    // tests are redone; --only with --force redoes just that run.
    std::fs::remove_file(st.join("stages/train_run2.txt")).unwrap();
    let resumed = ok(t.path(), &args);
    assert!(resumed.contains("resuming"), "{resumed}");
    assert!(resumed.contains("stage test_run2 finished"), "{resumed}");
    assert!(resumed.contains("stage test_run3 already finished"), "{resumed}");
    let mut only = args.to_vec();
    only.extend(["--only", "4", "--force"]);
    let redo = ok(t.path(), &only);
    assert_eq!(redo.matches("training pix2pix").count(), 1, "{redo}");
    assert!(
        redo.contains("run4_filtered_b64") && !redo.contains("train_run1"),
        "{redo}"
    );
    assert!(redo.contains("not selected (--only)"), "{redo}");
    // Changed options are refused without --force.
    let mut changed = args.to_vec();
    changed.extend(["--n-epochs", "3"]);
    let err = fails(t.path(), &changed);
    assert!(err.contains("other options") && err.contains("--force"), "{err}");
    // A bad photo folder is named.
    let mut bad = args.to_vec();
    bad[2] = "nowhere";
    bad[4] = "st2";
    let err = fails(t.path(), &bad);
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn prepare_groups_people_by_file_name_and_warns_when_names_look_grouped() {
    let t = tempfile::tempdir().unwrap();
    // Two photos per person: 001_03.png and 001_08.png, …
    photos(&t.path().join("p"), 16, 0, |i| {
        format!("{:03}_{:02}.png", i / 2, 3 + 5 * (i % 2))
    });
    let base = ["prepare", "--photos", "p", "--size", "64", "--no-face-filter"];
    let mut plain = base.to_vec();
    plain.extend(["--out", "a"]);
    let log = ok(t.path(), &plain);
    assert!(log.contains("warning") && log.contains("--group-regex"), "{log}");
    let mut grouped = base.to_vec();
    grouped.extend(["--out", "b", "--group-regex", r"^(\d+)_"]);
    let log = ok(t.path(), &grouped);
    assert!(!log.contains("warning"), "{log}");
    let mut split_of = std::collections::HashMap::new();
    for r in csv_rows(&t.path().join("b/manifest.csv")) {
        let person = r[0][..3].to_string();
        let prev = split_of.insert(person.clone(), r[1].to_string());
        assert!(prev.is_none_or(|p| p == r[1]), "person {person} is in two splits");
    }
    assert_eq!(split_of.len(), 8);
    let mut bad = base.to_vec();
    bad.extend(["--out", "c", "--group-regex", "^[0-9]+"]);
    assert!(fails(t.path(), &bad).contains("capture group"));
}
