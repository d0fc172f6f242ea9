//! `--model cycle_gan` end to end on a tiny unaligned set the test writes: train (the reference's
//! file names, the eight losses) → resume bit-exact (image pools included) → test pages → eval,
//! training on `prepare`-style A|B pairs used unpaired, and the errors a user meets.

use pix2pix::checkpoint::read_safetensors;
use pix2pix::data::{make_synthetic_dataset, save_image};
mod cli_common;
use cli_common::{fails, ok};
use std::path::Path;

const SMALL: &[&str] = &[
    "--model",
    "cycle_gan",
    "--netG",
    "resnet_6blocks",
    "--ngf",
    "4",
    "--ndf",
    "4",
    "--device",
    "cpu",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// `n` smooth colour images of `size`² in `dir`, a different family per `kind`.
fn images(dir: &Path, n: usize, size: usize, kind: f32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let plane = size * size;
        let v: Vec<f32> = (0..3 * plane)
            .map(|j| {
                let (c, y, x) = (j / plane, (j / size) % size, j % size);
                ((x as f32 * 0.2 * (1.0 + kind) + c as f32 + i as f32).sin() * 0.6
                    + (y as f32 * 0.15 - kind).cos() * 0.3)
                    .clamp(-1.0, 1.0)
            })
            .collect();
        save_image(&dir.join(format!("{i:04}.png")), &v, size, size).unwrap();
    }
}

fn train_args<'a>(name: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    with(
        &with(
            &[
                "train",
                "--dataroot",
                "data",
                "--name",
                name,
                "--load-size",
                "36",
                "--crop-size",
                "32",
                "--n-epochs",
                "1",
                "--n-epochs-decay",
                "1",
                "--no-progress",
                "--num-threads",
                "1",
                "--pool-size",
                "2",
            ],
            SMALL,
        ),
        more,
    )
}

#[test]
fn train_resume_test_eval() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // |A| = 3, |B| = 2: an epoch is max(3, 2) = 3 iterations.
    images(&d.join("data/trainA"), 3, 40, 0.0);
    images(&d.join("data/trainB"), 2, 40, 1.0);
    images(&d.join("data/testA"), 2, 32, 0.0);
    images(&d.join("data/testB"), 2, 32, 1.0);

    let out = ok(d, &train_args("full", &[]));
    assert!(out.contains("training cycle_gan"), "{out}");
    let run = d.join("checkpoints/full");
    for f in [
        "latest_net_G_A.safetensors",
        "latest_net_G_B.safetensors",
        "latest_net_D_A.safetensors",
        "latest_net_D_B.safetensors",
        "latest_train_state.safetensors",
        "loss_log.csv",
        "loss_log.txt",
        "loss.png",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(run.join("loss_log.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("D_A,G_A,cycle_A,idt_A,D_B,G_B,cycle_B,idt_B"),
        "{header}"
    );
    assert_eq!(csv.lines().count(), 1 + 6, "2 epochs of 3 iterations");
    let g_a = read_safetensors(&run.join("latest_net_G_A.safetensors")).unwrap();
    assert_eq!(g_a["model.1.weight"].dims, vec![4, 3, 7, 7]);
    assert_eq!(
        g_a["model.23.weight"].dims,
        vec![3, 4, 7, 7],
        "resnet_6blocks head conv"
    );
    let state = read_safetensors(&run.join("latest_train_state.safetensors")).unwrap();
    assert_eq!(state["pool_A"].dims, vec![2, 3, 32, 32], "the pool is saved, full");

    // Stopped after the first epoch, resumed: the same weights, Adam state and pools.
    ok(d, &train_args("split", &["--max-iters", "3"]));
    let out = ok(d, &train_args("split", &["--continue-train"]));
    assert!(out.contains("resuming"), "{out}");
    for f in [
        "latest_net_G_A.safetensors",
        "latest_net_G_B.safetensors",
        "latest_net_D_A.safetensors",
        "latest_net_D_B.safetensors",
        "latest_train_state.safetensors",
    ] {
        let (a, b) = (
            read_safetensors(&run.join(f)).unwrap(),
            read_safetensors(&d.join("checkpoints/split").join(f)).unwrap(),
        );
        assert_eq!(a, b, "{f} differs after resume");
    }

    // Test pages: the six CycleGAN visuals per image, then eval of fake_B against real_B and of
    // fake_A against real_A.
    let test = with(
        &["test", "--dataroot", "data", "--name", "full", "--crop-size", "32"],
        SMALL,
    );
    let out = ok(d, &test);
    assert!(out.contains("2 test images"), "{out}");
    let res = d.join("results/full/test_latest");
    for label in ["real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"] {
        assert!(res.join(format!("images/0001_{label}.png")).exists(), "{label}");
    }
    let page = std::fs::read_to_string(res.join("index.html")).unwrap();
    assert!(page.contains("rec_B") && page.contains("latest_net_G_A"), "{page}");
    let out = ok(d, &["eval", "results/full/test_latest", "--out", "evalout"]);
    assert!(out.to_lowercase().contains("cosine"), "{out}");
    assert!(out.contains("full/test_latest fake_A: 2 images"), "{out}");
    let per_image = std::fs::read_to_string(res.join("metrics_fake_A.csv")).unwrap();
    assert_eq!(per_image.lines().count(), 3, "{per_image}");
    let summary = std::fs::read_to_string(d.join("evalout/summary.csv")).unwrap();
    assert!(
        summary.contains("\nfull/test_latest,2,") && summary.contains("\nfull/test_latest fake_A,2,"),
        "{summary}"
    );
    let page = std::fs::read_to_string(d.join("evalout/index.html")).unwrap();
    assert!(
        page.contains("0001_fake_A.png") && page.contains("Test images: fake_A"),
        "{page}"
    );
}

#[test]
fn pairs_used_unpaired_and_bad_input() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // A prepare-style folder of A|B pairs trains CycleGAN unpaired.
    make_synthetic_dataset(&d.join("data"), 3, 0, 0, 32, 2).unwrap();
    let args = with(
        &with(
            &[
                "train",
                "--dataroot",
                "data",
                "--name",
                "pairs",
                "--load-size",
                "32",
                "--crop-size",
                "32",
                "--max-iters",
                "2",
                "--no-progress",
                "--num-threads",
                "1",
            ],
            SMALL,
        ),
        &[],
    );
    let out = ok(d, &args);
    assert!(out.contains("on 3 images"), "{out}");

    // A folder with trainA but no trainB.
    images(&d.join("half/trainA"), 1, 32, 0.0);
    let e = fails(d, &with(&["train", "--dataroot", "half", "--name", "x"], SMALL));
    assert!(e.contains("trainB"), "{e}");
    // Neither layout.
    let e = fails(d, &with(&["train", "--dataroot", "nowhere", "--name", "x"], SMALL));
    assert!(e.contains("trainA") && e.contains("nowhere"), "{e}");
    // A pix2pix run resumed as CycleGAN: the missing file is named.
    ok(
        d,
        &[
            "train",
            "--dataroot",
            "data",
            "--name",
            "p2p",
            "--netG",
            "unet_128",
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--device",
            "cpu",
            "--load-size",
            "128",
            "--crop-size",
            "128",
            "--max-iters",
            "1",
            "--no-progress",
        ],
    );
    let e = fails(
        d,
        &with(
            &["train", "--dataroot", "data", "--name", "p2p", "--continue-train"],
            SMALL,
        ),
    );
    assert!(e.contains("latest_net_G_A.safetensors"), "{e}");
    // U-Net generators are pix2pix's.
    let e = fails(
        d,
        &[
            "train",
            "--model",
            "cycle_gan",
            "--dataroot",
            "data",
            "--name",
            "y",
            "--netG",
            "unet_128",
            "--device",
            "cpu",
        ],
    );
    assert!(e.contains("resnet_9blocks"), "{e}");
}
