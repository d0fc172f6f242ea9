//! Data movement: fill, copy, and the channel concat / split used by U-Net skips and the
//! conditional discriminator's input. CUDA twin: kernels/tensor.cu.

use crate::device::cpu::zip_map;
use crate::device::cuda::launch;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Storage, Tensor};

/// Sets every element of `dst` to `value`.
pub fn fill(dev: &Device, dst: &mut Storage, value: f32) {
    match dev {
        Device::Cpu => dst.cpu_mut().fill(value),
        Device::Cuda(c) => cuda_fill(c, dst, value),
    }
}

/// dst = src, or dst += src with `accumulate`.
pub fn copy(dev: &Device, src: &Tensor, dst: &mut Tensor, accumulate: bool) {
    assert_eq!(src.shape, dst.shape, "copy shapes");
    match dev {
        Device::Cpu => {
            if accumulate {
                zip_map(dst.cpu_mut(), src.cpu(), |d, s| *d += s)
            } else {
                dst.cpu_mut().copy_from_slice(src.cpu())
            }
        }
        Device::Cuda(c) => cuda_channels(c, src, dst, 0, 0, src.shape.c, accumulate),
    }
}

/// Writes `src` into channels [c0, c0 + src.c) of `dst` (one half of a channel concat).
pub fn insert_channels(dev: &Device, src: &Tensor, dst: &mut Tensor, c0: usize) {
    let (s, d) = (src.shape, dst.shape);
    assert!(
        s.n == d.n && s.h == d.h && s.w == d.w && c0 + s.c <= d.c,
        "insert_channels: {s} into {d} at {c0}"
    );
    match dev {
        Device::Cpu => {
            let (sv, dv) = (src.cpu(), dst.cpu_mut());
            for n in 0..s.n {
                dv[(n * d.c + c0) * d.hw()..(n * d.c + c0 + s.c) * d.hw()]
                    .copy_from_slice(&sv[n * s.chw()..(n + 1) * s.chw()]);
            }
        }
        Device::Cuda(c) => cuda_channels(c, src, dst, 0, c0, s.c, false),
    }
}

/// Reads channels [c0, c0 + dst.c) of `src` into `dst` (one half of a split, the concat's
/// backward), adding to what `dst` holds when `accumulate`.
pub fn extract_channels(dev: &Device, src: &Tensor, c0: usize, dst: &mut Tensor, accumulate: bool) {
    let (s, d) = (src.shape, dst.shape);
    assert!(
        s.n == d.n && s.h == d.h && s.w == d.w && c0 + d.c <= s.c,
        "extract_channels: {d} from {s} at {c0}"
    );
    match dev {
        Device::Cpu => {
            let (sv, dv) = (src.cpu(), dst.cpu_mut());
            for n in 0..s.n {
                let from = &sv[(n * s.c + c0) * s.hw()..(n * s.c + c0 + d.c) * s.hw()];
                let to = &mut dv[n * d.chw()..(n + 1) * d.chw()];
                if accumulate {
                    to.iter_mut().zip(from).for_each(|(t, &f)| *t += f);
                } else {
                    to.copy_from_slice(from);
                }
            }
        }
        Device::Cuda(c) => cuda_channels(c, src, dst, c0, 0, d.c, accumulate),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/tensor.cu)

fn cuda_fill(c: &CudaBackend, dst: &mut Storage, value: f32) {
    let n = dst.len() as i64;
    let cfg = c.cfg_1d(dst.len());
    launch!(c, "tensor", "tensor_fill", cfg, dst.cuda_mut(), &n, &value);
}

/// Copies (or adds) `count` channels of each sample from src channel `src_c0` to dst channel `dst_c0`.
fn cuda_channels(
    c: &CudaBackend,
    src: &Tensor,
    dst: &mut Tensor,
    src_c0: usize,
    dst_c0: usize,
    count: usize,
    accumulate: bool,
) {
    let (s, d) = (src.shape, dst.shape);
    let total = s.n * count * s.hw();
    if total == 0 {
        return;
    }
    let (n, src_c, dst_c) = (s.n as i32, s.c as i32, d.c as i32);
    let (src_c0, dst_c0, count) = (src_c0 as i32, dst_c0 as i32, count as i32);
    let (hw, acc) = (s.hw() as i64, accumulate as i32);
    let cfg = c.cfg_1d(total);
    launch!(
        c,
        "tensor",
        "copy_channels",
        cfg,
        src.cuda(),
        dst.cuda_mut(),
        &n,
        &src_c,
        &dst_c,
        &src_c0,
        &dst_c0,
        &count,
        &hw,
        &acc
    );
}
