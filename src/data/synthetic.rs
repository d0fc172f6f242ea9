//! A generated cartoon|photo dataset, so tests and the demo need no downloaded files.
//!
//! B ("photo") is a procedural face: gradient background, shirt, neck, hair, a shaded skin-toned
//! face ellipse, eyes with irises, eyebrows, nose and mouth, all varied by the seed. A ("cartoon")
//! is B with its colours quantised to a few levels and dark outlines where B's gradient is strong,
//! which is the kind of mapping pix2pix learns well. Each image has its own ChaCha stream keyed by
//! (seed, split, index), so the output is deterministic whatever the thread count.

use super::image_io::{hconcat, save_rgb_png};
use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::Path;

type Color = [f32; 3];

/// Everything random about one face, in units of the image side.
struct Face {
    bg_top: Color,
    bg_bottom: Color,
    skin: Color,
    hair: Color,
    shirt: Color,
    iris: Color,
    lips: Color,
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    long_hair: bool,
    light_x: f32,
    eye_dx: f32,
    eye_y: f32,
    eye_r: f32,
    mouth_w: f32,
    mouth_y: f32,
    smile: f32,
}

fn jitter(rng: &mut ChaCha8Rng, c: Color, amount: f32) -> Color {
    c.map(|v| (v + rng.gen_range(-amount..=amount)).clamp(0.0, 255.0))
}

fn random_color(rng: &mut ChaCha8Rng) -> Color {
    [0, 0, 0].map(|_| rng.gen_range(20.0..235.0))
}

impl Face {
    fn random(rng: &mut ChaCha8Rng) -> Face {
        const SKINS: [Color; 5] = [
            [255.0, 220.0, 185.0],
            [235.0, 190.0, 150.0],
            [200.0, 150.0, 110.0],
            [150.0, 100.0, 70.0],
            [100.0, 70.0, 50.0],
        ];
        const HAIRS: [Color; 5] = [
            [25.0, 20.0, 20.0],
            [90.0, 55.0, 30.0],
            [220.0, 190.0, 110.0],
            [160.0, 70.0, 30.0],
            [170.0, 170.0, 170.0],
        ];
        let skin = SKINS[rng.gen_range(0..SKINS.len())];
        let skin = jitter(rng, skin, 12.0);
        let hair = HAIRS[rng.gen_range(0..HAIRS.len())];
        let hair = jitter(rng, hair, 15.0);
        let rx = rng.gen_range(0.19..0.25);
        let ry = rx * rng.gen_range(1.15..1.35);
        Face {
            bg_top: random_color(rng),
            bg_bottom: random_color(rng),
            skin,
            hair,
            shirt: random_color(rng),
            iris: [0, 0, 0].map(|_| rng.gen_range(20.0..140.0)),
            lips: jitter(rng, [190.0, 80.0, 80.0], 25.0),
            cx: rng.gen_range(0.43..0.57),
            cy: rng.gen_range(0.40..0.47),
            rx,
            ry,
            long_hair: rng.gen_bool(0.4),
            light_x: rng.gen_range(-0.6..0.6),
            eye_dx: rx * rng.gen_range(0.36..0.46),
            eye_y: -ry * rng.gen_range(0.12..0.25),
            eye_r: rx * rng.gen_range(0.14..0.2),
            mouth_w: rx * rng.gen_range(0.35..0.55),
            mouth_y: ry * rng.gen_range(0.45..0.6),
            smile: rng.gen_range(-0.3..0.8),
        }
    }

    /// The photo colour at (u, v) in [0, 1)²: layers painted back to front.
    fn paint(&self, u: f32, v: f32) -> Color {
        let mix = |a: Color, b: Color, t: f32| [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t);
        let shade = |c: Color, k: f32| c.map(|x| (x * k).clamp(0.0, 255.0));
        let mut col = mix(self.bg_top, self.bg_bottom, v);
        col = shade(col, 0.9 + 0.2 * u);

        // Face-local coordinates: (dx, dy) in units of the face radii.
        let dx = (u - self.cx) / self.rx;
        let dy = (v - self.cy) / self.ry;
        let r2 = dx * dx + dy * dy;

        // Shirt: a rounded shoulder line below the chin.
        let shoulders = self.cy + self.ry * 1.05 + 0.6 * (u - self.cx).powi(2);
        if v > shoulders {
            col = shade(self.shirt, 1.0 - 0.3 * (u - self.cx).abs());
        }
        // Neck.
        if (u - self.cx).abs() < self.rx * 0.45 && v > self.cy && v <= shoulders {
            col = shade(self.skin, 0.75);
        }
        // Hair behind the face: a larger ellipse raised a little; long hair falls to the shoulders.
        let hdy = (v - (self.cy - self.ry * 0.12)) / (self.ry * 1.12);
        let hdx = (u - self.cx) / (self.rx * 1.18);
        let in_hair_cap = hdx * hdx + hdy * hdy < 1.0 && (hdy < 0.1 || self.long_hair);
        let in_long = self.long_hair && hdx.abs() < 1.0 && v < shoulders + 0.05 && v > self.cy;
        if in_hair_cap || in_long {
            col = shade(self.hair, 0.85 + 0.3 * (1.0 - hdy.abs().min(1.0)));
        }
        if r2 < 1.0 {
            // Lambert-like shading from a light to one side, darker towards the rim.
            let nz = (1.0 - r2).sqrt();
            let lit = 0.55 + 0.45 * (nz * 0.8 + dx * self.light_x * 0.5).clamp(0.0, 1.0);
            col = shade(self.skin, lit);
            // Fringe: hair over the top of the forehead.
            if dy < -0.55 + 0.08 * (dx * 9.0).sin() {
                col = shade(self.hair, 0.95);
            }
        }
        // Features, relative to the face centre in image units.
        let fu = u - self.cx;
        let fv = v - self.cy;
        for side in [-1.0f32, 1.0] {
            let ex = fu - side * self.eye_dx;
            let ey = fv - self.eye_y;
            let e2 = (ex / self.eye_r).powi(2) + (ey / (self.eye_r * 0.6)).powi(2);
            if e2 < 1.0 {
                col = [245.0, 245.0, 240.0];
                if ex * ex + ey * ey < (self.eye_r * 0.5).powi(2) {
                    col = self.iris;
                }
                if ex * ex + ey * ey < (self.eye_r * 0.22).powi(2) {
                    col = [10.0, 10.0, 10.0];
                }
            }
            // Eyebrow: a thin arc above the eye.
            let by = ey + self.eye_r * 1.5 + 0.3 * (ex / self.eye_r).powi(2) * self.eye_r * 0.5;
            if ex.abs() < self.eye_r * 1.2 && by.abs() < self.eye_r * 0.22 {
                col = shade(self.hair, 0.7);
            }
        }
        // Nose: a short shaded wedge below the eyes.
        let nv = (fv - self.eye_y) / (self.mouth_y - self.eye_y);
        if (0.25..0.75).contains(&nv) && fu.abs() < self.rx * 0.08 * nv + 0.004 {
            col = shade(self.skin, 0.72);
        }
        // Mouth: a curved band whose bend is the smile.
        let mx = fu / self.mouth_w;
        let my = fv - self.mouth_y + self.smile * self.ry * 0.12 * (mx * mx - 0.5);
        if mx.abs() < 1.0 && my.abs() < self.ry * 0.05 * (1.0 - mx * mx).sqrt() + 0.004 {
            col = self.lips;
        }
        col
    }
}

/// Render the photo (B) of one face.
fn render_photo(face: &Face, size: usize) -> RgbImage {
    let s = size as f32;
    RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let c = face.paint((x as f32 + 0.5) / s, (y as f32 + 0.5) / s);
        Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
    })
}

/// The photo (B side) of dataset item (seed, split, index): a drawn face, size × size.
pub fn synthetic_photo(seed: u64, split: u64, index: u64, size: usize) -> RgbImage {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&split.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"FACES!!!");
    let mut rng = ChaCha8Rng::from_seed(key);
    render_photo(&Face::random(&mut rng), size)
}

/// One A|B pair (cartoon | photo), (2·size) × size, for dataset item (seed, split, index).
pub fn synthetic_pair(seed: u64, split: u64, index: u64, size: usize) -> RgbImage {
    let photo = synthetic_photo(seed, split, index, size);
    // The same cartoonizer `prepare` applies to real photos (the classic OpenCV recipe).
    let cartoon = crate::data::prepare::cartoonize(&photo, crate::data::prepare::Style::Classic);
    hconcat(&cartoon, &photo)
}

/// Write `root/{train,val,test}/NNNN.png` A|B pairs ((2·size) × size). Existing files with the
/// same names are replaced (atomically); other files in those folders are left alone.
pub fn make_synthetic_dataset(
    root: &Path,
    n_train: usize,
    n_val: usize,
    n_test: usize,
    size: usize,
    seed: u64,
) -> Result<()> {
    if size < 4 {
        bail!("synthetic image size must be at least 4 pixels (got {size})");
    }
    for (split, (phase, n)) in [("train", n_train), ("val", n_val), ("test", n_test)]
        .into_iter()
        .enumerate()
    {
        let dir = root.join(phase);
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        (0..n).into_par_iter().try_for_each(|i| {
            let pair = synthetic_pair(seed, split as u64, i as u64, size);
            save_rgb_png(&dir.join(format!("{i:04}.png")), &pair)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_deterministic_and_varied() {
        let a = synthetic_pair(1, 0, 0, 32);
        assert_eq!(a.dimensions(), (64, 32));
        assert_eq!(a, synthetic_pair(1, 0, 0, 32));
        assert_ne!(a, synthetic_pair(1, 0, 1, 32));
        assert_ne!(a, synthetic_pair(2, 0, 0, 32));
    }

    #[test]
    fn cartoon_side_is_the_classic_cartoon_of_the_photo_side() {
        let pair = synthetic_pair(3, 0, 5, 48);
        let crop = |x0| image::imageops::crop_imm(&pair, x0, 0, 48, 48).to_image();
        let (cartoon, photo) = (crop(0), crop(48));
        assert_eq!(
            cartoon,
            crate::data::prepare::cartoonize(&photo, crate::data::prepare::Style::Classic)
        );
        assert!(
            cartoon.pixels().any(|p| p.0 == [0, 0, 0]),
            "the cartoon should have black outlines"
        );
    }
}
