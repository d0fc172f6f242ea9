//! The CPU backend: host memory and rayon threads. The op implementations themselves live beside
//! their CUDA twins in `ops/`; this file holds what they share on the host.

use rayon::prelude::*;

/// Below this many elements an elementwise op runs on one thread: spawning costs more than it saves.
pub const PAR_MIN: usize = 1 << 15;

/// Runs `f` on a worker thread of rayon's global pool and waits for its result (a panic in `f`
/// propagates). The CPU ops inside it then split their work between the calling worker and the
/// others, and with one thread run inline; called from a thread outside the pool, every
/// parallel op is handed to the pool while the caller sleeps until it is done (a wake-up per op:
/// measured 15 % of a 1-thread CycleGAN step). The CLI runs every command this way.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // `rayon::scope` runs its body on a worker of the global pool when called from outside it.
    rayon::scope(|_| f())
}

/// dst[..] = value, in parallel when large.
pub fn fill(dst: &mut [f32], value: f32) {
    if dst.len() < PAR_MIN {
        dst.fill(value);
    } else {
        dst.par_chunks_mut(PAR_MIN).for_each(|d| d.fill(value));
    }
}

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
    let a_st = if ta { Strided::new(1, lda) } else { Strided::new(lda, 1) };
    let b_st = if tb { Strided::new(1, ldb) } else { Strided::new(ldb, 1) };
    sgemm_strided(m, n, k, (a, a_st), (b, b_st), (c, Strided::new(ldc, 1)), accumulate);
}

/// The layout of a strided matrix view: element (r, c) is at offset r·rs + c·cs of its slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strided {
    pub rs: usize,
    pub cs: usize,
}

impl Strided {
    pub const fn new(rs: usize, cs: usize) -> Self {
        Strided { rs, cs }
    }
    /// One past the largest offset a rows × cols view touches (0 when it is empty).
    fn extent(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.rs + (cols - 1) * self.cs + 1
        }
    }
    /// Whether a rows × cols view with this layout addresses every element once (required of an
    /// output): one of the two strides steps over a whole line of the other.
    fn is_injective(&self, rows: usize, cols: usize) -> bool {
        rows <= 1 && (cols <= 1 || self.cs > 0)
            || cols <= 1 && self.rs > 0
            || self.cs > 0 && self.rs > (cols - 1) * self.cs
            || self.rs > 0 && self.cs > (rows - 1) * self.rs
    }
}

/// `C = A·B` (or `C += A·B` with `accumulate`) over strided views: A is m×k, B k×n, C m×n, each
/// given as (slice, layout). The conv paths use it for the bands of a patch matrix and the planes
/// of the Winograd domain in place. Multi-threaded above a small size.
pub fn sgemm_strided(
    m: usize,
    n: usize,
    k: usize,
    (a, a_st): (&[f32], Strided),
    (b, b_st): (&[f32], Strided),
    (c, c_st): (&mut [f32], Strided),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= c_st.extent(m, n) && c_st.is_injective(m, n),
        "sgemm: output view {m}x{n} {c_st:?} does not fit its {} elements once each",
        c.len()
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for j in 0..n {
                    c[r * c_st.rs + j * c_st.cs] = 0.0;
                }
            }
        }
        return;
    }
    // Bounds: the last element each operand touches must be inside its slice.
    assert!(
        a.len() >= a_st.extent(m, k) && b.len() >= b_st.extent(k, n),
        "sgemm: operand too small"
    );
    let par = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access inside the three slices, and the output view
    // addresses each of its elements once; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_st.cs as isize,
            c_st.rs as isize,
            accumulate,
            a.as_ptr(),
            a_st.cs as isize,
            a_st.rs as isize,
            b.as_ptr(),
            b_st.cs as isize,
            b_st.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
