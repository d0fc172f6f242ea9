//! Planted bugs for the emulated CUDA device (tests/emu.rs, tests/emu_pipeline.rs): scratch copies
//! of our kernels with one change, compiled the way build.rs compiles the real ones and loaded
//! over them (PIX2PIX_EMU_OVERRIDE) in a child process of the test binary (a kernel fault is
//! sticky for the process's context, as on a GPU, and the sanitizer builds need their runtime
//! preloaded).

use pix2pix::device::cuda::embedded;
use pix2pix::device::{emu, CudaBackend, Device};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The emulated device (plain), or None when this build has no emulator or no PTX.
pub fn emu_backend() -> Option<Arc<CudaBackend>> {
    match Device::parse(&child_device()) {
        Ok(Device::Cuda(c)) => {
            assert!(c.emulated, "{} is not the emulated device", c.describe());
            Some(c)
        }
        Ok(Device::Cpu) => unreachable!(),
        Err(e) => {
            if embedded::REQUIRED {
                panic!("the emulated CUDA device is required (PIX2PIX_REQUIRE_CUDA=1) but unusable: {e:#}");
            }
            println!("skipped: {e:#}");
            None
        }
    }
}

/// The device a child process uses (its parent sets PIX2PIX_TEST_DEVICE), else plain cuda-emu.
pub fn child_device() -> String {
    std::env::var("PIX2PIX_TEST_DEVICE").unwrap_or_else(|_| "cuda-emu".into())
}

/// Compiles scratch kernel sources (file name → text; `main` is the .cu to register) into an
/// override library for `mode`, exactly as build.rs compiles kernels/*.cu.
pub fn build_override(dir: &Path, mode: &str, files: &[(&str, String)], main: &str) -> PathBuf {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let main_path = dir.join(main);
    let mut reg = format!(
        "#include {:?}\n#include \"emu_register.h\"\n",
        main_path.display().to_string()
    );
    let text = &files.iter().find(|f| f.0 == main).unwrap().1;
    for name in text.split("KERNEL void").skip(1) {
        let head = name.trim_start();
        let head = match head.strip_prefix("__launch_bounds__(") {
            Some(rest) => rest.split_once(')').map_or(rest, |r| r.1).trim_start(),
            None => head,
        };
        let n: String = head.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        reg.push_str(&format!("EMU_KERNEL(\"planted\", {n})\n"));
    }
    let reg_path = dir.join(format!("reg-{mode}.cpp"));
    std::fs::write(&reg_path, reg).unwrap();
    let lib = dir.join(format!("planted-{mode}.so"));
    let mode_flags = embedded::EMU_MODE_FLAGS
        .iter()
        .find(|m| m.0 == mode)
        .map(|m| m.1)
        .unwrap_or(&[]);
    let out = Command::new(embedded::EMU_CXX)
        .args(embedded::EMU_CXXFLAGS)
        .args(mode_flags)
        .arg(format!("-I{}", dir.display()))
        .args(["-g", "-shared", "-o"])
        .arg(&lib)
        .arg(&reg_path)
        .output()
        .expect("running the C++ compiler");
    assert!(
        out.status.success(),
        "compiling the planted kernel:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

pub fn kernel_source(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels").join(name)).unwrap()
}

/// `text` with `from` replaced by `to` exactly once (so a plant cannot silently miss).
pub fn plant(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the plant site {from:?} must occur exactly once"
    );
    text.replace(from, to)
}

/// Runs the ignored test `child` of this binary in a child process on `device` with the override
/// library; returns (succeeded, stdout + stderr).
pub fn run_child(child: &str, device: &str, lib: &Path, extra: &[(&str, &str)]) -> (bool, String) {
    let mode = emu::Mode::from_device(device).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([child, "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("PIX2PIX_TEST_DEVICE", device)
        .env("PIX2PIX_EMU_OVERRIDE", lib)
        .env("RUST_BACKTRACE", "0");
    if let Some(rt) = emu::sanitizer_runtime(mode) {
        cmd.env("LD_PRELOAD", rt);
        for (k, v) in emu::sanitizer_env() {
            cmd.env(k, v);
        }
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn sanitizer_available(mode: emu::Mode) -> bool {
    let ok = emu::available(mode) && emu::sanitizer_runtime(mode).is_some();
    let required = embedded::REQUIRED;
    if !ok {
        assert!(
            !required,
            "PIX2PIX_REQUIRE_CUDA=1 but this build has no cuda-emu:{mode:?}"
        );
        println!("skipped: no cuda-emu:{mode:?} build");
    }
    ok
}
