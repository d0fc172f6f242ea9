//! The CUDA backend: one context, one stream, our PTX modules (kernels/*.cu compiled by build.rs
//! and embedded), a function cache and a launch helper. Ops in `ops/` launch their kernels through
//! [`launch!`](crate::device::cuda::launch); nothing here knows about any op.

use super::precision::{ConvVariant, Precision};
use anyhow::{anyhow, bail, Context, Result};
use cudarc::driver::sys::CUresult;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError, LaunchConfig,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ptx::cuda_version_str;
pub use super::ptx::{embedded, ptx_entries, ptx_needs_cuda, ptx_param_sizes};

/// Threads per block for the 1-D elementwise kernels.
pub const BLOCK: u32 = 256;

pub struct CudaBackend {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    name: String,
    /// Compute capability ×10 (e.g. 90).
    pub cc: u32,
    /// Whether the driver is the emulated one (device/emu): launches run on the CPU, and no time
    /// measured here is a GPU figure.
    pub emulated: bool,
    /// The embedded PTX architecture loaded (e.g. 90).
    pub ptx_arch: u32,
    /// The PTX set loaded (arch, ISA, toolchain), and why that one: the sets passed over.
    pub ptx: embedded::PtxSet,
    pub ptx_why: String,
    /// CUDA version the driver supports, as cuDriverGetVersion reports it (e.g. 13000).
    pub driver_version: i32,
    pub sm_count: u32,
    modules: HashMap<&'static str, Arc<CudaModule>>,
    /// Parameter count of every `.entry` of the loaded PTX, by kernel name (checked at each launch).
    arity: HashMap<String, usize>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// f32 workspace shared by kernels that need scratch (split-K partial sums). It grows to the
    /// largest size asked for and is then reused, so the steady state allocates nothing. The
    /// lock is held from the first launch that writes it to the last that reads it.
    workspace: Mutex<CudaSlice<f32>>,
    /// f64 scratch for the partial sums of the two-stage reductions (losses).
    scratch64: Mutex<CudaSlice<f64>>,
    /// Per-kernel timing (`--profile`): None unless switched on.
    profiler: Mutex<Option<Profiler>>,
    /// The conv kernel-lab variant in use (its number; device/precision.rs).
    conv_variant: std::sync::atomic::AtomicU8,
    /// Device memory in use (all processes) once the context and the kernels were loaded.
    mem_base: usize,
}

/// Time spent in one kernel, summed over its launches.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: &'static str,
    pub family: &'static str,
    pub calls: u64,
    pub ms: f64,
    /// Measured on the emulated device: host time of the CPU emulation, never a GPU figure.
    pub emulated: bool,
}

/// CUDA events around every launch while profiling. Events are recycled after each `collect`, so
/// a long profiled run creates only as many as one step needs.
#[derive(Default)]
struct Profiler {
    pending: Vec<(&'static str, &'static str, CudaEvent, CudaEvent)>,
    free: Vec<CudaEvent>,
    totals: Vec<KernelTime>,
}

/// Entries of the f64 scratch: the most blocks a two-stage reduction may use in its first stage.
pub const SCRATCH64_LEN: usize = 1024;

/// One set's modules and the parameter count of each `.entry`, or the driver's error.
type LoadedSet = (HashMap<&'static str, Arc<CudaModule>>, HashMap<String, usize>);

fn load_set(
    ctx: &Arc<CudaContext>,
    set: embedded::PtxSet,
) -> std::result::Result<LoadedSet, (&'static str, DriverError)> {
    let mut modules = HashMap::new();
    let mut arity = HashMap::new();
    for e in set.entries() {
        arity.extend(
            ptx_entries(e.text())
                .into_iter()
                .map(|(name, sizes)| (name, sizes.len())),
        );
        let m = ctx
            .load_module(Ptx::from_src(e.text()))
            .map_err(|err| (e.family, err))?;
        modules.insert(e.family, m);
    }
    Ok((modules, arity))
}

impl CudaBackend {
    pub fn new(ordinal: usize) -> Result<Arc<Self>> {
        if embedded::PTX_TABLE.is_empty() {
            bail!("built without CUDA kernels (no nvcc at build time)");
        }
        // CudaContext::new panics when libcuda is absent, so probe first.
        // SAFETY: only tries to dlopen libcuda and reports whether it succeeded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!("no CUDA driver found (libcuda could not be loaded)");
        }
        let count = CudaContext::device_count().map_err(|e| match e.0 {
            CUresult::CUDA_ERROR_NO_DEVICE => anyhow!("the CUDA driver reports no GPU"),
            _ => anyhow!("initialising the CUDA driver: {}", err_str(e)),
        })?;
        if count <= 0 {
            bail!("the CUDA driver reports no GPU");
        }
        if ordinal >= count as usize {
            bail!("cuda:{ordinal} asked for, but only {count} GPU(s) present");
        }
        let mut driver_version = 0i32;
        // SAFETY: writes one int; the driver library is loaded (checked above).
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(|e| anyhow!("cuDriverGetVersion: {}", err_str(e)))?;

        let ctx =
            CudaContext::new(ordinal).map_err(|e| anyhow!("creating a context on cuda:{ordinal}: {}", err_str(e)))?;
        // Capturable stream: no per-buffer events, and a stream of our own (not the legacy
        // default stream). Event tracking must be off before the first allocation.
        // SAFETY: we use a single stream, so cross-stream event synchronisation is not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| anyhow!("creating a CUDA stream: {}", err_str(e)))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| anyhow!("querying the compute capability: {}", err_str(e)))?;
        let cc = (major * 10 + minor) as u32;
        let sm_count = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap_or(1)
            .max(1) as u32;

        // The newest PTX this driver accepts for this GPU; a set the driver refuses as too new
        // (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, e.g. a driver older than our ISA table says) falls
        // back to the next. `ptx_why` keeps each set passed over and why.
        let archs = embedded::archs();
        // PIX2PIX_PTX=nvrtc (or nvcc) loads only that toolchain's PTX: to run CUDA 12's PTX on a
        // GPU whose driver would take CUDA 13's.
        let only = std::env::var("PIX2PIX_PTX").ok().filter(|v| !v.is_empty());
        if let Some(o) = &only {
            if !embedded::TOOLCHAINS.iter().any(|t| t.0.starts_with(o.as_str())) {
                let names: Vec<&str> = embedded::TOOLCHAINS.iter().map(|t| t.0).collect();
                bail!(
                    "PIX2PIX_PTX={o} names no toolchain of this build ({})",
                    names.join(", ")
                );
            }
        }
        let (plan, mut passed_over) = embedded::plan(cc, driver_version, only.as_deref());
        if let Some(o) = &only {
            passed_over.push(format!("PIX2PIX_PTX={o}"));
        }
        let mut loaded = None;
        for set in plan {
            match load_set(&ctx, set) {
                Ok(l) => {
                    loaded = Some((set, l));
                    break;
                }
                Err((_, e)) if e.0 == CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => {
                    passed_over.push(format!(
                        "{set}: the driver refused it (CUDA_ERROR_UNSUPPORTED_PTX_VERSION)"
                    ));
                }
                Err((family, e)) => bail!("loading the {family} kernels ({set}) on {name}: {}", err_str(e)),
            }
        }
        let Some((ptx, (modules, arity))) = loaded else {
            if archs.first().is_some_and(|&a| a > cc) {
                bail!(
                    "this binary has PTX for sm_{}..sm_{}, the device {name} is sm_{cc}",
                    archs.first().unwrap(),
                    archs.last().unwrap()
                );
            }
            let oldest = embedded::sets()
                .into_iter()
                .filter(|s| s.arch <= cc)
                .filter_map(|s| ptx_needs_cuda(s.isa))
                .min()
                .map(cuda_version_str)
                .unwrap_or_else(|| "?".into());
            bail!(
                "no embedded PTX loads on {name} (sm_{cc}) under this driver (CUDA {}): {}; update the \
                 driver to CUDA {oldest} or later",
                cuda_version_str(driver_version),
                passed_over.join("; ")
            );
        };
        let ptx_why = if passed_over.is_empty() {
            "the newest PTX for this GPU".to_string()
        } else {
            passed_over.join("; ")
        };

        // What the device holds before this backend allocates anything: the context, the loaded
        // kernels, other processes (`memory_allocated` is measured from here).
        let mem_base = ctx.mem_get_info().map(|(free, total)| total - free).unwrap_or(0);
        let workspace = stream
            .alloc_zeros::<f32>(1)
            .map_err(|e| anyhow!("allocating the workspace: {}", err_str(e)))?;
        let scratch64 = stream
            .alloc_zeros::<f64>(SCRATCH64_LEN)
            .map_err(|e| anyhow!("allocating the reduction scratch: {}", err_str(e)))?;
        Ok(Arc::new(CudaBackend {
            ordinal,
            ctx,
            stream,
            name,
            cc,
            emulated: super::emu::active().is_some(),
            ptx_arch: ptx.arch,
            ptx,
            ptx_why,
            driver_version,
            sm_count,
            modules,
            arity,
            functions: Mutex::new(HashMap::new()),
            workspace: Mutex::new(workspace),
            scratch64: Mutex::new(scratch64),
            profiler: Mutex::new(None),
            conv_variant: std::sync::atomic::AtomicU8::new(ConvVariant::V1.number()),
            mem_base,
        }))
    }

    /// How the convolutions multiply (the conv kernel-lab variant's precision); fp32 unless set.
    pub fn precision(&self) -> Precision {
        self.conv_variant().precision()
    }

    /// The conv kernel-lab variant in use; v1 unless set.
    pub fn conv_variant(&self) -> ConvVariant {
        let n = self.conv_variant.load(std::sync::atomic::Ordering::Relaxed);
        ConvVariant::from_number(n).unwrap_or(ConvVariant::V1)
    }

    /// Selects the precision's default conv variant; tf32 and bf16 need PTX for sm_80 or later.
    pub fn set_precision(&self, p: Precision) -> Result<()> {
        self.set_conv_variant(p.variant())
    }

    /// Selects a conv variant; v2-v7 need PTX for sm_80 or later.
    pub fn set_conv_variant(&self, v: ConvVariant) -> Result<()> {
        if self.ptx_arch < v.min_arch() {
            bail!(
                "conv variant {v} (--precision {}) needs tensor cores (sm_{} or later); {} runs PTX for sm_{}",
                v.precision(),
                v.min_arch(),
                self.name,
                self.ptx_arch
            );
        }
        self.conv_variant
            .store(v.number(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// "cuda:0 NVIDIA H200 (sm_90, 132 SMs, driver CUDA 13.0, PTX sm_90 ISA 9.0 by nvcc 13.0: the
    /// newest PTX for this GPU)".
    pub fn describe(&self) -> String {
        format!(
            "cuda:{} {} (sm_{}, {} SMs, driver CUDA {}, {}: {})",
            self.ordinal,
            self.name,
            self.cc,
            self.sm_count,
            cuda_version_str(self.driver_version),
            self.ptx,
            self.ptx_why
        )
    }

    /// Panics unless the PTX's `.entry name` takes exactly `nargs` parameters: a launch with the
    /// wrong argument count would read garbage on a GPU.
    pub fn check_arity(&self, family: &str, name: &str, nargs: usize) {
        match self.arity.get(name) {
            Some(&n) if n == nargs => {}
            Some(&n) => panic!("launching {name} ({family}.cu) with {nargs} arguments; the kernel takes {n}"),
            None => panic!("kernel {name} is not an .entry of the embedded PTX ({family}.cu)"),
        }
    }

    /// The kernel `name` of kernels/`family`.cu, loaded once and cached.
    pub fn func(&self, family: &'static str, name: &'static str) -> CudaFunction {
        let mut cache = self.functions.lock().unwrap();
        if let Some(f) = cache.get(name) {
            return f.clone();
        }
        let module = self
            .modules
            .get(family)
            .unwrap_or_else(|| panic!("no kernels/{family}.cu module embedded in this build"));
        let f = module
            .load_function(name)
            .unwrap_or_else(|e| panic!("kernel {name} not found in kernels/{family}.cu: {}", err_str(e)));
        cache.insert(name, f.clone());
        f
    }

    /// A 1-D launch of `n` work items with `BLOCK` threads per block. The kernels use grid-stride
    /// loops, so the grid is capped (at 32 blocks per SM) rather than sized to `n`.
    pub fn cfg_1d(&self, n: usize) -> LaunchConfig {
        let blocks = n.div_ceil(BLOCK as usize).max(1);
        let cap = (self.sm_count as usize) * 32;
        LaunchConfig {
            grid_dim: (blocks.min(cap) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The shared f32 workspace, grown to at least `len` elements (contents undefined).
    pub fn workspace(&self, len: usize) -> MutexGuard<'_, CudaSlice<f32>> {
        let mut ws = self.workspace.lock().unwrap();
        if ws.len() < len {
            // Grow with headroom so that a slowly growing sequence of sizes reallocates rarely.
            *ws = self.alloc_zeros(len + len / 4);
        }
        ws
    }

    /// Bytes of device memory in use (total − free, all processes), for the benchmarks.
    pub fn memory_used(&self) -> usize {
        self.ctx.mem_get_info().map(|(free, total)| total - free).unwrap_or(0)
    }

    /// Device memory taken since this backend was created, i.e. by its buffers (weights, Adam
    /// moments, activations, workspace, graphs): `memory_used` minus what the context and the
    /// loaded kernels held before (allocations by other processes meanwhile count too). The
    /// figure to set beside PyTorch's `torch.cuda.max_memory_allocated()`, which leaves out its
    /// own context and kernels in the same way.
    pub fn memory_allocated(&self) -> usize {
        self.memory_used().saturating_sub(self.mem_base)
    }

    /// Switches per-kernel timing on or off (clearing what was measured). Timing adds two events
    /// per launch and a synchronisation per `collect_kernel_times`; use it for profiling runs.
    pub fn set_profiling(&self, on: bool) {
        *self.profiler.lock().unwrap() = on.then(Profiler::default);
    }

    fn event(&self, p: &mut Profiler) -> CudaEvent {
        p.free.pop().unwrap_or_else(|| {
            self.ctx
                .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                .unwrap_or_else(|e| panic!("creating a CUDA event: {}", err_str(e)))
        })
    }

    /// Records a start event when profiling (called by `launch!` before a launch).
    pub fn profile_start(&self) -> Option<CudaEvent> {
        let mut guard = self.profiler.lock().unwrap();
        let p = guard.as_mut()?;
        let ev = self.event(p);
        ev.record(&self.stream)
            .unwrap_or_else(|e| panic!("recording a CUDA event: {}", err_str(e)));
        Some(ev)
    }

    /// Records the end event of a launch started with `profile_start`.
    pub fn profile_end(&self, family: &'static str, name: &'static str, start: Option<CudaEvent>) {
        let Some(start) = start else { return };
        let mut guard = self.profiler.lock().unwrap();
        let Some(p) = guard.as_mut() else { return };
        let end = self.event(p);
        end.record(&self.stream)
            .unwrap_or_else(|e| panic!("recording a CUDA event: {}", err_str(e)));
        p.pending.push((family, name, start, end));
    }

    /// Waits for the stream, adds the pending launches' times to the totals and returns the
    /// totals, largest first (empty when not profiling).
    pub fn collect_kernel_times(&self) -> Vec<KernelTime> {
        let mut guard = self.profiler.lock().unwrap();
        let Some(p) = guard.as_mut() else { return vec![] };
        self.synchronize();
        for (family, name, start, end) in std::mem::take(&mut p.pending) {
            let ms = start
                .elapsed_ms(&end)
                .unwrap_or_else(|e| panic!("reading a CUDA event: {}", err_str(e))) as f64;
            match p.totals.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    t.calls += 1;
                    t.ms += ms;
                }
                None => p.totals.push(KernelTime {
                    name,
                    family,
                    calls: 1,
                    ms,
                    emulated: self.emulated,
                }),
            }
            p.free.push(start);
            p.free.push(end);
        }
        let mut out = p.totals.clone();
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        out
    }

    /// The f64 reduction scratch (`SCRATCH64_LEN` entries).
    pub fn scratch64(&self) -> MutexGuard<'_, CudaSlice<f64>> {
        self.scratch64.lock().unwrap()
    }

    pub fn try_alloc_zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| match e.0 {
            CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                let (free, total) = self.ctx.mem_get_info().unwrap_or((0, 0));
                anyhow!(
                    "CUDA out of memory on {}: asked for {:.1} MiB ({len} floats), {:.1} MiB free of {:.1} MiB",
                    self.name,
                    (len * 4) as f64 / 1048576.0,
                    free as f64 / 1048576.0,
                    total as f64 / 1048576.0
                )
            }
            _ => anyhow!("CUDA allocation of {len} floats failed: {}", err_str(e)),
        })
    }

    pub fn alloc_zeros(&self, len: usize) -> CudaSlice<f32> {
        self.try_alloc_zeros(len).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn upload(&self, values: &[f32]) -> CudaSlice<f32> {
        if values.is_empty() {
            return self.alloc_zeros(0);
        }
        self.stream.clone_htod(values).unwrap_or_else(|e| match e.0 {
            CUresult::CUDA_ERROR_OUT_OF_MEMORY => panic!(
                "CUDA out of memory on {}: asked for {:.1} MiB ({} floats)",
                self.name,
                (values.len() * 4) as f64 / 1048576.0,
                values.len()
            ),
            _ => panic!("host-to-device copy of {} floats failed: {}", values.len(), err_str(e)),
        })
    }

    pub fn write(&self, dst: &mut CudaSlice<f32>, values: &[f32]) {
        self.stream
            .memcpy_htod(values, dst)
            .unwrap_or_else(|e| panic!("host-to-device copy failed: {}", err_str(e)))
    }

    pub fn download(&self, src: &CudaSlice<f32>) -> Vec<f32> {
        self.stream
            .clone_dtoh(src)
            .unwrap_or_else(|e| panic!("device-to-host copy failed: {}", err_str(e)))
    }

    pub fn synchronize(&self) {
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("CUDA stream synchronisation failed: {}", err_str(e)))
    }

    /// Synchronises and reports a kernel fault as an error (for tests and the end of a step).
    pub fn check(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| anyhow!("CUDA error: {}", err_str(e)))
            .context("after queued kernels")
    }
}

/// The driver's name and description of an error ("CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
/// with the emulated driver's detail when it has one.
pub fn err_str(e: DriverError) -> String {
    let name = e.error_name().ok().map(|s| s.to_string_lossy().into_owned());
    let desc = e.error_string().ok().map(|s| s.to_string_lossy().into_owned());
    let base = match (name, desc) {
        (Some(n), Some(d)) => format!("{n}: {d}"),
        _ => format!("{:?}", e.0),
    };
    match super::emu::last_error() {
        Some(detail) => format!("{base} (cuda-emu: {detail})"),
        None => base,
    }
}

/// Launches `kernel` of kernels/`family`.cu on the backend's stream:
/// `launch!(c, "activation", "leaky_relu_fwd", cfg, x, &mut y, &n, &slope)`.
/// Each argument is something `LaunchArgs::arg` takes: `&CudaSlice`, `&mut CudaSlice`, `&CudaView`,
/// `&mut CudaViewMut`, or a reference to a `DeviceRepr` scalar or `#[repr(C)]` struct (bind
/// temporaries to locals first). Panics on a launch error (a bug, or a dead device).
#[allow(unused_macros)]
macro_rules! launch {
    ($c:expr, $family:expr, $kernel:expr, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        #[allow(unused_imports)]
        use cudarc::driver::PushKernelArg as _;
        let backend: &$crate::device::cuda::CudaBackend = $c;
        backend.check_arity($family, $kernel, 0usize $(+ { stringify!($arg); 1 })*);
        let func = backend.func($family, $kernel);
        let mut builder = backend.stream.launch_builder(&func);
        $( builder.arg($arg); )*
        let timing = backend.profile_start();
        // SAFETY: the argument list matches the kernel's signature in kernels/$family.cu (each
        // launcher is written against it), and the launcher checks the sizes it passes.
        unsafe { builder.launch($cfg) }.unwrap_or_else(|e| {
            panic!("launching {} ({}.cu): {}", $kernel, $family, $crate::device::cuda::err_str(e))
        });
        backend.profile_end($family, $kernel, timing);
    }};
}
#[allow(unused_imports)]
pub(crate) use launch;
