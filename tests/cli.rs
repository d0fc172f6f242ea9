//! The command line end to end on data the tests make: init → step dump, train → resume → test,
//! and the errors a user meets.

use pix2pix::checkpoint::{read_safetensors, Values};
use pix2pix::data::make_synthetic_dataset;
mod cli_common;
use cli_common::{fails, ok};

const SMALL: &[&str] = &["--netG", "unet_128", "--ngf", "8", "--ndf", "8", "--device", "cpu"];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn init_then_step_dumps_losses_gradients_and_updated_state() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_synthetic_dataset(&d.join("data"), 1, 0, 0, 128, 1).unwrap();
    ok(d, &with(&["init", "--name", "cmp"], SMALL));
    let args = with(
        &[
            "step",
            "--name",
            "cmp",
            "--image",
            "data/train/0000.png",
            "--no-dropout",
            "--out",
            "s1.safetensors",
        ],
        SMALL,
    );
    let out = ok(d, &args);
    assert!(out.contains("G_L1"), "{out}");
    let t1 = read_safetensors(&d.join("s1.safetensors")).unwrap();
    assert_eq!(t1["fake_B"].dims, vec![1, 3, 128, 128]);
    for l in ["loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake"] {
        assert!(t1.contains_key(l), "no {l}");
    }
    assert_eq!(t1["netG.model.model.0.weight.grad"].dims, vec![8, 3, 4, 4]);
    assert_eq!(t1["netD.model.11.bias.grad"].dims, vec![1]);
    assert!(t1.contains_key("netG.model.model.1.model.2.running_var"));
    assert_eq!(
        t1["netD.model.3.num_batches_tracked"].values,
        Values::I64(vec![3]),
        "D's BN ran three times"
    );
    assert_eq!(
        t1["netG.model.model.1.model.2.num_batches_tracked"].values,
        Values::I64(vec![1])
    );
    let Values::F32(g) = &t1["netG.model.model.0.weight.grad"].values else {
        panic!()
    };
    assert!(g.iter().any(|&v| v != 0.0), "G gradient is all zero");
    // Without dropout the step is a pure function of the checkpoint and the image.
    ok(
        d,
        &with(
            &[
                "step",
                "--name",
                "cmp",
                "--image",
                "data/train/0000.png",
                "--no-dropout",
                "--out",
                "s2.safetensors",
            ],
            SMALL,
        ),
    );
    assert_eq!(t1, read_safetensors(&d.join("s2.safetensors")).unwrap());
    // A checkpoint of another shape is refused with the tensor named.
    let err = fails(
        d,
        &[
            "step",
            "--name",
            "cmp",
            "--image",
            "data/train/0000.png",
            "--netG",
            "unet_128",
            "--ngf",
            "16",
            "--ndf",
            "8",
            "--device",
            "cpu",
        ],
    );
    assert!(err.contains("model.model.0.weight") && err.contains("shape"), "{err}");
    assert!(fails(d, &with(&["init", "--name", "cmp"], SMALL)).contains("--force"));
}

#[test]
fn train_resume_and_test() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_synthetic_dataset(&d.join("data"), 6, 2, 3, 128, 2).unwrap();
    let train = with(
        &[
            "train",
            "--dataroot",
            "data",
            "--name",
            "run",
            "--load-size",
            "142",
            "--crop-size",
            "128",
            "--batch-size",
            "2",
        ],
        SMALL,
    );
    let more = with(
        &train,
        &[
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "1",
            "--print-freq",
            "2",
            "--no-progress",
        ],
    );
    let out = ok(d, &more);
    assert!(out.contains("End of epoch 2 / 2"), "{out}");
    let run = d.join("checkpoints/run");
    for f in [
        "latest_net_G.safetensors",
        "latest_net_D.safetensors",
        "latest_train_state.safetensors",
        "loss_log.txt",
        "loss_log.csv",
        "train_opt.txt",
    ] {
        assert!(run.join(f).exists(), "no {f}");
    }
    let opt = std::fs::read_to_string(run.join("train_opt.txt")).unwrap();
    assert!(opt.contains("batch_size") && opt.contains("[changed]"), "{opt}");
    let csv = std::fs::read_to_string(run.join("loss_log.csv")).unwrap();
    assert!(csv.starts_with("epoch,iters,images,G_GAN,G_L1,D_real,D_fake"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        1 + 6,
        "one line per 2 images over 2 epochs of 6 images:\n{csv}"
    );
    // A second train into the same run is refused; --continue-train after the last epoch has nothing to do.
    assert!(fails(d, &more).contains("--continue-train"));
    let resumed = with(
        &train,
        &[
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "2",
            "--no-progress",
            "--continue-train",
        ],
    );
    let out = ok(d, &resumed);
    assert!(
        out.contains("resuming") && out.contains("End of epoch 3 / 3") && !out.contains("End of epoch 2 /"),
        "{out}"
    );
    // Test writes the reference's page.
    let out = ok(
        d,
        &with(
            &["test", "--dataroot", "data", "--name", "run", "--crop-size", "128"],
            SMALL,
        ),
    );
    assert!(out.contains("3 test images"), "{out}");
    let page = std::fs::read_to_string(d.join("results/run/test_latest/index.html")).unwrap();
    assert_eq!(page.matches("<h3>").count(), 3);
    assert!(page.contains("images/0000_fake_B.png"));
    assert!(d.join("results/run/test_latest/images/0002_real_B.png").exists());
}

#[test]
fn bad_input_gets_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let missing = fails(d, &with(&["train", "--dataroot", "nowhere", "--name", "x"], SMALL));
    assert!(missing.contains("nowhere"), "{missing}");
    std::fs::create_dir_all(d.join("empty/train")).unwrap();
    let empty = fails(d, &with(&["train", "--dataroot", "empty", "--name", "x"], SMALL));
    assert!(
        empty.contains("empty") && empty.to_lowercase().contains("no image"),
        "{empty}"
    );
    make_synthetic_dataset(&d.join("data"), 2, 0, 0, 128, 3).unwrap();
    let crop = fails(
        d,
        &with(
            &[
                "train",
                "--dataroot",
                "data",
                "--load-size",
                "100",
                "--crop-size",
                "128",
            ],
            SMALL,
        ),
    );
    assert!(crop.contains("128") && crop.contains("100"), "{crop}");
    let net = fails(
        d,
        &["train", "--dataroot", "data", "--netG", "unet_64", "--device", "cpu"],
    );
    assert!(net.contains("unet_64"), "{net}");
    // 256² crops do not fit unet_128 ngf 8? They do (multiples of 128); 96 does not.
    let size = fails(
        d,
        &with(
            &[
                "train",
                "--dataroot",
                "data",
                "--load-size",
                "96",
                "--crop-size",
                "96",
                "--max-iters",
                "1",
            ],
            SMALL,
        ),
    );
    assert!(size.contains("multiples of 128"), "{size}");
    std::fs::write(d.join("data/train/zz_broken.png"), b"not a png").unwrap();
    let step = fails(
        d,
        &with(
            &["step", "--name", "none", "--image", "data/train/zz_broken.png"],
            SMALL,
        ),
    );
    assert!(step.contains("pix2pix init"), "{step}");
    // A diverging run stops at the first non-finite loss and names it.
    let nan = fails(
        d,
        &with(
            &[
                "train",
                "--dataroot",
                "data",
                "--name",
                "nan",
                "--crop-size",
                "128",
                "--load-size",
                "128",
                "--lr",
                "1e38",
                "--max-iters",
                "5",
            ],
            SMALL,
        ),
    );
    assert!(nan.contains("became NaN") && nan.contains("iteration 1"), "{nan}");
    let dev = fails(d, &["train", "--dataroot", "data", "--device", "tpu"]);
    assert!(dev.contains("tpu"), "{dev}");
}

/// A run bounded by --max-minutes (as `demo`'s) shows its time budget, not an epoch count that
/// is never reached.
#[test]
fn time_bounded_run_shows_its_budget() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_synthetic_dataset(&d.join("data"), 3, 0, 0, 128, 5).unwrap();
    let args = with(
        &[
            "train",
            "--dataroot",
            "data",
            "--name",
            "budget",
            "--load-size",
            "128",
            "--crop-size",
            "128",
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "0",
            "--max-minutes",
            "10",
            "--no-progress",
        ],
        SMALL,
    );
    let out = ok(d, &args);
    assert!(
        out.contains("End of epoch 1 (") && out.contains(" of 10.0 min)"),
        "{out}"
    );
    assert!(!out.contains("End of epoch 1 /"), "{out}");
}
