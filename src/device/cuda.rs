//! The CUDA backend: one context, one stream, our PTX modules. (Kernel loading and launch helpers
//! are completed by the CUDA-path work; this holds the context and memory movement.)

use anyhow::{bail, Context, Result};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use std::sync::Arc;

pub struct CudaBackend {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    name: String,
}

impl CudaBackend {
    pub fn new(ordinal: usize) -> Result<Arc<Self>> {
        // CudaContext::new panics when libcuda is absent, so probe first.
        // SAFETY: only tries to dlopen libcuda and reports whether it succeeded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!("no CUDA driver found (libcuda could not be loaded)");
        }
        let count = CudaContext::device_count().context("querying the number of CUDA devices")?;
        if count <= 0 {
            bail!("the CUDA driver reports no GPU");
        }
        if ordinal >= count as usize {
            bail!("cuda:{ordinal} asked for, but only {count} GPU(s) present");
        }
        let ctx = CudaContext::new(ordinal).with_context(|| format!("creating a context on cuda:{ordinal}"))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let stream = ctx.default_stream();
        Ok(Arc::new(CudaBackend {
            ordinal,
            ctx,
            stream,
            name,
        }))
    }

    pub fn describe(&self) -> String {
        format!("cuda:{} {}", self.ordinal, self.name)
    }

    pub fn alloc_zeros(&self, len: usize) -> CudaSlice<f32> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .unwrap_or_else(|e| panic!("CUDA out of memory allocating {} MiB: {e}", (len * 4) >> 20))
    }

    pub fn upload(&self, values: &[f32]) -> CudaSlice<f32> {
        if values.is_empty() {
            return self.alloc_zeros(0);
        }
        self.stream.clone_htod(values).expect("host-to-device copy failed")
    }

    pub fn write(&self, dst: &mut CudaSlice<f32>, values: &[f32]) {
        self.stream
            .memcpy_htod(values, dst)
            .expect("host-to-device copy failed")
    }

    pub fn download(&self, src: &CudaSlice<f32>) -> Vec<f32> {
        self.stream.clone_dtoh(src).expect("device-to-host copy failed")
    }

    pub fn synchronize(&self) {
        self.stream.synchronize().expect("CUDA stream synchronisation failed")
    }
}
