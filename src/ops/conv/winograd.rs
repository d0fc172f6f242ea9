//! 3×3 stride-1 unpadded convolutions with many channels on the CPU — the ResNet blocks' convs,
//! whose padding is the ReflectionPad(1) before them — by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! The output is cut into 2×2 tiles, tile t = (ti, tj) at (2ti, 2tj), each computed from the 4×4
//! input window d_t at the same place and the 3×3 kernel g of every (co, ci):
//!
//!   y_t[co] = Aᵀ [ Σ_ci U[co, ci] ⊙ V_t[ci] ] A,   U = G g Gᵀ,   V_t = Bᵀ d_t B    (4×4 each)
//!
//!   Bᵀ = | 1  0 −1  0 |    G = | 1    0    0  |    Aᵀ = | 1  1  1  0 |
//!        | 0  1  1  0 |        | ½    ½    ½  |         | 0  1 −1 −1 |
//!        | 0 −1  1  0 |        | ½   −½    ½  |
//!        | 0  1  0 −1 |        | 0    0    1  |
//!
//! So for each of the 16 positions ξ of the 4×4 domain the sum over ci is one GEMM,
//! M[ξ] (cout × tiles) = U[ξ] (cout × cin) · V[ξ] (cin × tiles), with 16·cin·cout multiply-adds
//! per tile where the direct form has 36·cin·cout: 2.25× fewer. The two gradients are the same
//! linear maps transposed, through the same domain:
//!
//!   dM_t = A dy_t Aᵀ;  dgrad: dV[ξ] = U[ξ]ᵀ · dM[ξ], dx += Σ_t B dV_t Bᵀ (the windows overlap by 2);
//!   wgrad: dU[ξ] = Σ_n dM[ξ] · V[ξ]ᵀ, dW += Gᵀ dU G.
//!
//! Tiles that stick out of an odd-sized output read zeros past the input and drop what falls
//! outside y (dy is read as zero there). The transforms' ±1 and ½ are exact in binary; the
//! rounding differs from the im2col GEMM's by a few ulps of the sums (`winograd_equals_im2col_path`;
//! on the CycleGAN step against PyTorch the blocks' weight gradients are as close to float64 as
//! PyTorch's own, benches/RESULTS.md).
//!
//! Layouts, per sample: V and M (and dV, dM) as [channel][ξ][tile], so each channel's 16 planes
//! are one contiguous chunk for the parallel transforms; U and dU as [cout][ξ][cin]. The GEMMs read
//! them as strided views.
//!
//! Measured on the CycleGAN step (resnet_9blocks, 128², 1 thread, AVX-512 host): im2col 4.25 s,
//! Winograd with scalar transforms 3.86 s, with the row-vectorised transforms below 3.36-3.41 s.

use super::im2col::with_col;
use super::ConvProblem;
use crate::device::cpu::{fill, sgemm_strided, Strided};
use rayon::prelude::*;

/// Fewer channels than this on either side take the im2col path (the GEMMs get too small).
pub(super) const MIN_CHANNELS: usize = 32;

/// Whether `pb` runs by Winograd: a 3×3 window, stride 1, no padding, many channels.
pub(super) fn applies(pb: &ConvProblem) -> bool {
    pb.k == 3 && pb.s == 1 && pb.p == 0 && pb.cin.min(pb.cout) >= MIN_CHANNELS
}

/// The 4×4 domain's 16 positions.
const XI: usize = 16;

/// The tile grid of a problem.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    fn of(pb: &ConvProblem) -> Self {
        debug_assert!(applies(pb) && pb.ho + 2 == pb.h && pb.wo + 2 == pb.w);
        Tiles {
            th: pb.ho.div_ceil(2),
            tw: pb.wo.div_ceil(2),
        }
    }
    fn len(&self) -> usize {
        self.th * self.tw
    }
}

// The transforms run per channel and per row of tiles, as loops over the tiles of the row
// (lanes): the even and odd columns of each input row are split apart first, so that tile tj's
// window columns 2tj .. 2tj + 3 are e[tj], o[tj], e[tj + 1], o[tj + 1], and every 4×4 product is
// a handful of vector adds over the row. Each of the 16 results of a tile row is one contiguous
// run of V or M (the tile index is the innermost). `simd!` compiles them for AVX-512 or AVX2.

/// Weights are transformed in groups of this many input channels (the lanes).
const LANES: usize = 16;

/// G v, lane by lane: the 3-vector v (one array of lanes per component) → 4 components.
#[inline(always)]
fn g_lanes([v0, v1, v2]: [&[f32; LANES]; 3]) -> [[f32; LANES]; 4] {
    [
        *v0,
        std::array::from_fn(|l| 0.5 * (v0[l] + v1[l] + v2[l])),
        std::array::from_fn(|l| 0.5 * (v0[l] - v1[l] + v2[l])),
        *v2,
    ]
}

/// Gᵀ v, lane by lane: the transpose of `g_lanes`, 4 components → 3.
#[inline(always)]
fn gt_lanes([v0, v1, v2, v3]: [&[f32; LANES]; 4]) -> [[f32; LANES]; 3] {
    [
        std::array::from_fn(|l| v0[l] + 0.5 * (v1[l] + v2[l])),
        std::array::from_fn(|l| 0.5 * (v1[l] - v2[l])),
        std::array::from_fn(|l| 0.5 * (v1[l] + v2[l]) + v3[l]),
    ]
}

/// U = G g Gᵀ of every (co, ci), as [cout][ξ][cin].
fn weight_transform(pb: &ConvProblem, w: &[f32], u: &mut [f32]) {
    let cin = pb.cin;
    u.par_chunks_mut(XI * cin).enumerate().for_each(|(co, u_co)| {
        let w_co = &w[co * cin * 9..][..cin * 9];
        simd!(weight_transform_co(cin: usize, w_co: &[f32], u_co: &mut [f32]));
    });
}

#[inline(always)]
fn weight_transform_co(cin: usize, w_co: &[f32], u_co: &mut [f32]) {
    for ci0 in (0..cin).step_by(LANES) {
        let lanes = LANES.min(cin - ci0);
        // k[t][l]: tap t of input channel ci0 + l.
        let mut k = [[0f32; LANES]; 9];
        for l in 0..lanes {
            for (t, kt) in k.iter_mut().enumerate() {
                kt[l] = w_co[(ci0 + l) * 9 + t];
            }
        }
        // G along the rows of g (r = 0..3): q[r][c'] for c' = 0..4.
        let q: [[[f32; LANES]; 4]; 3] = std::array::from_fn(|r| g_lanes([&k[3 * r], &k[3 * r + 1], &k[3 * r + 2]]));
        // G along the columns: row i of U from q[0..3][c'].
        for c in 0..4 {
            let rows = g_lanes([&q[0][c], &q[1][c], &q[2][c]]);
            for (i, row) in rows.iter().enumerate() {
                u_co[(4 * i + c) * cin + ci0..][..lanes].copy_from_slice(&row[..lanes]);
            }
        }
    }
}

/// dW += Gᵀ dU G of every (co, ci), from dU as [cout][ξ][cin].
fn weight_grad_transform(pb: &ConvProblem, du: &[f32], dw: &mut [f32]) {
    let cin = pb.cin;
    dw.par_chunks_mut(cin * 9).enumerate().for_each(|(co, dw_co)| {
        let du_co = &du[co * XI * cin..][..XI * cin];
        simd!(weight_grad_transform_co(cin: usize, du_co: &[f32], dw_co: &mut [f32]));
    });
}

#[inline(always)]
fn weight_grad_transform_co(cin: usize, du_co: &[f32], dw_co: &mut [f32]) {
    for ci0 in (0..cin).step_by(LANES) {
        let lanes = LANES.min(cin - ci0);
        let m: [[f32; LANES]; XI] = std::array::from_fn(|xi| {
            let mut v = [0f32; LANES];
            v[..lanes].copy_from_slice(&du_co[xi * cin + ci0..][..lanes]);
            v
        });
        // Gᵀ along the columns (c = 0..4 → c' = 0..3), then along the rows.
        let q: [[[f32; LANES]; 3]; 4] =
            std::array::from_fn(|i| gt_lanes([&m[4 * i], &m[4 * i + 1], &m[4 * i + 2], &m[4 * i + 3]]));
        for c in 0..3 {
            let k = gt_lanes([&q[0][c], &q[1][c], &q[2][c], &q[3][c]]);
            for (r, kr) in k.iter().enumerate() {
                for l in 0..lanes {
                    dw_co[(ci0 + l) * 9 + 3 * r + c] += kr[l];
                }
            }
        }
    }
}

/// Row y of a plane split into even and odd columns, zeros past the row (or for y past the plane).
#[inline(always)]
fn split_row(plane: &[f32], y: usize, h: usize, w: usize, even: &mut [f32], odd: &mut [f32]) {
    even.fill(0.0);
    odd.fill(0.0);
    if y >= h {
        return;
    }
    let row = &plane[y * w..][..w];
    let pairs = (w / 2).min(even.len());
    for (j, p) in row[..2 * pairs].chunks_exact(2).enumerate() {
        even[j] = p[0];
        odd[j] = p[1];
    }
    if w % 2 == 1 && pairs < even.len() {
        even[pairs] = row[w - 1];
    }
}

/// V_t = Bᵀ d_t B of every channel and tile of one sample x_n [c, h, w], as [c][ξ][tile].
fn input_transform(pb: &ConvProblem, tl: Tiles, x_n: &[f32], v: &mut [f32]) {
    let (h, w) = (pb.h, pb.w);
    let scratch = 8 * (tl.tw + 1) + 16 * tl.tw;
    v.par_chunks_mut(XI * tl.len())
        .zip(x_n.par_chunks(h * w))
        .for_each_init(
            || vec![0f32; scratch],
            |buf, (v_c, plane)| simd!(input_transform_c(tl: Tiles, h: usize, w: usize, plane: &[f32], v_c: &mut [f32], buf: &mut [f32])),
        );
}

#[inline(always)]
fn input_transform_c(tl: Tiles, h: usize, w: usize, plane: &[f32], v_c: &mut [f32], buf: &mut [f32]) {
    let (tw, nt) = (tl.tw, tl.len());
    let (eo, hb) = buf.split_at_mut(8 * (tw + 1));
    for ti in 0..tl.th {
        // hb[4r + c]: Bᵀ along row 2ti + r of every window, component c.
        for r in 0..4 {
            let (e, o) = eo[2 * r * (tw + 1)..][..2 * (tw + 1)].split_at_mut(tw + 1);
            split_row(plane, 2 * ti + r, h, w, e, o);
            let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
            let out = &mut hb[4 * r * tw..][..4 * tw];
            let (h0, rest) = out.split_at_mut(tw);
            let (h1, rest) = rest.split_at_mut(tw);
            let (h2, h3) = rest.split_at_mut(tw);
            for j in 0..tw {
                h0[j] = e0[j] - e1[j];
                h1[j] = o0[j] + e1[j];
                h2[j] = e1[j] - o0[j];
                h3[j] = o0[j] - o1[j];
            }
        }
        // Bᵀ down the columns: V[4i + c] from hb[4r + c], r = 0..3.
        let t0 = ti * tw;
        for c in 0..4 {
            let row = |r: usize| &hb[(4 * r + c) * tw..][..tw];
            let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
            let dst = |i: usize| (4 * i + c) * nt + t0;
            let (o0, o1, o2, o3) = (dst(0), dst(1), dst(2), dst(3));
            for j in 0..tw {
                v_c[o0 + j] = d0[j] - d2[j];
                v_c[o1 + j] = d1[j] + d2[j];
                v_c[o2 + j] = d2[j] - d1[j];
                v_c[o3 + j] = d1[j] - d3[j];
            }
        }
    }
}

/// dM_t = A dy_t Aᵀ of every channel and tile of one sample dy_n [c, ho, wo], as [c][ξ][tile].
fn output_grad_transform(pb: &ConvProblem, tl: Tiles, dy_n: &[f32], dm: &mut [f32]) {
    let (ho, wo) = (pb.ho, pb.wo);
    let scratch = 4 * tl.tw;
    dm.par_chunks_mut(XI * tl.len())
        .zip(dy_n.par_chunks(ho * wo))
        .for_each_init(
            || vec![0f32; scratch],
            |buf, (dm_c, plane)| simd!(output_grad_transform_c(tl: Tiles, ho: usize, wo: usize, plane: &[f32], dm_c: &mut [f32], buf: &mut [f32])),
        );
}

#[inline(always)]
fn output_grad_transform_c(tl: Tiles, ho: usize, wo: usize, plane: &[f32], dm_c: &mut [f32], buf: &mut [f32]) {
    let (tw, nt) = (tl.tw, tl.len());
    for ti in 0..tl.th {
        // Rows 2ti and 2ti + 1 of the tiles, even and odd columns: y[r][0 | 1].
        let (r0, r1) = buf.split_at_mut(2 * tw);
        let (e0, o0) = r0.split_at_mut(tw);
        let (e1, o1) = r1.split_at_mut(tw);
        split_row(plane, 2 * ti, ho, wo, e0, o0);
        split_row(plane, 2 * ti + 1, ho, wo, e1, o1);
        let (e0, o0, e1, o1) = (&*e0, &*o0, &*e1, &*o1);
        // A along the rows: a(e, o) = [e, e + o, e − o, −o]; then A down the columns.
        let t0 = ti * tw;
        let comp = |c: usize, e: f32, o: f32| match c {
            0 => e,
            1 => e + o,
            2 => e - o,
            _ => -o,
        };
        for c in 0..4 {
            let dst = |i: usize| (4 * i + c) * nt + t0;
            let (d0, d1, d2, d3) = (dst(0), dst(1), dst(2), dst(3));
            for j in 0..tw {
                let (a0, a1) = (comp(c, e0[j], o0[j]), comp(c, e1[j], o1[j]));
                dm_c[d0 + j] = a0;
                dm_c[d1 + j] = a0 + a1;
                dm_c[d2 + j] = a0 - a1;
                dm_c[d3 + j] = -a1;
            }
        }
    }
}

/// y_n (+)= Aᵀ M_t A of every channel and tile, from M as [c][ξ][tile].
fn output_transform(pb: &ConvProblem, tl: Tiles, m: &[f32], y_n: &mut [f32], accumulate: bool) {
    let (ho, wo) = (pb.ho, pb.wo);
    let scratch = 8 * tl.tw;
    y_n.par_chunks_mut(ho * wo)
        .zip(m.par_chunks(XI * tl.len()))
        .for_each_init(
            || vec![0f32; scratch],
            |buf, (plane, m_c)| simd!(output_transform_c(tl: Tiles, ho: usize, wo: usize, m_c: &[f32], plane: &mut [f32], accumulate: bool, buf: &mut [f32])),
        );
}

#[inline(always)]
fn output_transform_c(
    tl: Tiles,
    ho: usize,
    wo: usize,
    m_c: &[f32],
    plane: &mut [f32],
    accumulate: bool,
    buf: &mut [f32],
) {
    let (tw, nt) = (tl.tw, tl.len());
    for ti in 0..tl.th {
        let t0 = ti * tw;
        let mrow = |xi: usize| &m_c[xi * nt + t0..][..tw];
        // Aᵀ down the columns: s[r][c] for output row r = 0, 1 and component c.
        for c in 0..4 {
            let (m0, m1, m2, m3) = (mrow(c), mrow(4 + c), mrow(8 + c), mrow(12 + c));
            let (s0, s1) = buf[2 * c * tw..][..2 * tw].split_at_mut(tw);
            for j in 0..tw {
                s0[j] = m0[j] + m1[j] + m2[j];
                s1[j] = m1[j] - m2[j] - m3[j];
            }
        }
        // Aᵀ along the rows: the tile's two columns, then interleaved into the output row.
        for r in 0..2 {
            let y = 2 * ti + r;
            if y >= ho {
                break;
            }
            let s = |c: usize| &buf[(2 * c + r) * tw..][..tw];
            let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
            let row = &mut plane[y * wo..][..wo];
            let pairs = (wo / 2).min(tw);
            for (j, p) in row[..2 * pairs].chunks_exact_mut(2).enumerate() {
                let (a, b) = (s0[j] + s1[j] + s2[j], s1[j] - s2[j] - s3[j]);
                if accumulate {
                    p[0] += a;
                    p[1] += b;
                } else {
                    p[0] = a;
                    p[1] = b;
                }
            }
            if wo % 2 == 1 {
                let j = pairs;
                let a = s0[j] + s1[j] + s2[j];
                row[wo - 1] = if accumulate { row[wo - 1] + a } else { a };
            }
        }
    }
}

/// dx_n += Σ_t B dV_t Bᵀ placed at each tile's window, from dV as [c][ξ][tile].
fn input_grad_transform(pb: &ConvProblem, tl: Tiles, dv: &[f32], dx_n: &mut [f32]) {
    let (h, w) = (pb.h, pb.w);
    let scratch = 16 * tl.tw + 2 * (tl.tw + 1);
    dx_n.par_chunks_mut(h * w)
        .zip(dv.par_chunks(XI * tl.len()))
        .for_each_init(
            || vec![0f32; scratch],
            |buf, (plane, dv_c)| simd!(input_grad_transform_c(tl: Tiles, h: usize, w: usize, dv_c: &[f32], plane: &mut [f32], buf: &mut [f32])),
        );
}

#[inline(always)]
fn input_grad_transform_c(tl: Tiles, h: usize, w: usize, dv_c: &[f32], plane: &mut [f32], buf: &mut [f32]) {
    let (tw, nt) = (tl.tw, tl.len());
    let (q, eo) = buf.split_at_mut(16 * tw);
    for ti in 0..tl.th {
        let t0 = ti * tw;
        let vrow = |xi: usize| &dv_c[xi * nt + t0..][..tw];
        // B down the columns: q[4r + c] for window row r and component c.
        for c in 0..4 {
            let (v0, v1, v2, v3) = (vrow(c), vrow(4 + c), vrow(8 + c), vrow(12 + c));
            for j in 0..tw {
                q[c * tw + j] = v0[j];
                q[(4 + c) * tw + j] = v1[j] - v2[j] + v3[j];
                q[(8 + c) * tw + j] = v1[j] + v2[j] - v0[j];
                q[(12 + c) * tw + j] = -v3[j];
            }
        }
        // B along the rows, windows overlapping by two columns: the even and odd columns of
        // window row r, then added into input row 2ti + r.
        for r in 0..4 {
            let y = 2 * ti + r;
            if y >= h {
                break;
            }
            let qr = |c: usize| &q[(4 * r + c) * tw..][..tw];
            let (q0, q1, q2, q3) = (qr(0), qr(1), qr(2), qr(3));
            let (even, odd) = eo.split_at_mut(tw + 1);
            even.fill(0.0);
            odd.fill(0.0);
            for j in 0..tw {
                // Columns 2j, 2j + 1, 2j + 2, 2j + 3 of window j: B q = [q0, q1 − q2 + q3, q1 + q2 − q0, −q3].
                even[j] += q0[j];
                odd[j] += q1[j] - q2[j] + q3[j];
            }
            for j in 0..tw {
                even[j + 1] += q1[j] + q2[j] - q0[j];
                odd[j + 1] -= q3[j];
            }
            let row = &mut plane[y * w..][..w];
            let pairs = (w / 2).min(tw + 1);
            for (j, p) in row[..2 * pairs].chunks_exact_mut(2).enumerate() {
                p[0] += even[j];
                p[1] += odd[j];
            }
            if w % 2 == 1 && pairs < tw + 1 {
                row[w - 1] += even[pairs];
            }
        }
    }
}

/// The view of position ξ of a [rows][ξ][cols] buffer as a rows × cols matrix (from `buf[ξ·cols..]`).
fn plane(cols: usize) -> Strided {
    Strided::new(XI * cols, 1)
}

/// The same, transposed: cols × rows.
fn plane_t(cols: usize) -> Strided {
    Strided::new(1, XI * cols)
}

/// The forward and the weight gradient, sharing each sample's input transform:
/// `fwd` = (W, y, accumulate): y (+)= conv(x, W); `wgrad` = (dy, dW): dW += its weight gradient.
pub(super) fn fwd_and_wgrad(
    pb: &ConvProblem,
    x: &[f32],
    fwd: Option<(&[f32], &mut [f32], bool)>,
    wgrad: Option<(&[f32], &mut [f32])>,
) {
    if fwd.is_none() && wgrad.is_none() {
        return;
    }
    let tl = Tiles::of(pb);
    let nt = tl.len();
    let (cin, cout) = (pb.cin, pb.cout);
    let (xs, ys) = (pb.x_len(), pb.y_len());
    // U for the forward, dU for the weight gradient: [cout][ξ][cin] each, only those needed.
    let (n_u, n_du) = (fwd.is_some() as usize, wgrad.is_some() as usize);
    with_col((n_u + n_du) * cout * XI * cin, |uw| {
        let (u, du) = uw.split_at_mut(n_u * cout * XI * cin);
        let mut fwd_y = fwd.map(|(w, y, accumulate)| {
            weight_transform(pb, w, u);
            (y, accumulate)
        });
        with_col((cin + cout) * XI * nt, |vm| {
            let (v, m) = vm.split_at_mut(cin * XI * nt);
            for n in 0..pb.n {
                input_transform(pb, tl, &x[n * xs..(n + 1) * xs], v);
                if let Some((dy, _)) = wgrad.as_ref() {
                    output_grad_transform(pb, tl, &dy[n * ys..(n + 1) * ys], m);
                    for xi in 0..XI {
                        // dU[ξ] (+)= dM[ξ] · V[ξ]ᵀ
                        sgemm_strided(
                            cout,
                            cin,
                            nt,
                            (&m[xi * nt..], plane(nt)),
                            (&v[xi * nt..], plane_t(nt)),
                            (&mut du[xi * cin..], plane(cin)),
                            n > 0,
                        );
                    }
                }
                if let Some((y, accumulate)) = fwd_y.as_mut() {
                    for xi in 0..XI {
                        // M[ξ] = U[ξ] · V[ξ]
                        sgemm_strided(
                            cout,
                            nt,
                            cin,
                            (&u[xi * cin..], plane(cin)),
                            (&v[xi * nt..], plane(nt)),
                            (&mut m[xi * nt..], plane(nt)),
                            false,
                        );
                    }
                    output_transform(pb, tl, m, &mut y[n * ys..(n + 1) * ys], *accumulate);
                }
            }
        });
        if let Some((_, dw)) = wgrad {
            if pb.n > 0 {
                weight_grad_transform(pb, du, dw);
            }
        }
    });
}

/// dx (+)= the input gradient of the convolution.
pub(super) fn dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    let tl = Tiles::of(pb);
    let nt = tl.len();
    let (cin, cout) = (pb.cin, pb.cout);
    let (xs, ys) = (pb.x_len(), pb.y_len());
    if !accumulate {
        fill(&mut dx[..pb.n * xs], 0.0);
    }
    with_col(cout * XI * cin, |u| {
        weight_transform(pb, w, u);
        with_col((cin + cout) * XI * nt, |vm| {
            let (dv, dm) = vm.split_at_mut(cin * XI * nt);
            for n in 0..pb.n {
                output_grad_transform(pb, tl, &dy[n * ys..(n + 1) * ys], dm);
                for xi in 0..XI {
                    // dV[ξ] = U[ξ]ᵀ · dM[ξ]
                    sgemm_strided(
                        cin,
                        nt,
                        cout,
                        (&u[xi * cin..], plane_t(cin)),
                        (&dm[xi * nt..], plane(nt)),
                        (&mut dv[xi * nt..], plane(nt)),
                        false,
                    );
                }
                input_grad_transform(pb, tl, dv, &mut dx[n * xs..(n + 1) * xs]);
            }
        });
    });
}
