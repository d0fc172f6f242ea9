//! The CUDA launchers of conv and convT (kernels/conv.cu): the three implicit GEMMs of a
//! [`ConvProblem`] (see `mod.rs` and the top of kernels/conv.cu), with split-K when the output has
//! too few tiles, reduced in a fixed order (deterministic). The variant (v1 fp32, v2 tf32, v3
//! bf16, v4 tf32 and v5 bf16 through cp.async, v6 bf16 and v7 tf32 on 128×128 tiles:
//! `CudaBackend::conv_variant`) picks the kernels' suffix and its tile the grid; split-K and the
//! workspace are the same for all seven (chosen from the shapes on 64×64 tiles), so the variants
//! differ only in how the tiles are staged and multiplied, and those of one precision give the
//! same results.

use super::{ConvParams, ConvProblem};
use crate::device::cuda::launch;
use crate::device::{ConvVariant, CudaBackend};
use crate::tensor::{Storage, Tensor};
use cudarc::driver::{CudaView, CudaViewMut};

/// Mirror of `struct ConvArgs` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvArgs {
    n: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    k: i32,
    s: i32,
    p: i32,
    splits: i32,
    kchunk: i32,
    accumulate: i32,
    has_bias: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl cudarc::driver::DeviceRepr for ConvArgs {}

/// The GEMM tile split-K is planned on (kernels/conv_tiles.cuh's BM = BN = 64, BK = 16; v6 and v7 run
/// 128×128 tiles over the same split), 256 threads a block for every variant.
const TILE: usize = 64;
const TILE_K: usize = 16;
/// Split-K aims at this many blocks (a function of the shapes only, so results do not depend on
/// the GPU model), with at least 8 K-steps per split, at most 64 splits and a bounded workspace.
const TARGET_BLOCKS: usize = 512;
const MAX_SPLITS: usize = 64;
const MAX_WORKSPACE: usize = 64 << 20;

impl ConvProblem {
    fn args(&self, splits: usize, kchunk: usize, accumulate: bool, has_bias: bool) -> ConvArgs {
        for v in [self.n * self.x_len(), self.n * self.y_len()] {
            assert!(
                v < i32::MAX as usize,
                "conv tensor of {v} elements is beyond the kernels' 32-bit indexing"
            );
        }
        ConvArgs {
            n: self.n as i32,
            cin: self.cin as i32,
            h: self.h as i32,
            w: self.w as i32,
            cout: self.cout as i32,
            ho: self.ho as i32,
            wo: self.wo as i32,
            k: self.k as i32,
            s: self.s as i32,
            p: self.p as i32,
            splits: splits as i32,
            kchunk: kchunk as i32,
            accumulate: accumulate as i32,
            has_bias: has_bias as i32,
        }
    }
}

/// One kernel of kernels/conv.cu in its seven variants: v1 (fp32), v2 (`_tf32`), v3 (`_bf16`),
/// v4 (`_tf32_async`), v5 (`_bf16_async`), v6 (`_bf16_128`), v7 (`_tf32_128`), indexed by
/// `ConvVariant::number() - 1`.
type Variants = [&'static str; 7];

// The kernels by name, spelled out (so a kernel's name leads to its launcher; tests/emu.rs checks
// that every .entry is named here), in the order of `ConvVariant::ALL` (the test below checks the
// suffixes against `ConvVariant::kernel_suffix`).
const FWD_K3: Variants = [
    "conv_fwd_k3",
    "conv_fwd_k3_tf32",
    "conv_fwd_k3_bf16",
    "conv_fwd_k3_tf32_async",
    "conv_fwd_k3_bf16_async",
    "conv_fwd_k3_bf16_128",
    "conv_fwd_k3_tf32_128",
];
const FWD_K4: Variants = [
    "conv_fwd_k4",
    "conv_fwd_k4_tf32",
    "conv_fwd_k4_bf16",
    "conv_fwd_k4_tf32_async",
    "conv_fwd_k4_bf16_async",
    "conv_fwd_k4_bf16_128",
    "conv_fwd_k4_tf32_128",
];
const FWD_K7: Variants = [
    "conv_fwd_k7",
    "conv_fwd_k7_tf32",
    "conv_fwd_k7_bf16",
    "conv_fwd_k7_tf32_async",
    "conv_fwd_k7_bf16_async",
    "conv_fwd_k7_bf16_128",
    "conv_fwd_k7_tf32_128",
];
const FWD_KX: Variants = [
    "conv_fwd_kx",
    "conv_fwd_kx_tf32",
    "conv_fwd_kx_bf16",
    "conv_fwd_kx_tf32_async",
    "conv_fwd_kx_bf16_async",
    "conv_fwd_kx_bf16_128",
    "conv_fwd_kx_tf32_128",
];
const DGRAD_T2: Variants = [
    "conv_dgrad_t2",
    "conv_dgrad_t2_tf32",
    "conv_dgrad_t2_bf16",
    "conv_dgrad_t2_tf32_async",
    "conv_dgrad_t2_bf16_async",
    "conv_dgrad_t2_bf16_128",
    "conv_dgrad_t2_tf32_128",
];
const DGRAD_T3: Variants = [
    "conv_dgrad_t3",
    "conv_dgrad_t3_tf32",
    "conv_dgrad_t3_bf16",
    "conv_dgrad_t3_tf32_async",
    "conv_dgrad_t3_bf16_async",
    "conv_dgrad_t3_bf16_128",
    "conv_dgrad_t3_tf32_128",
];
const DGRAD_T4: Variants = [
    "conv_dgrad_t4",
    "conv_dgrad_t4_tf32",
    "conv_dgrad_t4_bf16",
    "conv_dgrad_t4_tf32_async",
    "conv_dgrad_t4_bf16_async",
    "conv_dgrad_t4_bf16_128",
    "conv_dgrad_t4_tf32_128",
];
const DGRAD_T7: Variants = [
    "conv_dgrad_t7",
    "conv_dgrad_t7_tf32",
    "conv_dgrad_t7_bf16",
    "conv_dgrad_t7_tf32_async",
    "conv_dgrad_t7_bf16_async",
    "conv_dgrad_t7_bf16_128",
    "conv_dgrad_t7_tf32_128",
];
const DGRAD_TX: Variants = [
    "conv_dgrad_tx",
    "conv_dgrad_tx_tf32",
    "conv_dgrad_tx_bf16",
    "conv_dgrad_tx_tf32_async",
    "conv_dgrad_tx_bf16_async",
    "conv_dgrad_tx_bf16_128",
    "conv_dgrad_tx_tf32_128",
];
const WGRAD_K3: Variants = [
    "conv_wgrad_k3",
    "conv_wgrad_k3_tf32",
    "conv_wgrad_k3_bf16",
    "conv_wgrad_k3_tf32_async",
    "conv_wgrad_k3_bf16_async",
    "conv_wgrad_k3_bf16_128",
    "conv_wgrad_k3_tf32_128",
];
const WGRAD_K4: Variants = [
    "conv_wgrad_k4",
    "conv_wgrad_k4_tf32",
    "conv_wgrad_k4_bf16",
    "conv_wgrad_k4_tf32_async",
    "conv_wgrad_k4_bf16_async",
    "conv_wgrad_k4_bf16_128",
    "conv_wgrad_k4_tf32_128",
];
const WGRAD_K7: Variants = [
    "conv_wgrad_k7",
    "conv_wgrad_k7_tf32",
    "conv_wgrad_k7_bf16",
    "conv_wgrad_k7_tf32_async",
    "conv_wgrad_k7_bf16_async",
    "conv_wgrad_k7_bf16_128",
    "conv_wgrad_k7_tf32_128",
];
const WGRAD_KX: Variants = [
    "conv_wgrad_kx",
    "conv_wgrad_kx_tf32",
    "conv_wgrad_kx_bf16",
    "conv_wgrad_kx_tf32_async",
    "conv_wgrad_kx_bf16_async",
    "conv_wgrad_kx_bf16_128",
    "conv_wgrad_kx_tf32_128",
];

fn pick(k: &Variants, v: ConvVariant) -> &'static str {
    k[v.number() as usize - 1]
}

/// (splits, kchunk) for a GEMM with `tiles` output tiles, reduction length `k` and `out` outputs.
fn split_k(tiles: usize, k: usize, out: usize) -> (usize, usize) {
    let by_k = k.div_ceil(TILE_K * 8).max(1);
    let by_ws = (MAX_WORKSPACE / out.max(1)).max(1);
    let want = TARGET_BLOCKS.div_ceil(tiles.max(1));
    let splits = want.min(by_k).min(by_ws).clamp(1, MAX_SPLITS);
    let kchunk = k.div_ceil(splits).div_ceil(TILE_K).max(1) * TILE_K;
    (k.div_ceil(kchunk).max(1), kchunk)
}

/// A bias added to the GEMM's output: the values, and the channel count and plane size of `out`.
struct Bias<'a> {
    values: &'a CudaView<'a, f32>,
    channels: usize,
    plane: usize,
}

/// One implicit-GEMM launch. Every GEMM kernel has the signature (in0, in1, bias, out, ws, args).
struct Gemm<'a> {
    kernel: &'static Variants,
    /// The GEMM's rows and columns (dgrad: of its largest parity class), and the grid's z = splits
    /// [× parity classes for dgrad]; the grid covers rows × columns with the variant's tiles.
    rows: usize,
    cols: usize,
    z: usize,
    args: ConvArgs,
    in0: &'a CudaView<'a, f32>,
    in1: &'a CudaView<'a, f32>,
    bias: Option<Bias<'a>>,
    out_numel: usize,
}

/// Launches the GEMM into `out` and, when split, the reduction of its partial results (which then
/// applies the bias and the accumulation; the GEMM writes raw partials).
fn run(c: &CudaBackend, g: Gemm, out: &mut CudaViewMut<f32>) {
    let variant = c.conv_variant();
    let tile = variant.tile();
    let grid = (g.cols.div_ceil(tile), g.rows.div_ceil(tile), g.z);
    assert!(grid.1 <= 65535 && grid.2 <= 65535, "conv grid {grid:?} too large");
    let cfg = cudarc::driver::LaunchConfig {
        grid_dim: (grid.0.max(1) as u32, grid.1.max(1) as u32, grid.2.max(1) as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let a = g.args;
    let kernel = pick(g.kernel, variant);
    let splits = a.splits as usize;
    let mut ws = c.workspace(if splits > 1 { splits * g.out_numel } else { 1 });
    let (bias_v, bias_c, bias_hw) = match &g.bias {
        Some(b) => (b.values, b.channels, b.plane),
        None => (g.in1, 1, 1), // never read: has_bias = 0
    };
    launch!(c, "conv", kernel, cfg, g.in0, g.in1, bias_v, &mut *out, &mut *ws, &a);
    if splits > 1 {
        let (sp, numel) = (splits as i32, g.out_numel as i64);
        let (ch, hw) = (bias_c as i32, bias_hw as i64);
        let (acc, hb) = (a.accumulate, a.has_bias);
        let cfg = c.cfg_1d(g.out_numel);
        launch!(
            c,
            "conv",
            "splitk_reduce",
            cfg,
            &*ws,
            &sp,
            &numel,
            &mut *out,
            bias_v,
            &ch,
            &hw,
            &acc,
            &hb
        );
    }
}

/// y (+)= conv(x, W) (+ bias).
pub(super) fn fwd(
    c: &CudaBackend,
    pb: &ConvProblem,
    x: &CudaView<f32>,
    w: &CudaView<f32>,
    bias: Option<&CudaView<f32>>,
    y: &mut CudaViewMut<f32>,
    accumulate: bool,
) {
    let (m, n, k) = (pb.cout, pb.n * pb.ho * pb.wo, pb.cin * pb.k * pb.k);
    let out = pb.n * pb.y_len();
    if out == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1, k, out);
    let gemm = Gemm {
        kernel: match pb.k {
            3 => &FWD_K3,
            4 => &FWD_K4,
            7 => &FWD_K7,
            _ => &FWD_KX,
        },
        rows: m,
        cols: n,
        z: splits,
        args: pb.args(splits, kchunk, accumulate, bias.is_some()),
        in0: x,
        in1: w,
        bias: bias.map(|values| Bias {
            values,
            channels: pb.cout,
            plane: pb.ho * pb.wo,
        }),
        out_numel: out,
    };
    run(c, gemm, y);
}

/// dx (+)= conv data gradient of dy (+ bias: a transposed conv's forward).
pub(super) fn dgrad(
    c: &CudaBackend,
    pb: &ConvProblem,
    dy: &CudaView<f32>,
    w: &CudaView<f32>,
    bias: Option<&CudaView<f32>>,
    dx: &mut CudaViewMut<f32>,
    accumulate: bool,
) {
    let s = pb.s;
    let taps = pb.k.div_ceil(s);
    let (m, n_max, k_max) = (
        pb.cin,
        pb.n * pb.h.div_ceil(s) * pb.w.div_ceil(s),
        pb.cout * taps * taps,
    );
    let out = pb.n * pb.x_len();
    if out == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n_max.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1 * s * s, k_max, out);
    let kernel: &'static Variants = match (pb.k.is_multiple_of(s), taps) {
        (true, 2) => &DGRAD_T2,
        (true, 3) => &DGRAD_T3,
        (true, 4) => &DGRAD_T4,
        (true, 7) => &DGRAD_T7,
        _ => &DGRAD_TX,
    };
    let gemm = Gemm {
        kernel,
        rows: m,
        cols: n_max,
        z: splits * s * s,
        args: pb.args(splits, kchunk, accumulate, bias.is_some()),
        in0: dy,
        in1: w,
        bias: bias.map(|values| Bias {
            values,
            channels: pb.cin,
            plane: pb.h * pb.w,
        }),
        out_numel: out,
    };
    run(c, gemm, dx);
}

/// dW += weight gradient of the convolution (x, dy).
pub(super) fn wgrad(
    c: &CudaBackend,
    pb: &ConvProblem,
    x: &CudaView<f32>,
    dy: &CudaView<f32>,
    dw: &mut CudaViewMut<f32>,
) {
    let (m, n, k) = (pb.cout, pb.cin * pb.k * pb.k, pb.n * pb.ho * pb.wo);
    let out = m * n;
    if out == 0 || k == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1, k, out);
    let gemm = Gemm {
        kernel: match pb.k {
            3 => &WGRAD_K3,
            4 => &WGRAD_K4,
            7 => &WGRAD_K7,
            _ => &WGRAD_KX,
        },
        rows: m,
        cols: n,
        z: splits,
        args: pb.args(splits, kchunk, true, false),
        in0: x,
        in1: dy,
        bias: None,
        out_numel: out,
    };
    run(c, gemm, dw);
}

/// db[c] += Σ over samples and pixels of dy[:, c] (per sample in f64, as the CPU).
pub(super) fn bias_grad(c: &CudaBackend, dy: &Tensor, db: &mut CudaViewMut<f32>) {
    let s = dy.shape;
    let (n, ch, hw) = (s.n as i32, s.c as i32, s.hw() as i64);
    let cfg = cudarc::driver::LaunchConfig {
        grid_dim: (s.c as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(c, "conv", "bias_grad", cfg, dy.cuda(), &n, &ch, &hw, &mut *db);
}

/// The weight and optional bias of a conv layer as device views.
pub(super) fn weights<'a>(params: &'a Storage, p: &ConvParams) -> (CudaView<'a, f32>, Option<CudaView<'a, f32>>) {
    let s = params.cuda();
    (s.slice(p.weight.range()), p.bias.map(|b| s.slice(b.range())))
}

pub(super) fn full(t: &Tensor) -> CudaView<'_, f32> {
    t.cuda().slice(0..t.numel())
}

pub(super) fn full_mut(t: &mut Tensor) -> CudaViewMut<'_, f32> {
    let n = t.numel();
    t.cuda_mut().slice_mut(0..n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::ConvVariant;

    /// Every kernel table lists its variants in `ConvVariant::ALL`'s order, so `pick` names the
    /// kernel `kernel_suffix` says.
    #[test]
    fn variant_names_follow_the_suffixes() {
        let tables: [&Variants; 13] = [
            &FWD_K3, &FWD_K4, &FWD_K7, &FWD_KX, &DGRAD_T2, &DGRAD_T3, &DGRAD_T4, &DGRAD_T7, &DGRAD_TX, &WGRAD_K3,
            &WGRAD_K4, &WGRAD_K7, &WGRAD_KX,
        ];
        for k in tables {
            for v in ConvVariant::ALL {
                assert_eq!(pick(k, v), format!("{}{}", k[0], v.kernel_suffix()), "{v}");
            }
        }
    }
}
