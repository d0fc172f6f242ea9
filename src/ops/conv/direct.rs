//! A direct CPU path for convolutions with few output channels, stride 1 and no padding: the
//! ResNet generator's head (ReflectionPad(3) → Conv 7×7 ngf→3, whose padding is the reflection pad
//! before it). Through im2col its patch matrix is [ngf·49, H·W] (205 MB at 128², 64 channels) for a
//! GEMM with M = 3, so the im2col path is bound by writing and reading that matrix; here every
//! output row is a sum of shifted input rows and nothing is materialised.
//!
//! With s = 1, p = 0 (ho = h − k + 1, wo = w − k + 1), for every sample:
//! - fwd:   y[co, oh, :]   (+)= Σ_{ci,ki,kj} W[co, ci, ki, kj] · x[ci, oh + ki, kj .. kj + wo]
//! - dgrad: dx[ci, ih, :]  (+)= Σ_{co,a,b} W[co, ci, k−1−a, k−1−b] · dyp[co, ih + a, b .. b + w]
//!   (dyp: dy with k − 1 zeros on every side)
//! - wgrad: dW[co, ci, ki, kj] += Σ_{oh} ⟨dy[co, oh, :], x[ci, oh + ki, kj .. kj + wo]⟩
//!
//! fwd and dgrad are both a "valid" correlation, out[o, r, c] (+)= Σ_{i,a,b} K[o, i, a, b] ·
//! in[i, r + a, c + b]: fwd with in = x and K = W; dgrad with in = dy zero-padded by k − 1 and
//! K[ci, co, a, b] = W[co, ci, k−1−a, k−1−b] (a gather, so every output element is written once).
//! [`Corr`] computes a tile of up to 4 output channels × 64 columns with its sums in registers,
//! each input vector loaded once for all of them; wgrad keeps 64 lanes of running sums per weight
//! over a whole plane before it reduces them.
//!
//! The loops are fixed-size array arithmetic that LLVM unrolls and vectorises; `simd!` (mod.rs) compiles
//! them for AVX-512 or AVX2 when the CPU has it (the crate's baseline x86-64 target has only SSE2).

use super::im2col::with_flipped;
use super::ConvProblem;
use rayon::prelude::*;

/// At most this many output channels take the direct path.
pub(super) const MAX_COUT: usize = 4;

/// Whether `pb` takes the direct path.
pub(super) fn applies(pb: &ConvProblem) -> bool {
    pb.cout <= MAX_COUT && pb.s == 1 && pb.p == 0
}

/// A valid correlation of one sample: out[o, r, c] = Σ_{i,a,b} kern[o, i, a, b] · inp[i, r + a, c + b]
/// for r < in_h − k + 1, c < in_w − k + 1.
struct Corr<'a> {
    /// [ic, in_h, in_w].
    inp: &'a [f32],
    ic: usize,
    in_h: usize,
    in_w: usize,
    /// [oc, ic, k, k].
    kern: &'a [f32],
    k: usize,
}

impl Corr<'_> {
    fn out_h(&self) -> usize {
        self.in_h - self.k + 1
    }
    fn out_w(&self) -> usize {
        self.in_w - self.k + 1
    }

    /// The sums of output channels o0 .. o0 + OB, row r, columns x0 .. x0 + T (fused
    /// multiply-adds: the same rounding on every instruction set).
    #[inline(always)]
    fn tile<const OB: usize, const T: usize>(&self, o0: usize, r: usize, x0: usize) -> [[f32; T]; OB] {
        let (k, kk, plane) = (self.k, self.k * self.k, self.in_h * self.in_w);
        assert!(o0 + OB <= self.kern.len() / (self.ic * kk) && r + k <= self.in_h && x0 + T + k - 1 <= self.in_w);
        assert!(self.inp.len() >= self.ic * plane);
        let mut acc = [[0f32; T]; OB];
        for i in 0..self.ic {
            let taps: [*const f32; OB] = std::array::from_fn(|o| self.kern[((o0 + o) * self.ic + i) * kk..].as_ptr());
            for a in 0..k {
                let row = self.inp[i * plane + (r + a) * self.in_w..].as_ptr();
                for b in 0..k {
                    // SAFETY: x0 + b + T ≤ in_w and (o0 + o, i, a, b) is inside kern (asserted above),
                    // so both reads stay inside their row and weight block.
                    let src = unsafe { &*(row.add(x0 + b) as *const [f32; T]) };
                    for o in 0..OB {
                        let wv = unsafe { *taps[o].add(a * k + b) };
                        for l in 0..T {
                            acc[o][l] = wv.mul_add(src[l], acc[o][l]);
                        }
                    }
                }
            }
        }
        acc
    }
}

/// Row r of output channels o0 .. o0 + OB into `rows` (or added to them with `accumulate`): tiles
/// of 64 columns, then 16, then single columns.
#[inline(always)]
fn corr_row<const OB: usize>(c: &Corr, o0: usize, r: usize, rows: [&mut [f32]; OB], accumulate: bool) {
    #[inline(always)]
    fn put<const OB: usize, const T: usize>(acc: [[f32; T]; OB], rows: &mut [&mut [f32]; OB], x0: usize, acc_: bool) {
        for (row, acc) in rows.iter_mut().zip(&acc) {
            let dst = &mut row[x0..x0 + T];
            if acc_ {
                dst.iter_mut().zip(acc).for_each(|(d, &v)| *d += v);
            } else {
                dst.copy_from_slice(acc);
            }
        }
    }
    let (ow, mut rows, mut x0) = (c.out_w(), rows, 0);
    while x0 + 64 <= ow {
        put(c.tile::<OB, 64>(o0, r, x0), &mut rows, x0, accumulate);
        x0 += 64;
    }
    while x0 + 16 <= ow {
        put(c.tile::<OB, 16>(o0, r, x0), &mut rows, x0, accumulate);
        x0 += 16;
    }
    if x0 < ow && ow >= 16 {
        // The last < 16 columns: a 16-wide tile ending at the row's end, of which only the
        // columns not yet written are kept.
        let acc = c.tile::<OB, 16>(o0, r, ow - 16);
        let keep = 16 - (ow - x0);
        for (row, acc) in rows.iter_mut().zip(&acc) {
            let dst = &mut row[x0..ow];
            if accumulate {
                dst.iter_mut().zip(&acc[keep..]).for_each(|(d, &v)| *d += v);
            } else {
                dst.copy_from_slice(&acc[keep..]);
            }
        }
        x0 = ow;
    }
    while x0 < ow {
        put(c.tile::<OB, 1>(o0, r, x0), &mut rows, x0, accumulate);
        x0 += 1;
    }
}

/// The base of an output buffer whose disjoint rows parallel tasks write.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: only used by `correlate` to hand each task rows no other task touches.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The `len` elements from `offset`.
    ///
    /// # Safety
    /// They must lie inside the buffer, and no other live slice may overlap them.
    unsafe fn slice<'a>(self, offset: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(offset), len)
    }
}

/// out (+)= the correlation of every sample: `corr(s)` is sample s, `out` is [n, oc, out_h,
/// out_w]. Tasks are (sample, block of ≤ 4 output channels, row), in parallel.
fn correlate<'a>(n: usize, oc: usize, corr: impl Fn(usize) -> Corr<'a> + Sync, out: &mut [f32], accumulate: bool) {
    let (oh, ow) = (corr(0).out_h(), corr(0).out_w());
    let blocks = oc.div_ceil(4);
    assert!(out.len() >= n * oc * oh * ow, "direct conv: output too small");
    let base = Out(out.as_mut_ptr());
    (0..n * blocks * oh).into_par_iter().for_each(|task| {
        let (s, b, r) = (task / (blocks * oh), task / oh % blocks, task % oh);
        let (c, o0) = (&corr(s), b * 4);
        // SAFETY: task (s, b, r) takes row r of planes s·oc + o0 .. s·oc + o0 + 4 (at most oc):
        // every row of `out` belongs to exactly one task, and all lie inside `out` (asserted).
        let row = |o: usize| unsafe { base.slice(((s * oc + o0 + o) * oh + r) * ow, ow) };
        macro_rules! go {
            ($ob:literal) => {{
                let rows: [&mut [f32]; $ob] = std::array::from_fn(row);
                simd!(corr_row::<$ob>(c: &Corr, o0: usize, r: usize, rows: [&mut [f32]; $ob], accumulate: bool))
            }};
        }
        match oc - o0 {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
    });
}

/// Running sums of one weight's gradient: 64 lanes (4 independent vectors), 16 lanes, and the
/// ≤ 15 last columns of each row in f64.
#[derive(Clone, Copy)]
struct Lanes {
    a64: [f32; 64],
    a16: [f32; 16],
    tail: f64,
}

impl Lanes {
    const ZERO: Lanes = Lanes {
        a64: [0.0; 64],
        a16: [0.0; 16],
        tail: 0.0,
    };
    /// Adds Σ_ow g[oh, ow] · x[oh + ki, ow + kj] for the rows oh in `rows`.
    #[inline(always)]
    fn add_rows(
        &mut self,
        pb: &ConvProblem,
        g: &[f32],
        x: &[f32],
        (ki, kj): (usize, usize),
        rows: std::ops::Range<usize>,
    ) {
        let wo = pb.wo;
        let (n64, n16) = (wo / 64 * 64, wo / 16 * 16);
        let (mut a64, mut a16) = (self.a64, self.a16);
        for oh in rows {
            let gr = &g[oh * wo..(oh + 1) * wo];
            let xr = &x[(oh + ki) * pb.w + kj..][..wo];
            for (gc, xc) in gr[..n64].chunks_exact(64).zip(xr[..n64].chunks_exact(64)) {
                for l in 0..64 {
                    a64[l] += gc[l] * xc[l];
                }
            }
            for (gc, xc) in gr[n64..n16].chunks_exact(16).zip(xr[n64..n16].chunks_exact(16)) {
                for l in 0..16 {
                    a16[l] += gc[l] * xc[l];
                }
            }
            self.tail += gr[n16..]
                .iter()
                .zip(&xr[n16..])
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>();
        }
        (self.a64, self.a16) = (a64, a16);
    }
    fn sum(&self) -> f64 {
        self.a64.iter().chain(&self.a16).map(|&v| v as f64).sum::<f64>() + self.tail
    }
}

/// The k² × cout weight-gradient sums of input channel `ci` over one sample, added to
/// out[co·k² + ki·k + kj]. Blocks of 8 output rows: a block's dy rows and x rows stay in L1
/// while every weight's running sums take their turn over it.
#[inline(always)]
fn wgrad_channel(pb: &ConvProblem, x: &[f32], dy: &[f32], ci: usize, out: &mut [f64]) {
    const ROWS: usize = 8;
    let (k, plane) = (pb.k, pb.ho * pb.wo);
    let xp = &x[ci * pb.h * pb.w..(ci + 1) * pb.h * pb.w];
    let mut lanes = vec![Lanes::ZERO; pb.cout * k * k];
    for r0 in (0..pb.ho).step_by(ROWS) {
        let rows = r0..(r0 + ROWS).min(pb.ho);
        for co in 0..pb.cout {
            let g = &dy[co * plane..(co + 1) * plane];
            for ki in 0..k {
                for kj in 0..k {
                    lanes[(co * k + ki) * k + kj].add_rows(pb, g, xp, (ki, kj), rows.clone());
                }
            }
        }
    }
    for (o, l) in out.iter_mut().zip(&lanes) {
        *o += l.sum();
    }
}

/// y (+)= conv(x, W), every sample.
pub(super) fn fwd(pb: &ConvProblem, x: &[f32], w: &[f32], y: &mut [f32], accumulate: bool) {
    let xs = pb.x_len();
    let corr = |s: usize| Corr {
        inp: &x[s * xs..(s + 1) * xs],
        ic: pb.cin,
        in_h: pb.h,
        in_w: pb.w,
        kern: w,
        k: pb.k,
    };
    correlate(pb.n, pb.cout, corr, y, accumulate);
}

/// dx (+)= the input gradient of conv(x, W) for dy, every sample: the correlation of dy padded
/// by k − 1 with the flipped, transposed weight.
pub(super) fn dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    let (k, e) = (pb.k, pb.k - 1);
    let (ph, pw) = (pb.ho + 2 * e, pb.wo + 2 * e);
    let mut dyp = vec![0f32; pb.n * pb.cout * ph * pw];
    for (dst, src) in dyp.chunks_mut(ph * pw).zip(dy.chunks(pb.ho * pb.wo)) {
        for (oh, row) in src.chunks(pb.wo).enumerate() {
            dst[(oh + e) * pw + e..][..pb.wo].copy_from_slice(row);
        }
    }
    let ps = pb.cout * ph * pw;
    with_flipped(pb.cin, pb.cout, k, w, |wf| {
        let corr = |s: usize| Corr {
            inp: &dyp[s * ps..(s + 1) * ps],
            ic: pb.cout,
            in_h: ph,
            in_w: pw,
            kern: wf,
            k,
        };
        correlate(pb.n, pb.cin, corr, dx, accumulate);
    })
}

/// dW += the weight gradient of conv(x, W) for dy, summed over samples (in f64 per input
/// channel); input channels in parallel.
pub(super) fn wgrad(pb: &ConvProblem, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let kk = pb.k * pb.k;
    let (xs, ys) = (pb.x_len(), pb.y_len());
    let sums: Vec<Vec<f64>> = (0..pb.cin)
        .into_par_iter()
        .map(|ci| {
            let mut out = vec![0f64; pb.cout * kk];
            for n in 0..pb.n {
                let (x, dy) = (&x[n * xs..(n + 1) * xs], &dy[n * ys..(n + 1) * ys]);
                let out = &mut out[..];
                simd!(wgrad_channel(pb: &ConvProblem, x: &[f32], dy: &[f32], ci: usize, out: &mut [f64]));
            }
            out
        })
        .collect();
    for (ci, s) in sums.iter().enumerate() {
        for co in 0..pb.cout {
            let d = &mut dw[(co * pb.cin + ci) * kk..(co * pb.cin + ci + 1) * kk];
            for (d, &v) in d.iter_mut().zip(&s[co * kk..(co + 1) * kk]) {
                *d += v as f32;
            }
        }
    }
}
