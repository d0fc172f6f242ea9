//! The CPU backend: host memory and rayon threads. The op implementations themselves live beside
//! their CUDA twins in `ops/`; this file holds what they share on the host.

use rayon::prelude::*;

/// Below this many elements an elementwise op runs on one thread: spawning costs more than it saves.
pub const PAR_MIN: usize = 1 << 15;

/// Applies `f` to matching chunks of `dst` and `src`, in parallel when large.
pub fn zip_map(dst: &mut [f32], src: &[f32], f: impl Fn(&mut f32, f32) + Sync + Send) {
    assert_eq!(dst.len(), src.len());
    if dst.len() < PAR_MIN {
        dst.iter_mut().zip(src).for_each(|(d, &s)| f(d, s));
    } else {
        dst.par_chunks_mut(PAR_MIN / 4)
            .zip(src.par_chunks(PAR_MIN / 4))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| f(d, s)));
    }
}

/// Like `zip_map` with two inputs.
pub fn zip2_map(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(&mut f32, f32, f32) + Sync + Send) {
    assert_eq!(dst.len(), a.len());
    assert_eq!(dst.len(), b.len());
    if dst.len() < PAR_MIN {
        for i in 0..dst.len() {
            f(&mut dst[i], a[i], b[i]);
        }
    } else {
        let c = PAR_MIN / 4;
        dst.par_chunks_mut(c)
            .zip(a.par_chunks(c))
            .zip(b.par_chunks(c))
            .for_each(|((d, a), b)| {
                for i in 0..d.len() {
                    f(&mut d[i], a[i], b[i]);
                }
            });
    }
}

/// Row-major single-precision GEMM on the host: `C = A·B` (or `C += A·B` with `accumulate`), where
/// A is m×k (stored k×m when `ta`), B is k×n (stored n×k when `tb`), and `lda/ldb/ldc` are row
/// strides of the stored matrices. Runs on the `gemm` crate, multi-threaded above a small size.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    // Bounds: the last element each operand touches must be inside its slice.
    let a_need = if ta { (k - 1) * lda + m } else { (m - 1) * lda + k };
    let b_need = if tb { (n - 1) * ldb + k } else { (k - 1) * ldb + n };
    assert!(
        a.len() >= a_need && b.len() >= b_need && c.len() >= (m - 1) * ldc + n,
        "sgemm: operand too small"
    );
    let (a_rs, a_cs) = if ta { (1, lda as isize) } else { (lda as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, ldb as isize) } else { (ldb as isize, 1) };
    let par = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access inside the three slices; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
