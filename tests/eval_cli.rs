//! `pix2pix eval` end to end on result folders the test writes, and the errors a user meets.

mod cli_common;
use cli_common::{fails, ok};
use std::path::Path;

/// A w×h RGB PNG whose pixels depend on `seed`.
fn png(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        image::Rgb([v as u8, (255 - v) as u8, ((v * seed) % 256) as u8])
    })
    .save(path)
    .unwrap();
}

/// results/NAME/test_latest/images with the given stems; fake_B differs from real_B by `seed`.
fn result_dir(root: &Path, name: &str, stems: &[&str], seed: u32) -> String {
    let rel = format!("results/{name}/test_latest");
    let images = root.join(&rel).join("images");
    for (i, s) in stems.iter().enumerate() {
        png(&images.join(format!("{s}_real_A.png")), 16, 16, 100 + i as u32);
        png(&images.join(format!("{s}_real_B.png")), 16, 16, i as u32);
        png(&images.join(format!("{s}_fake_B.png")), 16, 16, i as u32 + seed);
    }
    rel
}

#[test]
fn eval_two_runs_writes_metrics_table_and_page() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = result_dir(root, "bs1", &["x1", "x2", "x3"], 1);
    let b = result_dir(root, "bs4", &["x1", "x2"], 0); // fake_B == real_B: perfect
    let text = ok(root, &["eval", &a, &b, "--out", "cmp/out", "--max-images", "1"]);
    assert!(text.contains("bs1/test_latest"), "{text}");
    assert!(text.contains("1 image(s) missing in some run"), "{text}");

    let per_image = std::fs::read_to_string(root.join(&a).join("metrics.csv")).unwrap();
    let lines: Vec<&str> = per_image.lines().collect();
    assert_eq!(lines[0], "stem,cosine_dissimilarity,l1,psnr,ssim");
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("x1,"));
    let perfect = std::fs::read_to_string(root.join(&b).join("metrics.csv")).unwrap();
    assert!(perfect.lines().nth(1).unwrap().starts_with("x1,0,0,inf,1"), "{perfect}");

    let summary = std::fs::read_to_string(root.join("cmp/out/summary.csv")).unwrap();
    assert!(summary.starts_with("run,images,cosine_dissimilarity_mean,cosine_dissimilarity_std,"));
    assert!(summary.contains("\nbs1/test_latest,3,"), "{summary}");
    assert!(summary.contains("\nbs4/test_latest,2,0,0,0,0,inf,nan,1,0"), "{summary}");
    assert!(root.join("cmp/out/summary.html").is_file());

    // Every image link on the page resolves from the page's folder; only x1 is shown.
    let page = std::fs::read_to_string(root.join("cmp/out/index.html")).unwrap();
    let links: Vec<&str> = page
        .split("src=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(links.len(), 4, "real_A, two fake_B, real_B: {links:?}");
    for l in &links {
        assert!(l.starts_with("../../results/"), "{l}");
        assert!(l.contains("x1_"), "{l}");
        assert!(root.join("cmp/out").join(l).is_file(), "broken link {l}");
    }
    assert!(page.contains("1 left out"), "{page}");
}

/// A CycleGAN result folder: fake_A scored against real_A beside fake_B against real_B; the
/// metrics are those of the right pair (fake_A equal to real_A scores perfectly, fake_B does not).
#[test]
fn eval_scores_fake_a_against_real_a() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = result_dir(root, "cg", &["x1", "x2"], 3);
    let images = root.join(&cg).join("images");
    for (i, s) in ["x1", "x2"].iter().enumerate() {
        png(&images.join(format!("{s}_fake_A.png")), 16, 16, 100 + i as u32); // == real_A
    }
    let p2p = result_dir(root, "p2p", &["x1", "x2"], 0);
    let text = ok(root, &["eval", &cg, &p2p, "--out", "cmp"]);
    assert!(text.contains("cg/test_latest fake_A: 2 images"), "{text}");
    assert!(!text.contains("p2p/test_latest fake_A"), "{text}");
    let a = std::fs::read_to_string(root.join(&cg).join("metrics_fake_A.csv")).unwrap();
    assert!(a.lines().nth(1).unwrap().starts_with("x1,0,0,inf,1"), "{a}");
    let b = std::fs::read_to_string(root.join(&cg).join("metrics.csv")).unwrap();
    assert!(!b.lines().nth(1).unwrap().starts_with("x1,0,0,inf"), "{b}");
    let summary = std::fs::read_to_string(root.join("cmp/summary.csv")).unwrap();
    assert!(
        summary.contains("\ncg/test_latest fake_A,2,0,0,0,0,inf,nan,1,0"),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 4, "header, cg, cg fake_A, p2p: {summary}");
    // The page shows fake_A in its own table, with real_B as the input and real_A as the target.
    let page = std::fs::read_to_string(root.join("cmp/index.html")).unwrap();
    let second = &page[page.find("Test images: fake_A").expect("a fake_A table")..];
    assert!(
        second.contains("real_B (input)") && second.contains("x1_fake_A.png"),
        "{second}"
    );
    assert!(!second.contains("p2p/test_latest"), "{second}");
}

#[test]
fn eval_errors_name_the_folder_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let e = fails(root, &["eval", "results/nope/test_latest"]);
    assert!(
        e.contains("results/nope/test_latest") && e.contains("does not exist"),
        "{e}"
    );

    std::fs::create_dir_all(root.join("results/empty/test_latest/images")).unwrap();
    let e = fails(root, &["eval", "results/empty/test_latest"]);
    assert!(e.contains("no image pairs") && e.contains("<stem>_fake_B.png"), "{e}");

    let rel = result_dir(root, "odd", &["a"], 1);
    png(&root.join(&rel).join("images/a_fake_B.png"), 20, 16, 3);
    let e = fails(root, &["eval", &rel]);
    assert!(e.contains("a_fake_B.png") && e.contains("size mismatch"), "{e}");

    let rel = result_dir(root, "lonely", &["b"], 1);
    std::fs::remove_file(root.join(&rel).join("images/b_real_B.png")).unwrap();
    let e = fails(root, &["eval", &rel]);
    assert!(e.contains("b_real_B.png"), "{e}");
}

#[test]
fn plot_command_writes_loss_png_and_explains_a_missing_log() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let e = fails(root, &["plot", "checkpoints/none"]);
    assert!(e.contains("loss_log.csv"), "{e}");
    let dir = root.join("checkpoints/run");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("epoch,iters,images,G_GAN,G_L1,D_real,D_fake,lr,sec_per_iter,data_wait_s\n");
    for i in 0..50 {
        csv += &format!("1,{i},{i},1.0,{},0.5,0.4,2e-4,0.1,0.0\n", 30.0 - i as f64 * 0.3);
    }
    std::fs::write(dir.join("loss_log.csv"), csv).unwrap();
    ok(root, &["plot", "checkpoints/run"]);
    assert!(dir.join("loss.png").is_file());
}
