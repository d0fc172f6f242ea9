//! The backend abstraction. A `Device` is where tensors live and ops run: the host (`cpu.rs`, the
//! reference) or one CUDA GPU (`cuda.rs`, our kernels). Ops dispatch on it; models never name one.

pub mod cpu;
pub mod cuda;
pub mod emu;
pub mod precision;
pub mod ptx;
pub mod step_values;

use crate::tensor::{Shape, Storage, Tensor};
use anyhow::{bail, Result};
use std::sync::Arc;

pub use cuda::CudaBackend;
pub use precision::{ConvVariant, Precision};

#[derive(Clone)]
pub enum Device {
    Cpu,
    Cuda(Arc<CudaBackend>),
}

impl Device {
    /// `auto | cpu | cuda | cuda:N | cuda-emu[:memcheck|:racecheck]`. `auto` takes GPU 0 when it
    /// can and otherwise falls back to the CPU, printing one line that says why; `cuda` fails with
    /// that reason instead. `cuda-emu` is the emulated CUDA device (device/emu): our kernels run on
    /// the CPU through the same driver calls, for testing without a GPU.
    /// A CUDA device starts with the conv variant of `PIX2PIX_CONV_VARIANT` (v1 fp32 when unset).
    pub fn parse(spec: &str) -> Result<Device> {
        let dev = Device::parse_spec(spec)?;
        if let (Device::Cuda(c), Some(v)) = (&dev, ConvVariant::from_env()?) {
            c.set_conv_variant(v)?;
        }
        Ok(dev)
    }

    fn parse_spec(spec: &str) -> Result<Device> {
        if let Some(mode) = emu::Mode::from_device(spec) {
            emu::activate(mode)?;
            return Ok(Device::Cuda(CudaBackend::new(0)?));
        }
        if spec.starts_with("cuda-emu") {
            bail!("unknown emulated device {spec:?}: expected cuda-emu, cuda-emu:memcheck or cuda-emu:racecheck");
        }
        match spec {
            "cpu" => Ok(Device::Cpu),
            "auto" => match CudaBackend::new(0) {
                Ok(c) => Ok(Device::Cuda(c)),
                Err(e) => {
                    eprintln!("device: using the CPU ({e:#})");
                    Ok(Device::Cpu)
                }
            },
            "cuda" => Ok(Device::Cuda(CudaBackend::new(0)?)),
            s if s.starts_with("cuda:") => {
                let n: usize = s[5..]
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad device {s:?}: expected cuda:N with N a GPU index"))?;
                Ok(Device::Cuda(CudaBackend::new(n)?))
            }
            _ => bail!("unknown device {spec:?}: expected auto, cpu, cuda, cuda:N or cuda-emu"),
        }
    }

    /// Selects how this device's convolutions multiply (`--precision`). The CPU reference
    /// computes in fp32 only.
    pub fn set_precision(&self, p: Precision) -> Result<()> {
        match self {
            Device::Cuda(c) => c.set_precision(p),
            Device::Cpu if p == Precision::Fp32 => Ok(()),
            Device::Cpu => bail!("--precision {p} is for CUDA devices; the CPU reference computes in fp32"),
        }
    }

    /// Selects the conv kernel-lab variant (and with it the precision); the CPU has only v1.
    pub fn set_conv_variant(&self, v: ConvVariant) -> Result<()> {
        match self {
            Device::Cuda(c) => c.set_conv_variant(v),
            Device::Cpu if v == ConvVariant::V1 => Ok(()),
            Device::Cpu => bail!("conv variant {v} is for CUDA devices; the CPU reference computes in fp32"),
        }
    }

    /// The conv kernel-lab variant in use (v1 on the CPU).
    pub fn conv_variant(&self) -> ConvVariant {
        match self {
            Device::Cuda(c) => c.conv_variant(),
            Device::Cpu => ConvVariant::V1,
        }
    }

    /// Runs two independent pieces of work: side by side on the CPU (rayon's `join`; the ops
    /// inside still split over threads that are idle), one after the other, `a` first, on a CUDA
    /// device (one stream). Models join only work on disjoint state, whose results do not depend
    /// on which runs first, so every device and thread count computes the same thing.
    pub fn join<A: Send, B: Send>(&self, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
        match self {
            Device::Cpu => rayon::join(a, b),
            Device::Cuda(_) => {
                let ra = a();
                (ra, b())
            }
        }
    }

    /// The conv precision in use (fp32 on the CPU).
    pub fn precision(&self) -> Precision {
        match self {
            Device::Cuda(c) => c.precision(),
            Device::Cpu => Precision::Fp32,
        }
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// A human-readable name ("cpu (2 threads)", "cuda:0 NVIDIA H200 (sm_90, PTX sm_90)").
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Cuda(c) => c.describe(),
        }
    }

    /// Zero-filled storage of `len` floats.
    pub fn zeros(&self, len: usize) -> Storage {
        match self {
            Device::Cpu => Storage::Cpu(vec![0.0; len]),
            Device::Cuda(c) => Storage::Cuda(c.alloc_zeros(len)),
        }
    }

    pub fn zeros_tensor(&self, shape: Shape) -> Tensor {
        Tensor {
            shape,
            data: self.zeros(shape.numel()),
        }
    }

    /// Copies host values to this device.
    pub fn upload(&self, values: &[f32]) -> Storage {
        match self {
            Device::Cpu => Storage::Cpu(values.to_vec()),
            Device::Cuda(c) => Storage::Cuda(c.upload(values)),
        }
    }

    pub fn upload_tensor(&self, shape: Shape, values: &[f32]) -> Tensor {
        assert_eq!(
            shape.numel(),
            values.len(),
            "upload of {} values into {shape}",
            values.len()
        );
        Tensor {
            shape,
            data: self.upload(values),
        }
    }

    /// Overwrites existing storage with host values (same length), without reallocating.
    pub fn write(&self, dst: &mut Storage, values: &[f32]) {
        if values.is_empty() {
            // An empty CUDA storage holds one unused element (a zero-size allocation is refused).
            return;
        }
        assert_eq!(dst.len(), values.len());
        match dst {
            Storage::Cpu(v) => v.copy_from_slice(values),
            Storage::Cuda(s) => {
                let Device::Cuda(c) = self else {
                    panic!("CUDA buffer written through the CPU device")
                };
                c.write(s, values)
            }
        }
    }

    /// Copies storage back to the host (synchronises the stream on CUDA).
    pub fn download(&self, src: &Storage) -> Vec<f32> {
        match src {
            Storage::Cpu(v) => v.clone(),
            Storage::Cuda(s) => {
                let Device::Cuda(c) = self else {
                    panic!("CUDA buffer read through the CPU device")
                };
                c.download(s)
            }
        }
    }

    /// Waits for all queued work (a no-op on the CPU).
    pub fn synchronize(&self) {
        if let Device::Cuda(c) = self {
            c.synchronize();
        }
    }
}

/// Storage holding a copy of `src` on `dst` (download + upload); used to move weights between devices.
pub fn transfer(src_dev: &Device, src: &Storage, dst_dev: &Device) -> Storage {
    dst_dev.upload(&src_dev.download(src))
}
