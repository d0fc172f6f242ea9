//! The CPU reference's patch matrix for conv and transposed conv: im2col, its adjoint col2im,
//! per-thread scratch buffers, the flipped weight of stride-1 dgrads, and the bias helpers. Used
//! by the CPU paths of `ops::conv` only.

use rayon::prelude::*;
use std::cell::RefCell;
use std::thread::LocalKey;

// im2col / col2im: the patch matrix of a C×H×W image for a k×k window with stride s and padding p
// is [C·k², Ho·Wo], row (c·k + ki)·k + kj, column oh·Wo + ow, value x[c, oh·s−p+ki, ow·s−p+kj].
// A band of it (output rows oh0 .. oh0 + ho, `Patches::band`) is the same matrix's columns
// oh0·Wo .. (oh0 + ho)·Wo, stored as its own [C·k², ho·Wo] matrix.

#[derive(Clone, Copy)]
pub(crate) struct Patches {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub ho: usize,
    pub wo: usize,
    /// The first output row (0 for the whole matrix; see `band`).
    pub oh0: usize,
}

impl Patches {
    pub fn rows(&self) -> usize {
        self.c * self.k * self.k
    }
    pub fn cols(&self) -> usize {
        self.ho * self.wo
    }
    /// The band of output rows oh0 .. oh0 + ho of this (whole) patch matrix.
    pub fn band(&self, oh0: usize, ho: usize) -> Patches {
        assert!(
            self.oh0 == 0 && oh0 + ho <= self.ho,
            "band {oh0}+{ho} of {} output rows",
            self.ho
        );
        Patches { oh0, ho, ..*self }
    }
    /// The output columns [lo, hi) whose input column ow·s + kj − p is inside the row (lo = hi
    /// when none is): the columns outside it read the zero padding.
    fn valid_run(&self, kj: usize) -> (usize, usize) {
        let lo = self.p.saturating_sub(kj).div_ceil(self.s).min(self.wo);
        let hi = (self.w + self.p)
            .saturating_sub(kj)
            .div_ceil(self.s)
            .min(self.wo)
            .max(lo);
        (lo, hi)
    }
}

pub(crate) fn im2col(g: Patches, x: &[f32], col: &mut [f32]) {
    let kk = g.k * g.k;
    let cols = g.cols();
    col[..g.rows() * cols]
        .par_chunks_mut(kk * cols)
        .enumerate()
        .for_each(|(c, rows)| {
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &mut rows[(ki * g.k + kj) * cols..(ki * g.k + kj + 1) * cols];
                    for oh in 0..g.ho {
                        let ih = ((g.oh0 + oh) * g.s + ki) as isize - g.p as isize;
                        let out = &mut row[oh * g.wo..(oh + 1) * g.wo];
                        if ih < 0 || ih >= g.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                        let (lo, hi) = g.valid_run(kj);
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        if hi > lo {
                            let first = lo * g.s + kj - g.p;
                            if g.s == 1 {
                                out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                            } else {
                                for (o, &v) in out[lo..hi].iter_mut().zip(src[first..].iter().step_by(g.s)) {
                                    *o = v;
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// Scatter-adds the patch matrix back into the image (the adjoint of im2col). Adds into `x`.
pub(crate) fn col2im_add(g: Patches, col: &[f32], x: &mut [f32]) {
    let kk = g.k * g.k;
    let cols = g.cols();
    x[..g.c * g.h * g.w]
        .par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(c, plane)| {
            let rows = &col[c * kk * cols..(c + 1) * kk * cols];
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &rows[(ki * g.k + kj) * cols..(ki * g.k + kj + 1) * cols];
                    for oh in 0..g.ho {
                        let ih = ((g.oh0 + oh) * g.s + ki) as isize - g.p as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let dst = &mut plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                        let src = &row[oh * g.wo..(oh + 1) * g.wo];
                        let (lo, hi) = g.valid_run(kj);
                        if hi > lo {
                            let first = lo * g.s + kj - g.p;
                            for (d, &v) in dst[first..].iter_mut().step_by(g.s).zip(&src[lo..hi]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

thread_local! {
    // Scratch, growable buffers per thread and purpose instead of one allocation per layer: the
    // patch matrix (or a wide-grid dy), and the flipped weight of a stride-1 dgrad, which is
    // alive while that dgrad's forward uses the patch matrix. A pool, not one buffer: while a
    // conv holds its scratch and waits inside a parallel GEMM, rayon may run another conv on the
    // same thread (work stealing, e.g. the other side of a `Device::join`), which then takes a
    // second buffer.
    static COL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static FLIPPED: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(key: &'static LocalKey<RefCell<Vec<Vec<f32>>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = key.with(|pool| pool.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.with(|pool| pool.borrow_mut().push(buf));
    r
}

/// `f` on this thread's patch-matrix scratch of `len` elements (contents unspecified).
pub(crate) fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch(&COL, len, f)
}

/// `f` on W[cout, cin, k, k] flipped and transposed: wf[ci, co, ·] = W[co, ci, ·] reversed
/// ((ki, kj) → (k−1−ki, k−1−kj) is index k²−1−i), the weight of a stride-1 input gradient run as
/// a forward. Built in this thread's scratch, blocks of input channels in parallel; each block
/// reads, per output channel, one contiguous run of W.
pub(crate) fn with_flipped<R>(cin: usize, cout: usize, k: usize, w: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    const BLOCK: usize = 16;
    let kk = k * k;
    with_scratch(&FLIPPED, w.len(), |wf| {
        wf.par_chunks_mut(BLOCK * cout * kk).enumerate().for_each(|(b, rows)| {
            for co in 0..cout {
                let src = &w[(co * cin + b * BLOCK) * kk..];
                for (r, row) in rows.chunks_mut(cout * kk).enumerate() {
                    let (s, d) = (&src[r * kk..(r + 1) * kk], &mut row[co * kk..(co + 1) * kk]);
                    for (i, d) in d.iter_mut().enumerate() {
                        *d = s[kk - 1 - i];
                    }
                }
            }
        });
        f(wf)
    })
}

pub(crate) fn add_bias(y: &mut [f32], bias: &[f32], hw: usize) {
    y.par_chunks_mut(hw)
        .enumerate()
        .for_each(|(i, plane)| plane.iter_mut().for_each(|v| *v += bias[i % bias.len()]));
}

/// db[c] += Σ over samples and pixels of dy[:, c]: each plane summed in f64 (planes in parallel),
/// then added in plane order, so the result does not depend on the thread count.
pub(crate) fn bias_grad_add(dy: &[f32], db: &mut [f32], c: usize, hw: usize) {
    let sums: Vec<f64> = dy
        .par_chunks(hw)
        .map(|plane| plane.iter().map(|&v| v as f64).sum::<f64>())
        .collect();
    for (i, s) in sums.into_iter().enumerate() {
        db[i % c] += s as f32;
    }
}
