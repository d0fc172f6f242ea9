//! The OpenCV cartoon recipe, written out in Rust, and its named variations.
//!
//! Classic recipe (the one the study used):
//! 1. colour path: `pyrDown` twice, 7 passes of a colour bilateral filter (d = 9, σ_colour = 9,
//!    σ_space = 7) at quarter resolution, `pyrUp` twice back to the original size;
//! 2. edge path, from the original: grayscale → `medianBlur(7)` → `adaptiveThreshold(MEAN_C,
//!    BINARY, block 9, C 2)`;
//! 3. cartoon = smoothed colour where the edge mask is white, black where it is 0.
//!
//! Where imageproc matches OpenCV we use it (`median_filter` replicates the border like
//! `medianBlur`; `erode` for thicker lines; `gaussian_blur_f32` for the sketch). Where it does
//! not, the filter is written here and says why:
//! - `imageproc::filter::bilateral_filter` is grayscale only; OpenCV's colour version weighs a
//!   neighbour by the L1 distance summed over the three channels, within a disc of radius d/2.
//! - `imageproc::contrast::adaptive_threshold` has no constant C, truncates the mean and shrinks
//!   the block at the border; OpenCV rounds the mean, replicates the border and tests
//!   `src > mean − C`.
//! - imageproc has no Gaussian pyramid (`pyrDown`/`pyrUp`).

use image::{GrayImage, ImageBuffer, Luma, Pixel, Rgb, RgbImage};

/// The named cartoon styles. `Sketch` is not a cartoon but a pencil drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Style {
    /// The OpenCV recipe as published: 2 pyramid levels, 7 bilateral passes (d 9, σc 9, σs 7),
    /// median 7, adaptive mean threshold block 9, C 2.
    Classic,
    /// Stronger smoothing, fewer lines: 12 bilateral passes with σc 20, σs 9; median 9,
    /// threshold block 11, C 5 (only strong edges survive).
    Smooth,
    /// Thick ink: median 5, threshold block 7, C 2, black lines thickened by one pixel each side
    /// (3×3 erosion of the mask); classic smoothing.
    Bold,
    /// Flat poster colours: classic smoothing, then 6 levels per channel and 30 % desaturation
    /// (mixed with its own gray); classic edges.
    Posterized,
    /// Pencil sketch: grayscale, invert, Gaussian blur (σ = 2.5 % of the shorter side),
    /// colour-dodge the gray by the blurred negative. No colour.
    Sketch,
}

impl Style {
    pub const ALL: [Style; 5] = [
        Style::Classic,
        Style::Smooth,
        Style::Bold,
        Style::Posterized,
        Style::Sketch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Style::Classic => "classic",
            Style::Smooth => "smooth",
            Style::Bold => "bold",
            Style::Posterized => "posterized",
            Style::Sketch => "sketch",
        }
    }

    /// The recipe parameters of a cartoon style; `None` for the sketch.
    pub fn params(self) -> Option<CartoonParams> {
        let classic = CartoonParams::default();
        match self {
            Style::Classic => Some(classic),
            Style::Smooth => Some(CartoonParams {
                bilateral_passes: 12,
                sigma_color: 20.0,
                sigma_space: 9.0,
                median_ksize: 9,
                threshold_block: 11,
                threshold_c: 5,
                ..classic
            }),
            Style::Bold => Some(CartoonParams {
                median_ksize: 5,
                threshold_block: 7,
                edge_thicken: 1,
                ..classic
            }),
            Style::Posterized => Some(CartoonParams {
                quantize_levels: 6,
                gray_percent: 30,
                ..classic
            }),
            Style::Sketch => None,
        }
    }
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Style {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Style> {
        Style::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!("unknown style '{s}': expected one of classic, smooth, bold, posterized, sketch")
            })
    }
}

/// Parameters of the cartoon recipe. `Default` is the classic OpenCV recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CartoonParams {
    /// Gaussian pyramid levels down (and back up) around the bilateral filter.
    pub pyr_levels: u32,
    pub bilateral_passes: u32,
    pub bilateral_d: u32,
    pub sigma_color: f32,
    pub sigma_space: f32,
    /// Odd aperture of the median blur on the grayscale image.
    pub median_ksize: u32,
    /// Odd block size of the adaptive mean threshold.
    pub threshold_block: u32,
    pub threshold_c: i32,
    /// Erode the white mask by this many pixels (thicker black lines); 0 = as thresholded.
    pub edge_thicken: u8,
    /// Levels per channel after smoothing (0 = no quantisation).
    pub quantize_levels: u8,
    /// Percentage of desaturation (0 = full colour, 100 = gray).
    pub gray_percent: u8,
}

impl Default for CartoonParams {
    fn default() -> Self {
        CartoonParams {
            pyr_levels: 2,
            bilateral_passes: 7,
            bilateral_d: 9,
            sigma_color: 9.0,
            sigma_space: 7.0,
            median_ksize: 7,
            threshold_block: 9,
            threshold_c: 2,
            edge_thicken: 0,
            quantize_levels: 0,
            gray_percent: 0,
        }
    }
}

/// Cartoonize an RGB image in the given style. The output has the input's size.
pub fn cartoonize(img: &RgbImage, style: Style) -> RgbImage {
    match style.params() {
        Some(p) => cartoonize_with(img, &p),
        None => sketch(img),
    }
}

/// The cartoon recipe with explicit parameters.
pub fn cartoonize_with(img: &RgbImage, p: &CartoonParams) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return img.clone();
    }
    // Colour path.
    let mut sizes = vec![(w, h)];
    let mut small = img.clone();
    for _ in 0..p.pyr_levels {
        if small.width() < 2 || small.height() < 2 {
            break;
        }
        small = pyr_down(&small);
        sizes.push(small.dimensions());
    }
    for _ in 0..p.bilateral_passes {
        small = bilateral_rgb(&small, p.bilateral_d, p.sigma_color, p.sigma_space);
    }
    sizes.pop();
    while let Some((tw, th)) = sizes.pop() {
        small = pyr_up(&small, tw, th);
    }
    let mut color = small;
    if p.quantize_levels >= 2 {
        quantize(&mut color, p.quantize_levels);
    }
    if p.gray_percent > 0 {
        desaturate(&mut color, p.gray_percent);
    }
    // Edge path.
    let gray = to_gray(img);
    let r = p.median_ksize / 2;
    let blurred = if r > 0 {
        imageproc::filter::median_filter(&gray, r, r)
    } else {
        gray
    };
    let mut mask = adaptive_threshold_mean(&blurred, p.threshold_block, p.threshold_c);
    if p.edge_thicken > 0 {
        mask = imageproc::morphology::erode(&mask, imageproc::distance_transform::Norm::LInf, p.edge_thicken);
    }
    apply_mask(&color, &mask)
}

/// Pencil sketch: gray, inverted, blurred, colour-dodged.
pub fn sketch(img: &RgbImage) -> RgbImage {
    let gray = to_gray(img);
    let inv: GrayImage = GrayImage::from_fn(gray.width(), gray.height(), |x, y| {
        Luma([255 - gray.get_pixel(x, y)[0]])
    });
    let sigma = (gray.width().min(gray.height()) as f32 * 0.025).max(1.0);
    let blur = imageproc::filter::gaussian_blur_f32(&inv, sigma);
    RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
        let v = color_dodge(gray.get_pixel(x, y)[0], blur.get_pixel(x, y)[0]);
        Rgb([v, v, v])
    })
}

/// Colour dodge: `base * 256 / (256 - blend)`, saturated at 255 (OpenCV's `divide(gray, 255 - blur, 256)`).
pub fn color_dodge(base: u8, blend: u8) -> u8 {
    let d = 256 - blend as u32;
    ((base as u32 * 256 + d / 2) / d).min(255) as u8
}

/// ITU-R BT.601 luma, as OpenCV's `cvtColor(RGB2GRAY)` (fixed point, rounded).
pub fn to_gray(img: &RgbImage) -> GrayImage {
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0;
        Luma([luma(r, g, b)])
    })
}

#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 4899 + g as u32 * 9617 + b as u32 * 1868 + (1 << 13)) >> 14) as u8
}

/// Reflect-101 border index (OpenCV's BORDER_DEFAULT): `-1 → 1`, `n → n-2`.
#[inline]
fn reflect101(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let mut i = i;
    loop {
        if i < 0 {
            i = -i;
        } else if i >= n {
            i = 2 * n - 2 - i;
        } else {
            return i as usize;
        }
    }
}

type Img<P> = ImageBuffer<P, Vec<u8>>;

/// OpenCV `pyrDown`: 5×5 Gaussian `[1 4 6 4 1]/16` separable, reflect-101 border, then every
/// second row and column. Output size `((w+1)/2, (h+1)/2)`.
pub fn pyr_down<P: Pixel<Subpixel = u8>>(src: &Img<P>) -> Img<P> {
    let c = P::CHANNEL_COUNT as usize;
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (w.div_ceil(2), h.div_ceil(2));
    let s = src.as_raw();
    const K: [u32; 5] = [1, 4, 6, 4, 1];
    // Horizontal pass at the kept columns, into u32 (sum of weights 16).
    let mut tmp = vec![0u32; ow * h * c];
    for y in 0..h {
        for ox in 0..ow {
            let x = (2 * ox) as i64;
            for ch in 0..c {
                let mut acc = 0;
                for (k, &kw) in K.iter().enumerate() {
                    let xx = reflect101(x + k as i64 - 2, w as i64);
                    acc += kw * s[(y * w + xx) * c + ch] as u32;
                }
                tmp[(y * ow + ox) * c + ch] = acc;
            }
        }
    }
    let mut out = vec![0u8; ow * oh * c];
    for oy in 0..oh {
        let y = (2 * oy) as i64;
        for ox in 0..ow {
            for ch in 0..c {
                let mut acc = 0;
                for (k, &kw) in K.iter().enumerate() {
                    let yy = reflect101(y + k as i64 - 2, h as i64);
                    acc += kw * tmp[(yy * ow + ox) * c + ch];
                }
                out[(oy * ow + ox) * c + ch] = ((acc + 128) >> 8) as u8;
            }
        }
    }
    ImageBuffer::from_raw(ow as u32, oh as u32, out).expect("size")
}

/// OpenCV `pyrUp` to `(tw, th)` (each `2n` or `2n − 1` of the source size; any other size is
/// produced by clamping the source index). Even outputs take `(s[i−1] + 6 s[i] + s[i+1]) / 8`,
/// odd outputs `(s[i] + s[i+1]) / 2`, per axis, with OpenCV's borders (reflect-101 on the left,
/// `s[n] = s[n−1]` on the right).
pub fn pyr_up<P: Pixel<Subpixel = u8>>(src: &Img<P>, tw: u32, th: u32) -> Img<P> {
    let c = P::CHANNEL_COUNT as usize;
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (tw, th) = (tw as usize, th as usize);
    let s = src.as_raw();
    // Weights per output index along one axis: list of (src index, weight) out of 8.
    fn taps(o: usize, n: usize) -> [(usize, u32); 3] {
        let i = (o / 2).min(n - 1);
        let prev = if i == 0 { 1.min(n - 1) } else { i - 1 };
        let next = (i + 1).min(n - 1);
        if o.is_multiple_of(2) && o / 2 < n {
            if i + 1 >= n && n > 1 {
                // OpenCV's right border for the last even sample: s[n-2] + 7 s[n-1].
                [(prev, 1), (i, 7), (i, 0)]
            } else {
                [(prev, 1), (i, 6), (next, 1)]
            }
        } else {
            [(i, 4), (next, 4), (i, 0)]
        }
    }
    let mut tmp = vec![0u32; tw * h * c];
    for y in 0..h {
        for ox in 0..tw {
            let t = taps(ox, w);
            for ch in 0..c {
                let acc: u32 = t.iter().map(|&(xx, kw)| kw * s[(y * w + xx) * c + ch] as u32).sum();
                tmp[(y * tw + ox) * c + ch] = acc;
            }
        }
    }
    let mut out = vec![0u8; tw * th * c];
    for oy in 0..th {
        let t = taps(oy, h);
        for ox in 0..tw {
            for ch in 0..c {
                let acc: u32 = t.iter().map(|&(yy, kw)| kw * tmp[(yy * tw + ox) * c + ch]).sum();
                out[(oy * tw + ox) * c + ch] = ((acc + 32) >> 6) as u8;
            }
        }
    }
    ImageBuffer::from_raw(tw as u32, th as u32, out).expect("size")
}

/// OpenCV's colour `bilateralFilter`: neighbours within a disc of radius `d/2`, spatial weight
/// `exp(−r²/2σs²)`, colour weight `exp(−δ²/2σc²)` with δ the L1 distance summed over the
/// channels, reflect-101 border, rounded to u8.
pub fn bilateral_rgb(src: &RgbImage, d: u32, sigma_color: f32, sigma_space: f32) -> RgbImage {
    let (w, h) = (src.width() as i64, src.height() as i64);
    let radius = (d / 2) as i64;
    let mut offsets = Vec::new();
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            let r2 = (dx * dx + dy * dy) as f32;
            if r2.sqrt() > radius as f32 {
                continue;
            }
            offsets.push((dx, dy, (-r2 / (2.0 * sigma_space * sigma_space)).exp()));
        }
    }
    let color_lut: Vec<f32> = (0..=765)
        .map(|i| {
            let i = i as f32;
            (-i * i / (2.0 * sigma_color * sigma_color)).exp()
        })
        .collect();
    let s = src.as_raw();
    let mut out = vec![0u8; s.len()];
    for y in 0..h {
        for x in 0..w {
            let o = ((y * w + x) * 3) as usize;
            let (r0, g0, b0) = (s[o] as i32, s[o + 1] as i32, s[o + 2] as i32);
            let (mut sr, mut sg, mut sb, mut sw) = (0f32, 0f32, 0f32, 0f32);
            for &(dx, dy, ws) in &offsets {
                let xx = reflect101(x + dx, w);
                let yy = reflect101(y + dy, h);
                let q = (yy * w as usize + xx) * 3;
                let (r, g, b) = (s[q] as i32, s[q + 1] as i32, s[q + 2] as i32);
                let dist = ((r - r0).abs() + (g - g0).abs() + (b - b0).abs()) as usize;
                let wt = ws * color_lut[dist];
                sr += wt * r as f32;
                sg += wt * g as f32;
                sb += wt * b as f32;
                sw += wt;
            }
            out[o] = (sr / sw).round() as u8;
            out[o + 1] = (sg / sw).round() as u8;
            out[o + 2] = (sb / sw).round() as u8;
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("size")
}

/// OpenCV `adaptiveThreshold(ADAPTIVE_THRESH_MEAN_C, THRESH_BINARY, block, c)`: the mean over a
/// `block × block` window with a replicated border, rounded to an integer; a pixel is white
/// (255) when `src > mean − c`, black otherwise.
pub fn adaptive_threshold_mean(src: &GrayImage, block: u32, c: i32) -> GrayImage {
    let (w, h) = (src.width() as i64, src.height() as i64);
    let r = (block / 2) as i64;
    let n = ((2 * r + 1) * (2 * r + 1)) as f32;
    let s = src.as_raw();
    let clamp = |i: i64, n: i64| i.clamp(0, n - 1) as usize;
    // Horizontal box sums with a replicated border.
    let mut hs = vec![0u32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0u32;
            for dx in -r..=r {
                acc += s[(y * w) as usize + clamp(x + dx, w)] as u32;
            }
            hs[(y * w + x) as usize] = acc;
        }
    }
    GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as i64, y as i64);
        let mut acc = 0u32;
        for dy in -r..=r {
            acc += hs[clamp(y + dy, h) * w as usize + x as usize];
        }
        let mean = (acc as f32 / n).round() as i32;
        let v = s[(y * w + x) as usize] as i32;
        Luma([if v - mean > -c { 255 } else { 0 }])
    })
}

/// Keep colour where the mask is non-zero, black elsewhere (`bitwise_and(color, color, mask)`).
pub fn apply_mask(color: &RgbImage, mask: &GrayImage) -> RgbImage {
    RgbImage::from_fn(color.width(), color.height(), |x, y| {
        if mask.get_pixel(x, y)[0] > 0 {
            *color.get_pixel(x, y)
        } else {
            Rgb([0, 0, 0])
        }
    })
}

/// Uniform quantisation to `levels` values per channel (centres of equal bins, 0 and 255 kept).
pub fn quantize(img: &mut RgbImage, levels: u8) {
    let l = levels as u32;
    for p in img.pixels_mut() {
        for v in p.0.iter_mut() {
            let bin = (*v as u32 * l / 256).min(l - 1);
            *v = ((bin * 255 + (l - 1) / 2) / (l - 1)) as u8;
        }
    }
}

/// Mix each pixel with its own luma: `percent` = 100 gives gray.
pub fn desaturate(img: &mut RgbImage, percent: u8) {
    let t = percent.min(100) as f32 / 100.0;
    for p in img.pixels_mut() {
        let [r, g, b] = p.0;
        let y = luma(r, g, b) as f32;
        for v in p.0.iter_mut() {
            *v = (*v as f32 * (1.0 - t) + y * t).round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_sizes() {
        let img = RgbImage::new(175, 220);
        let d = pyr_down(&img);
        assert_eq!(d.dimensions(), (88, 110));
        let d2 = pyr_down(&d);
        assert_eq!(d2.dimensions(), (44, 55));
        assert_eq!(pyr_up(&d2, 88, 110).dimensions(), (88, 110));
        assert_eq!(pyr_up(&d, 175, 220).dimensions(), (175, 220));
    }

    #[test]
    fn flat_stays_flat() {
        let img = RgbImage::from_pixel(37, 29, Rgb([120, 60, 200]));
        assert!(pyr_down(&img).pixels().all(|p| p.0 == [120, 60, 200]));
        assert!(pyr_up(&img, 74, 57).pixels().all(|p| p.0 == [120, 60, 200]));
        assert!(bilateral_rgb(&img, 9, 9.0, 7.0).pixels().all(|p| p.0 == [120, 60, 200]));
        let c = cartoonize(&img, Style::Classic);
        assert!(c.pixels().all(|p| p.0 == [120, 60, 200]), "flat has no edges");
    }

    #[test]
    fn threshold_step_edge() {
        // Dark left half (50), bright right half (200): the dark side next to the step is below
        // its local mean − C (black line); everything else is white.
        let img = GrayImage::from_fn(20, 10, |x, _| Luma([if x < 10 { 50 } else { 200 }]));
        let m = adaptive_threshold_mean(&img, 9, 2);
        for y in 0..10 {
            for x in 0..20 {
                let v = m.get_pixel(x, y)[0];
                let expect = if (6..10).contains(&x) { 0 } else { 255 };
                assert_eq!(v, expect, "x {x} y {y}");
            }
        }
    }

    #[test]
    fn dodge_and_quantize() {
        assert_eq!(color_dodge(0, 200), 0);
        assert_eq!(color_dodge(128, 0), 128);
        assert_eq!(color_dodge(200, 255), 255);
        let mut img = RgbImage::from_fn(256, 1, |x, _| Rgb([x as u8, 0, 255]));
        quantize(&mut img, 5);
        let mut vals: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
        vals.dedup();
        assert_eq!(vals, vec![0, 64, 128, 191, 255]);
    }
}
