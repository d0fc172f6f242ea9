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
pub fn zip2_map(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(&mut f32, f32, f32) + Sync + Send,
) {
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
