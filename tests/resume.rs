//! Resuming is exact: a run stopped (at an epoch boundary or mid-epoch) and continued with
//! --continue-train ends with the same weights, running statistics and Adam state as an unbroken
//! run. And a run killed with SIGKILL leaves its last checkpoint loadable.

use pix2pix::checkpoint::read_safetensors;
use pix2pix::data::make_synthetic_dataset;
mod cli_common;
use cli_common::ok;
use std::path::Path;
use std::process::Command;

fn train_args<'a>(name: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--dataroot",
        "data",
        "--name",
        name,
        "--netG",
        "unet_128",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--device",
        "cpu",
        "--load-size",
        "136",
        "--crop-size",
        "128",
        "--batch-size",
        "2",
        "--n-epochs",
        "2",
        "--n-epochs-decay",
        "1",
        "--no-progress",
        "--num-threads",
        "2",
    ];
    v.extend_from_slice(more);
    v
}

fn assert_same_state(d: &Path, a: &str, b: &str) {
    for f in [
        "latest_net_G.safetensors",
        "latest_net_D.safetensors",
        "latest_train_state.safetensors",
    ] {
        let (x, y) = (
            read_safetensors(&d.join("checkpoints").join(a).join(f)).unwrap(),
            read_safetensors(&d.join("checkpoints").join(b).join(f)).unwrap(),
        );
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        for (k, t) in &x {
            assert!(y[k] == *t, "{f}: {k} differs between {a} and {b}");
        }
    }
}

#[test]
fn resume_reproduces_an_unbroken_run() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // With a val split: validation runs at every epoch end and must not disturb the state.
    make_synthetic_dataset(&d.join("data"), 5, 2, 0, 128, 4).unwrap();
    // 5 images at batch 2: 3 iterations per epoch (the last one partial), 3 epochs, lr decaying in epoch 3.
    ok(d, &train_args("full", &[]));
    // Stopped mid-epoch 2 (after 4 iterations), then continued.
    ok(d, &train_args("broken", &["--max-iters", "4"]));
    let out = ok(d, &train_args("broken", &["--continue-train"]));
    assert!(out.contains("resuming") && out.contains("epoch 2, batch 1"), "{out}");
    assert_same_state(d, "full", "broken");
    // Stopped at the end of epoch 1, then continued.
    ok(d, &train_args("edge", &["--max-iters", "3"]));
    let out = ok(d, &train_args("edge", &["--continue-train"]));
    assert!(
        out.contains("epoch 2, batch 0") && !out.contains("End of epoch 1 "),
        "{out}"
    );
    assert_same_state(d, "full", "edge");
}

#[test]
fn sigkill_leaves_the_last_checkpoint_loadable() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_synthetic_dataset(&d.join("data"), 4, 0, 0, 128, 5).unwrap();
    let mut args = train_args("killed", &["--save-latest-freq", "1"]);
    let at = args.iter().position(|a| *a == "--n-epochs").unwrap();
    args[at + 1] = "1000"; // long enough to be killed mid-run
    let mut child = Command::new(env!("CARGO_BIN_EXE_pix2pix"))
        .current_dir(d)
        .args(&args)
        .spawn()
        .unwrap();
    let state = d.join("checkpoints/killed/latest_train_state.safetensors");
    let start = std::time::Instant::now();
    while !state.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "training exited before its first checkpoint"
        );
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Kill while it keeps saving every image, so the kill likely lands in or near a write.
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    for f in [
        "latest_net_G.safetensors",
        "latest_net_D.safetensors",
        "latest_train_state.safetensors",
    ] {
        read_safetensors(&d.join("checkpoints/killed").join(f))
            .unwrap_or_else(|e| panic!("{f} unreadable after kill: {e:#}"));
    }
    let out = ok(d, &train_args("killed", &["--continue-train", "--max-iters", "1"]));
    assert!(out.contains("resuming"), "{out}");
}

#[test]
fn ctrl_c_saves_latest_and_exits_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    make_synthetic_dataset(&d.join("data"), 4, 0, 0, 128, 6).unwrap();
    let mut args = train_args("int", &[]);
    let at = args.iter().position(|a| *a == "--n-epochs").unwrap();
    args[at + 1] = "1000";
    let child = Command::new(env!("CARGO_BIN_EXE_pix2pix"))
        .current_dir(d)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, so training is under way.
    let g = d.join("checkpoints/int/latest_net_G.safetensors");
    let start = std::time::Instant::now();
    while !g.exists() {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit status {:?}: {text}", out.status);
    assert!(text.contains("interrupted: saved"), "{text}");
    read_safetensors(&g).unwrap();
}
