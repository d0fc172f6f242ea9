//! Values that change from one training step to the next while the kernels that read them do
//! not: Adam's bias-corrected step sizes, dropout seeds. Kernels read them from device memory,
//! not from their launch arguments, so a step captured once as a CUDA graph replays with each
//! step's values: the host writes them (`set`) before the step, outside any capture. On the CPU
//! the ops read the host copy.

use super::Device;
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};

pub struct StepValues<T> {
    host: Vec<T>,
    dev: Option<CudaSlice<T>>,
}

impl<T: DeviceRepr + ValidAsZeroBits + Copy + Default + Unpin> StepValues<T> {
    /// `len` values, zero until the first `set`.
    pub fn new(dev: &Device, len: usize) -> Self {
        let dev = match dev {
            Device::Cpu => None,
            Device::Cuda(c) => Some(
                c.stream
                    .alloc_zeros::<T>(len.max(1))
                    .unwrap_or_else(|e| panic!("allocating {len} step values: {}", super::cuda::err_str(e))),
            ),
        };
        StepValues {
            host: vec![T::default(); len],
            dev,
        }
    }

    /// Replaces the values (a host→device copy on CUDA, queued on the stream before the work that
    /// reads them). Not allowed inside a stream capture: call it before the step.
    pub fn set(&mut self, dev: &Device, values: &[T]) {
        assert_eq!(values.len(), self.host.len(), "step values: length");
        self.host.copy_from_slice(values);
        if let (Device::Cuda(c), Some(d)) = (dev, self.dev.as_mut()) {
            c.stream
                .memcpy_htod(values, d)
                .unwrap_or_else(|e| panic!("writing step values: {}", super::cuda::err_str(e)));
        }
    }

    /// The values last `set` (what the CPU ops use).
    pub fn host(&self) -> &[T] {
        &self.host
    }

    /// Every value in device memory, as a view for a kernel argument.
    pub fn cuda_all(&self) -> CudaView<'_, T> {
        let d = self.dev.as_ref().expect("step values on the CPU device");
        d.slice(..self.host.len().max(1))
    }

    /// Value `i` in device memory, as a one-element view for a kernel argument.
    pub fn cuda(&self, i: usize) -> CudaView<'_, T> {
        assert!(i < self.host.len(), "step value {i} of {}", self.host.len());
        self.dev
            .as_ref()
            .expect("step values on the CPU device")
            .slice(i..i + 1)
    }
}
