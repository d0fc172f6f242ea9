//! Data movement: fill, copy, add, the channel concat / split used by U-Net skips and the
//! conditional discriminator's input, and reflection padding (the ResNet generator's).
//! CUDA twin: kernels/tensor.cu.

use crate::device::cpu::{zip2_map, zip_map};
use crate::device::cuda::launch;
use crate::device::step_values::StepValues;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Shape, Storage, Tensor};
use rayon::prelude::*;

/// Sets every element of `dst` to `value`.
pub fn fill(dev: &Device, dst: &mut Storage, value: f32) {
    match dev {
        Device::Cpu => crate::device::cpu::fill(dst.cpu_mut(), value),
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

/// Copies sample `i` of `src` into sample `j` of `dst` (both with the same C×H×W): the image pool's
/// store and fetch.
pub fn copy_sample(dev: &Device, src: &Tensor, i: usize, dst: &mut Tensor, j: usize) {
    let (s, d) = (src.shape, dst.shape);
    assert!(
        s.c == d.c && s.h == d.h && s.w == d.w && i < s.n && j < d.n,
        "copy_sample: sample {i} of {s} into sample {j} of {d}"
    );
    let len = s.chw();
    match dev {
        Device::Cpu => dst.cpu_mut()[j * len..(j + 1) * len].copy_from_slice(&src.cpu()[i * len..(i + 1) * len]),
        Device::Cuda(c) => {
            let from = src.cuda().slice(i * len..(i + 1) * len);
            let mut to = dst.cuda_mut().slice_mut(j * len..(j + 1) * len);
            let (one, ch, zero, hw, acc) = (1i32, s.c as i32, 0i32, s.hw() as i64, 0i32);
            let cfg = c.cfg_1d(len);
            launch!(
                c,
                "tensor",
                "copy_channels",
                cfg,
                &from,
                &mut to,
                &one,
                &ch,
                &ch,
                &zero,
                &zero,
                &ch,
                &hw,
                &acc
            );
        }
    }
}

/// The image pool's copies for one batch (models::image_pool): for each sample b in order,
/// out[b] = pool[src] (or fake[b] when src < 0), then pool[store] = fake[b] (when store ≥ 0),
/// with (src, store) = plan[2b], plan[2b + 1]. A later sample sees an earlier one's store. The
/// plan is read from memory, so a captured step replays with each step's plan.
pub fn pool_exchange(dev: &Device, plan: &StepValues<i32>, fake: &Tensor, pool: &mut Tensor, out: &mut Tensor) {
    let (f, p) = (fake.shape, pool.shape);
    assert!(
        f == out.shape && f.c == p.c && f.h == p.h && f.w == p.w && plan.host().len() == 2 * f.n,
        "pool_exchange: fake {f}, pool {p}, out {}, plan of {}",
        out.shape,
        plan.host().len()
    );
    assert!(
        plan.host().iter().all(|&i| i < p.n as i32),
        "pool_exchange: plan names a slot beyond the pool's {}",
        p.n
    );
    let chw = f.chw();
    match dev {
        Device::Cpu => {
            let (fake, pool, out) = (fake.cpu(), pool.cpu_mut(), out.cpu_mut());
            for (b, step) in plan.host().chunks(2).enumerate() {
                let (src, store) = (step[0], step[1]);
                let fb = &fake[b * chw..(b + 1) * chw];
                if src >= 0 {
                    let s = src as usize * chw;
                    out[b * chw..(b + 1) * chw].copy_from_slice(&pool[s..s + chw]);
                } else {
                    out[b * chw..(b + 1) * chw].copy_from_slice(fb);
                }
                if store >= 0 {
                    let s = store as usize * chw;
                    pool[s..s + chw].copy_from_slice(fb);
                }
            }
        }
        Device::Cuda(c) => {
            let (n, chw) = (f.n as i32, chw as i64);
            let cfg = c.cfg_1d(f.chw());
            let plan = plan.cuda_all();
            launch!(
                c,
                "tensor",
                "pool_exchange",
                cfg,
                fake.cuda(),
                pool.cuda_mut(),
                out.cuda_mut(),
                &plan,
                &n,
                &chw
            );
        }
    }
}

/// out = a + b (the ResNet block's residual add; its backward hands dy to both inputs).
pub fn add(dev: &Device, a: &Tensor, b: &Tensor, out: &mut Tensor) {
    assert!(a.shape == b.shape && a.shape == out.shape, "add shapes");
    match dev {
        Device::Cpu => zip2_map(out.cpu_mut(), a.cpu(), b.cpu(), |o, x, y| *o = x + y),
        Device::Cuda(c) => cuda_add(c, a, b, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Reflection padding, PyTorch `reflect` semantics (nn.ReflectionPad2d): the border is mirrored
// without repeating the edge pixel, so padded index t of an axis of length n reads
// t < 0 → −t, t ≥ n → 2(n−1) − t. PyTorch requires pad < n on both axes.

/// The input index that padded position `o` (0 ≤ o < n + 2p) of an axis of length n reads.
pub fn reflect_index(o: usize, n: usize, p: usize) -> usize {
    let t = o as isize - p as isize;
    let last = n as isize - 1;
    let r = if t < 0 {
        -t
    } else if t > last {
        2 * last - t
    } else {
        t
    };
    r as usize
}

/// The padded positions that read input index i, ascending (at most three: the left mirror, the
/// pixel itself, the right mirror). The backward gathers its sum in this order on both devices.
pub fn reflect_sources(i: usize, n: usize, p: usize) -> impl Iterator<Item = usize> {
    let left = (i >= 1 && i <= p).then(|| p - i);
    let right = (i + 2 <= n && i + 1 + p >= n).then(|| 2 * (n - 1) - i + p);
    left.into_iter().chain(std::iter::once(i + p)).chain(right)
}

fn check_reflect(pad: usize, x: Shape, y: Shape) {
    assert!(
        pad < x.h && pad < x.w,
        "reflection pad {pad} needs an input larger than the pad (input {x})"
    );
    assert!(
        y.n == x.n && y.c == x.c && y.h == x.h + 2 * pad && y.w == x.w + 2 * pad,
        "reflection pad {pad}: input {x} output {y} do not fit"
    );
}

/// y = ReflectionPad2d(pad)(x).
pub fn reflection_pad_forward(dev: &Device, pad: usize, x: &Tensor, y: &mut Tensor) {
    check_reflect(pad, x.shape, y.shape);
    match dev {
        Device::Cpu => {
            let (s, ys) = (x.shape, y.shape);
            let xv = x.cpu();
            let cols: Vec<usize> = (0..ys.w).map(|o| reflect_index(o, s.w, pad)).collect();
            y.data
                .cpu_mut()
                .par_chunks_mut(ys.hw())
                .enumerate()
                .for_each(|(plane, out)| {
                    let src = &xv[plane * s.hw()..(plane + 1) * s.hw()];
                    for (oh, row) in out.chunks_mut(ys.w).enumerate() {
                        let ih = reflect_index(oh, s.h, pad);
                        let src_row = &src[ih * s.w..(ih + 1) * s.w];
                        row.iter_mut().zip(&cols).for_each(|(o, &iw)| *o = src_row[iw]);
                    }
                });
        }
        Device::Cuda(c) => cuda_reflect(c, "reflect_pad_forward", pad, x.shape, x, y, false),
    }
}

/// dx (+)= the reflection pad's adjoint of dy: each input pixel gathers the padded positions that
/// read it, rows then columns ascending, summed in f32 in that order (identical on both devices).
pub fn reflection_pad_backward(dev: &Device, pad: usize, dy: &Tensor, dx: &mut Tensor, accumulate: bool) {
    check_reflect(pad, dx.shape, dy.shape);
    match dev {
        Device::Cpu => {
            let (s, ys) = (dx.shape, dy.shape);
            let dyv = dy.cpu();
            let cols: Vec<Vec<usize>> = (0..s.w).map(|i| reflect_sources(i, s.w, pad).collect()).collect();
            // Columns pad+1 .. w−pad−1 have one source each (iw + pad): summed as one contiguous
            // run per source row; the ≤ 2·pad + 2 edge columns gather theirs one by one. Per pixel
            // the order stays rows then columns ascending, from 0.0, so the sums are unchanged.
            let (lo, hi) = (pad + 1, s.w.saturating_sub(pad + 1).max(pad + 1));
            dx.data
                .cpu_mut()
                .par_chunks_mut(s.hw())
                .enumerate()
                .for_each(|(plane, out)| {
                    let src = &dyv[plane * ys.hw()..(plane + 1) * ys.hw()];
                    let mut acc = vec![0f32; s.w];
                    for (ih, row) in out.chunks_mut(s.w).enumerate() {
                        acc.fill(0.0);
                        for oh in reflect_sources(ih, s.h, pad) {
                            let srow = &src[oh * ys.w..(oh + 1) * ys.w];
                            for (a, &v) in acc[lo..hi].iter_mut().zip(&srow[lo + pad..hi + pad]) {
                                *a += v;
                            }
                            for iw in (0..lo.min(s.w)).chain(hi..s.w) {
                                for &ow in &cols[iw] {
                                    acc[iw] += srow[ow];
                                }
                            }
                        }
                        if accumulate {
                            row.iter_mut().zip(&acc).for_each(|(o, &a)| *o += a);
                        } else {
                            row.copy_from_slice(&acc);
                        }
                    }
                });
        }
        Device::Cuda(c) => {
            let s = dx.shape;
            cuda_reflect(c, "reflect_pad_backward", pad, s, dy, dx, accumulate)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/tensor.cu)

fn cuda_add(c: &CudaBackend, a: &Tensor, b: &Tensor, out: &mut Tensor) {
    let n = a.numel() as i64;
    let cfg = c.cfg_1d(a.numel());
    launch!(c, "tensor", "tensor_add", cfg, a.cuda(), b.cuda(), out.cuda_mut(), &n);
}

/// Both reflection-pad kernels: (src, dst, planes, h, w, pad, accumulate) with h, w the unpadded size.
fn cuda_reflect(
    c: &CudaBackend,
    kernel: &'static str,
    pad: usize,
    unpadded: Shape,
    src: &Tensor,
    dst: &mut Tensor,
    accumulate: bool,
) {
    let total = dst.numel();
    let (planes, h, w) = ((unpadded.n * unpadded.c) as i64, unpadded.h as i32, unpadded.w as i32);
    let (p, acc) = (pad as i32, accumulate as i32);
    let cfg = c.cfg_1d(total);
    launch!(
        c,
        "tensor",
        kernel,
        cfg,
        src.cuda(),
        dst.cuda_mut(),
        &planes,
        &h,
        &w,
        &p,
        &acc
    );
}

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
