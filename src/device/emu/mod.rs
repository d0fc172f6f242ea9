//! The emulated CUDA device (`--device cuda-emu`): our kernels/*.cu compiled for the host and run
//! on the CPU under a CPU implementation of the CUDA driver API, so that everything above the
//! driver — cudarc, [`CudaBackend`](super::CudaBackend), the launchers in `ops/`, the PTX-table
//! lookup, the workspace and split-K logic — is exactly the GPU path.
//!
//! How: build.rs compiles the kernels with the C++ compiler under `cuda_host.h` (one fiber per CUDA
//! thread, `__shared__` per block, barriers and warp collectives that check themselves; see
//! scheduler.cpp) and links them with `driver.cpp` into a shared library whose SONAME is
//! `libcuda.so`, embedded in the binary. [`activate`] writes it to a cache folder and dlopens it
//! (RTLD_GLOBAL) before cudarc's first `dlopen("libcuda.so")`, which then returns this library:
//! one process, one driver. The modules loaded are the real embedded PTX; their `.entry` names and
//! parameter sizes are checked against the host builds.
//!
//! Modes: `cuda-emu` (plain), `cuda-emu:memcheck` (kernels built with AddressSanitizer: out-of-bounds
//! and use-after-free on device memory) and `cuda-emu:racecheck` (ThreadSanitizer: shared-memory races
//! within a block, i.e. a missing `__syncthreads`). The sanitizer runtimes must be loaded first:
//! [`reexec_for_sanitizer`] restarts the program with them preloaded.
//!
//! Environment: `PIX2PIX_EMU_GPU=h100|a100|v100` (the device attributes it reports),
//! `PIX2PIX_EMU_DRIVER=12040` (the CUDA version the driver reports; it refuses PTX newer than that
//! version loads, with CUDA_ERROR_UNSUPPORTED_PTX_VERSION, as a real driver does), `PIX2PIX_EMU_ORDER=
//! forward|reverse|shuffle[:SEED]` (block order: a result that changes with it is a race between
//! blocks), `PIX2PIX_EMU_OVERRIDE=a.so:b.so` (host builds of scratch kernels that replace ours, for
//! the emulator's own tests).
//!
//! What it proves: indexing, bounds, synchronisation within a block, warp-collective masks,
//! reductions, launch configurations and limits, the argument marshalling. What it cannot: speed,
//! the memory model between blocks or with atomics under real concurrency, libdevice's rounding of
//! expf/tanhf/log1p (host libm here, a few ulp apart), real hardware faults.

use crate::device::cuda::embedded;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Which build of the emulated driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Memcheck,
    Racecheck,
}

impl Mode {
    /// `cuda-emu`, `cuda-emu:memcheck`, `cuda-emu:racecheck` (None for anything else).
    pub fn from_device(spec: &str) -> Option<Mode> {
        match spec {
            "cuda-emu" | "cuda-emu:plain" => Some(Mode::Plain),
            "cuda-emu:memcheck" => Some(Mode::Memcheck),
            "cuda-emu:racecheck" => Some(Mode::Racecheck),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Memcheck => "memcheck",
            Mode::Racecheck => "racecheck",
        }
    }

    /// The sanitizer runtime this build needs preloaded, and the symbol that shows it is loaded.
    fn runtime(self) -> Option<(&'static str, &'static str)> {
        match self {
            Mode::Plain => None,
            Mode::Memcheck => Some((embedded::EMU_ASAN_RUNTIME, "__asan_init")),
            Mode::Racecheck => Some((embedded::EMU_TSAN_RUNTIME, "__tsan_init")),
        }
    }

    fn library(self) -> Option<&'static [u8]> {
        embedded::EMU_LIBS
            .iter()
            .find(|(m, _)| *m == self.name())
            .map(|(_, b)| *b)
    }
}

struct Active {
    mode: Mode,
    lib: libloading::Library,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The emulated driver, if this process loaded it.
pub fn active() -> Option<Mode> {
    ACTIVE.get().map(|a| a.mode)
}

/// Whether the binary carries the emulator build for `mode`.
pub fn available(mode: Mode) -> bool {
    mode.library().is_some()
}

fn symbol_loaded(name: &str) -> bool {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: dlsym on the global scope with a valid C string; we only test the result for null.
    !unsafe { libc_dlsym(std::ptr::null_mut(), c.as_ptr()) }.is_null()
}

extern "C" {
    #[link_name = "dlsym"]
    fn libc_dlsym(handle: *mut std::ffi::c_void, symbol: *const c_char) -> *mut std::ffi::c_void;
    #[link_name = "dlopen"]
    fn libc_dlopen(file: *const c_char, mode: i32) -> *mut std::ffi::c_void;
}

const RTLD_NOW: i32 = 2;
const RTLD_NOLOAD: i32 = 4;
const RTLD_GLOBAL: i32 = 0x100;

/// Is some library answering to `libcuda.so` already loaded in this process?
fn driver_loaded() -> bool {
    let name = c"libcuda.so";
    // SAFETY: RTLD_NOLOAD only looks up an already loaded object (the reference it adds is harmless).
    !unsafe { libc_dlopen(name.as_ptr(), RTLD_NOW | RTLD_NOLOAD) }.is_null()
}

/// Writes the embedded library to the cache folder (once per content) and returns its path.
fn materialise(mode: Mode, bytes: &[u8]) -> Result<PathBuf> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    let base = std::env::var_os("PIX2PIX_EMU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("pix2pix-emu-{}", whoami_uid())));
    let dir = base.join(format!("{h:016x}-{}", mode.name()));
    let path = dir.join("libcuda.so");
    if std::fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("libcuda.so.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

fn whoami_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .unwrap_or_else(|| "0".into())
}

/// Loads the emulated driver in `mode` so that cudarc uses it. Idempotent for the same mode; an
/// error when another driver (a real libcuda, or the emulator in another mode) is already loaded.
pub fn activate(mode: Mode) -> Result<()> {
    let _guard = LOADING.lock().unwrap();
    if let Some(a) = ACTIVE.get() {
        if a.mode == mode {
            return Ok(());
        }
        bail!(
            "the emulated CUDA driver is already loaded in {} mode; one process has one driver",
            a.mode.name()
        );
    }
    let Some(bytes) = mode.library() else {
        if embedded::EMU_LIBS.is_empty() {
            bail!("this binary was built without the emulated CUDA device (no C++ compiler at build time, or PIX2PIX_EMU=0)");
        }
        bail!(
            "this binary has no cuda-emu:{} build (the compiler had no {} runtime)",
            mode.name(),
            if mode == Mode::Memcheck {
                "AddressSanitizer"
            } else {
                "ThreadSanitizer"
            }
        );
    };
    if let Some((runtime, sym)) = mode.runtime() {
        if !symbol_loaded(sym) {
            bail!(
                "cuda-emu:{} needs its sanitizer runtime loaded first: run with LD_PRELOAD={runtime} \
                 (the pix2pix command does this itself)",
                mode.name()
            );
        }
    }
    if driver_loaded() {
        bail!(
            "a CUDA driver (libcuda.so) is already loaded in this process; select cuda-emu before any other CUDA use"
        );
    }
    let path = materialise(mode, bytes)?;
    // SAFETY: loading our own library; its initialisers only register kernels.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| anyhow!("loading the emulated CUDA driver {}: {e}", path.display()))?;
    let _ = ACTIVE.set(Active { mode, lib: lib.into() });
    Ok(())
}

fn call_str(name: &[u8]) -> Option<String> {
    let a = ACTIVE.get()?;
    // SAFETY: the symbol is a `const char* f(void)` of driver.cpp returning a NUL-terminated string.
    unsafe {
        let f = a.lib.get::<unsafe extern "C" fn() -> *const c_char>(name).ok()?;
        let p = f();
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// The emulator's detail behind this thread's last failed driver call (e.g. which launch limit).
pub fn last_error() -> Option<String> {
    call_str(b"pix2pix_emu_last_error\0").filter(|s| !s.is_empty())
}

fn call_u64(name: &[u8]) -> u64 {
    let Some(a) = ACTIVE.get() else { return 0 };
    // SAFETY: an `unsigned long long f(void)` of driver.cpp.
    unsafe {
        a.lib
            .get::<unsafe extern "C" fn() -> u64>(name)
            .map(|f| f())
            .unwrap_or(0)
    }
}

/// Launch counts since the emulator was loaded (all 0 when it is not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launches {
    /// Kernels launched one by one (cuLaunchKernel outside a capture).
    pub kernels: u64,
    /// Graph launches (cuGraphLaunch), and the kernels their replays ran.
    pub graphs: u64,
    pub graph_kernels: u64,
}

pub fn launches() -> Launches {
    Launches {
        kernels: call_u64(b"pix2pix_emu_launches\0"),
        graphs: call_u64(b"pix2pix_emu_graph_launches\0"),
        graph_kernels: call_u64(b"pix2pix_emu_graph_kernels\0"),
    }
}

/// The kernels the emulated driver has host builds of: (family, name, parameter count).
pub fn kernels() -> Vec<(String, String, usize)> {
    call_str(b"pix2pix_emu_kernels\0")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// For the CLI: when the command line asks for `cuda-emu:memcheck` or `cuda-emu:racecheck` and the
/// sanitizer runtime is not loaded yet, re-executes this program with it preloaded (and quiet,
/// fail-fast sanitizer options unless the user set their own). Returns only when no restart is needed.
pub fn reexec_for_sanitizer() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut mode = None;
    for (i, a) in args.iter().enumerate() {
        let spec = if a == "--device" {
            args.get(i + 1).map(|s| s.as_str())
        } else {
            a.strip_prefix("--device=")
        };
        if let Some(m) = spec.and_then(Mode::from_device) {
            mode = Some(m);
        }
    }
    let Some((runtime, sym)) = mode.and_then(|m| m.runtime()) else {
        return Ok(());
    };
    if symbol_loaded(sym) || std::env::var_os("PIX2PIX_EMU_REEXEC").is_some() {
        return Ok(()); // loaded, or we already tried: activate() explains
    }
    if runtime.is_empty() || !std::path::Path::new(runtime).exists() {
        return Ok(()); // activate() says the build is missing
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding this program to restart it under the sanitizer")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args[1..])
        .env("LD_PRELOAD", runtime)
        .env("PIX2PIX_EMU_REEXEC", "1");
    for (k, v) in sanitizer_env() {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let e = cmd.exec();
    Err(anyhow!("restarting under {runtime}: {e}"))
}

/// Default sanitizer options: stop at the first report with a non-zero exit, no leak checking
/// (the emulator keeps its fiber stacks for the life of the process).
pub fn sanitizer_env() -> [(&'static str, &'static str); 2] {
    [
        (
            "ASAN_OPTIONS",
            "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86",
        ),
        (
            "TSAN_OPTIONS",
            "halt_on_error=1:exitcode=66:ignore_noninstrumented_modules=1:report_signal_unsafe=0",
        ),
    ]
}

/// The preload a sanitizer mode needs (path of the runtime), for tests that start child processes.
pub fn sanitizer_runtime(mode: Mode) -> Option<&'static str> {
    mode.runtime().map(|r| r.0).filter(|r| !r.is_empty())
}
