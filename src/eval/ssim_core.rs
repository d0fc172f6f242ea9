//! SSIM on one channel plane, written to reproduce scikit-image's `structural_similarity` with
//! `gaussian_weights=True, sigma=1.5, use_sample_covariance=False` (so its numbers and ours agree to
//! rounding). The Gaussian filter is scipy's `ndimage.gaussian_filter`: separable, radius
//! `int(truncate·σ + 0.5)` = 5 with truncate 3.5, weights normalised to sum 1, `reflect` mode
//! (half-sample symmetric: d c b a | a b c d | d c b a).

/// Window width: 2·radius + 1.
pub const WIN: usize = 2 * RADIUS + 1;
const RADIUS: usize = 5;
const SIGMA: f64 = 1.5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

fn gaussian_taps() -> [f64; WIN] {
    let mut w = [0.0; WIN];
    for (i, t) in w.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *t = (-0.5 * x * x / (SIGMA * SIGMA)).exp();
    }
    let s: f64 = w.iter().sum();
    w.map(|t| t / s)
}

/// scipy's `reflect` index: mirror about the pixel edges, repeating as often as needed.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// Gaussian filter of a row-major w×h plane, rows first (axis 0 in scipy's order: along y), then
/// columns; the order only changes rounding.
fn filter(src: &[f64], w: usize, h: usize, taps: &[f64; WIN]) -> Vec<f64> {
    let mut tmp = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0;
            for (k, t) in taps.iter().enumerate() {
                let yy = reflect(y as isize + k as isize - RADIUS as isize, h);
                s += t * src[yy * w + x];
            }
            tmp[y * w + x] = s;
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        for x in 0..w {
            let mut s = 0.0;
            for (k, t) in taps.iter().enumerate() {
                s += t * row[reflect(x as isize + k as isize - RADIUS as isize, w)];
            }
            out[y * w + x] = s;
        }
    }
    out
}

/// Mean SSIM of two w×h planes (row-major) for the given data range. The caller guarantees
/// w, h ≥ [`WIN`], so the cropped map is not empty.
pub fn ssim_plane(x: &[f64], y: &[f64], w: usize, h: usize, data_range: f64) -> f64 {
    let taps = gaussian_taps();
    let prod = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<_>>();
    let ux = filter(x, w, h, &taps);
    let uy = filter(y, w, h, &taps);
    let uxx = filter(&prod(x, x), w, h, &taps);
    let uyy = filter(&prod(y, y), w, h, &taps);
    let uxy = filter(&prod(x, y), w, h, &taps);
    let c1 = (K1 * data_range).powi(2);
    let c2 = (K2 * data_range).powi(2);
    // skimage averages the SSIM map over the interior only: (win_size − 1) / 2 pixels are cropped
    // on every side, where the window reached into the reflected border.
    let mut sum = 0.0;
    for yy in RADIUS..h - RADIUS {
        for xx in RADIUS..w - RADIUS {
            let i = yy * w + xx;
            let (mx, my) = (ux[i], uy[i]);
            // Population (not sample) covariance: use_sample_covariance=False.
            let vx = uxx[i] - mx * mx;
            let vy = uyy[i] - my * my;
            let vxy = uxy[i] - mx * my;
            let a = (2.0 * mx * my + c1) * (2.0 * vxy + c2);
            let b = (mx * mx + my * my + c1) * (vx + vy + c2);
            sum += a / b;
        }
    }
    sum / ((w - 2 * RADIUS) * (h - 2 * RADIUS)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_is_half_sample_symmetric() {
        // n = 4: ... d c b a | a b c d | d c b a ...
        let got: Vec<usize> = (-5..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
    }

    #[test]
    fn taps_sum_to_one_and_are_symmetric() {
        let t = gaussian_taps();
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..WIN {
            assert_eq!(t[i], t[WIN - 1 - i]);
        }
    }
}
