//! Shapes, spans and tensors. A tensor is a shape plus storage on one device (host memory or a
//! CUDA allocation). Tensors know nothing of ops; `device/` allocates and moves them, `ops/` computes.

use cudarc::driver::CudaSlice;
use std::fmt;
use std::ops::Range;

/// An NCHW shape. Vectors (per-channel statistics, parameters) use `Shape::vec(len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    pub const fn vec(len: usize) -> Self {
        Shape::new(1, len, 1, 1)
    }
    pub const fn numel(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements in one image plane (H·W).
    pub const fn hw(&self) -> usize {
        self.h * self.w
    }
    /// Elements in one sample (C·H·W).
    pub const fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
    pub const fn with_c(&self, c: usize) -> Self {
        Shape::new(self.n, c, self.h, self.w)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}x{}", self.n, self.c, self.h, self.w)
    }
}

/// Where one parameter (or buffer) lives inside a network's flat buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub off: usize,
    pub len: usize,
}

impl Span {
    pub const fn range(&self) -> Range<usize> {
        self.off..self.off + self.len
    }
}

/// Memory holding f32 values on one device.
pub enum Storage {
    Cpu(Vec<f32>),
    Cuda(CudaSlice<f32>),
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Host values. Panics on a CUDA buffer: a model lives on one device, so reaching this on the
    /// wrong one is a bug in the caller, not a user error.
    pub fn cpu(&self) -> &[f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(_) => panic!("expected a host buffer, found a CUDA buffer"),
        }
    }
    pub fn cpu_mut(&mut self) -> &mut [f32] {
        match self {
            Storage::Cpu(v) => v,
            Storage::Cuda(_) => panic!("expected a host buffer, found a CUDA buffer"),
        }
    }
    pub fn cuda(&self) -> &CudaSlice<f32> {
        match self {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => panic!("expected a CUDA buffer, found a host buffer"),
        }
    }
    pub fn cuda_mut(&mut self) -> &mut CudaSlice<f32> {
        match self {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => panic!("expected a CUDA buffer, found a host buffer"),
        }
    }
}

/// An NCHW f32 tensor on one device.
pub struct Tensor {
    pub shape: Shape,
    pub data: Storage,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    pub fn cpu(&self) -> &[f32] {
        self.data.cpu()
    }
    pub fn cpu_mut(&mut self) -> &mut [f32] {
        self.data.cpu_mut()
    }
    pub fn cuda(&self) -> &CudaSlice<f32> {
        self.data.cuda()
    }
    pub fn cuda_mut(&mut self) -> &mut CudaSlice<f32> {
        self.data.cuda_mut()
    }
}
