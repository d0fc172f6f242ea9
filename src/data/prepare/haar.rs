//! A small evaluator of OpenCV's boosted Haar cascades (the "new" XML format written by
//! `opencv_traincascade`, e.g. `haarcascade_frontalface_default.xml` from Debian's
//! `opencv-data` package, Intel License Agreement, a 3-clause BSD-style licence).
//!
//! Detection follows `CascadeClassifier::detectMultiScale` of OpenCV 4: the image (grayscale,
//! histogram-equalised) is shrunk by `scale_factor` per level and a fixed 24×24 window slides
//! over each level (step 2 px, 1 px once the image is shrunk by more than 2); every window is
//! variance-normalised over its inner (w−2)×(h−2) rectangle; stump nodes compare the
//! normalised feature to their threshold; a stage rejects when its sum is below its threshold.
//! Hits are grouped like `groupRectangles` (eps 0.2, `min_neighbors`).

use anyhow::{bail, Context, Result};
use image::GrayImage;
use std::path::{Path, PathBuf};

/// Where a face cascade is looked for, in order, after `--cascade` and `$PIX2PIX_FACE_CASCADE`.
pub const CASCADE_SEARCH: &[&str] = &[
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
    "/usr/share/opencv/haarcascades/haarcascade_frontalface_default.xml",
    "/usr/local/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
    "/usr/local/share/opencv/haarcascades/haarcascade_frontalface_default.xml",
    "/opt/homebrew/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
];

/// The apt line that installs the default cascade on Debian/Ubuntu.
pub const CASCADE_INSTALL_HINT: &str = "apt-get install -y opencv-data";

/// Find the face cascade: an explicit path, then `$PIX2PIX_FACE_CASCADE`, then the usual
/// install locations.
pub fn find_cascade(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PIX2PIX_FACE_CASCADE") {
        return Some(PathBuf::from(p));
    }
    CASCADE_SEARCH.iter().map(PathBuf::from).find(|p| p.is_file())
}

#[derive(Clone, Debug)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    weight: f32,
}

#[derive(Clone, Debug)]
struct Stump {
    feature: usize,
    threshold: f32,
    left: f32,
    right: f32,
}

#[derive(Clone, Debug)]
struct Stage {
    threshold: f32,
    stumps: Vec<Stump>,
}

/// A face box in image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl FaceBox {
    pub fn area(&self) -> f32 {
        self.w * self.h
    }
}

/// A loaded Haar cascade.
#[derive(Clone, Debug)]
pub struct Cascade {
    win_w: u32,
    win_h: u32,
    stages: Vec<Stage>,
    features: Vec<Vec<Rect>>,
    pub path: PathBuf,
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text_of(n: roxmltree::Node, name: &str) -> Result<String> {
    Ok(child(n, name)
        .and_then(|c| c.text())
        .with_context(|| format!("missing <{name}>"))?
        .trim()
        .to_string())
}

fn nums(s: &str) -> Result<Vec<f32>> {
    s.split_whitespace()
        .map(|t| t.parse::<f32>().with_context(|| format!("bad number '{t}'")))
        .collect()
}

impl Cascade {
    pub fn load(path: &Path) -> Result<Cascade> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading face cascade {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("parsing face cascade {}", path.display()))
            .map(|mut c| {
                c.path = path.to_path_buf();
                c
            })
    }

    pub fn parse(text: &str) -> Result<Cascade> {
        let doc = roxmltree::Document::parse(text)?;
        let cascade = doc
            .descendants()
            .find(|n| n.has_tag_name("cascade"))
            .context("no <cascade> element (only the opencv_traincascade format is supported)")?;
        if text_of(cascade, "featureType")? != "HAAR" {
            bail!("only HAAR feature cascades are supported");
        }
        let win_w: u32 = text_of(cascade, "width")?.parse()?;
        let win_h: u32 = text_of(cascade, "height")?.parse()?;
        let mut stages = Vec::new();
        for st in child(cascade, "stages")
            .context("missing <stages>")?
            .children()
            .filter(|c| c.is_element())
        {
            let threshold: f32 = text_of(st, "stageThreshold")?.parse()?;
            let mut stumps = Vec::new();
            for wc in child(st, "weakClassifiers")
                .context("missing <weakClassifiers>")?
                .children()
                .filter(|c| c.is_element())
            {
                let nodes = nums(&text_of(wc, "internalNodes")?)?;
                let leaves = nums(&text_of(wc, "leafValues")?)?;
                if nodes.len() != 4 || leaves.len() != 2 {
                    bail!("only stump classifiers (one node, two leaves) are supported");
                }
                stumps.push(Stump {
                    feature: nodes[2] as usize,
                    threshold: nodes[3],
                    left: leaves[0],
                    right: leaves[1],
                });
            }
            stages.push(Stage { threshold, stumps });
        }
        let mut features = Vec::new();
        for f in child(cascade, "features")
            .context("missing <features>")?
            .children()
            .filter(|c| c.is_element())
        {
            if child(f, "tilted")
                .and_then(|t| t.text())
                .is_some_and(|t| t.trim() != "0")
            {
                bail!("tilted Haar features are not supported");
            }
            let mut rects = Vec::new();
            for r in child(f, "rects")
                .context("missing <rects>")?
                .children()
                .filter(|c| c.is_element())
            {
                let v = nums(r.text().unwrap_or(""))?;
                if v.len() != 5 {
                    bail!("a rect needs 5 numbers");
                }
                rects.push(Rect {
                    x: v[0] as u32,
                    y: v[1] as u32,
                    w: v[2] as u32,
                    h: v[3] as u32,
                    weight: v[4],
                });
            }
            features.push(rects);
        }
        for s in &stages {
            for n in &s.stumps {
                if n.feature >= features.len() {
                    bail!("feature index {} out of range", n.feature);
                }
            }
        }
        if stages.is_empty() {
            bail!("cascade has no stages");
        }
        Ok(Cascade {
            win_w,
            win_h,
            stages,
            features,
            path: PathBuf::new(),
        })
    }

    /// Detect faces at least `min_size` pixels wide. Returns grouped boxes, largest first.
    pub fn detect(&self, gray: &GrayImage, min_size: u32, min_neighbors: usize) -> Vec<FaceBox> {
        let eq = equalize_hist(gray);
        let scale_factor = 1.1f64;
        let mut hits: Vec<FaceBox> = Vec::new();
        let mut factor = 1.0f64;
        loop {
            let sw = (eq.width() as f64 / factor).round() as u32;
            let sh = (eq.height() as f64 / factor).round() as u32;
            if sw < self.win_w || sh < self.win_h {
                break;
            }
            let win_w_img = (self.win_w as f64 * factor).round() as u32;
            if win_w_img >= min_size {
                let ii = if factor == 1.0 {
                    Integral::new(&eq)
                } else {
                    Integral::new(&resize_linear(&eq, sw, sh))
                };
                let step = if factor > 2.0 { 1 } else { 2 };
                let opt = self.offsets(ii.w);
                let mut y = 0;
                while y + self.win_h <= sh {
                    let mut x = 0;
                    while x + self.win_w <= sw {
                        if self.classify(&ii, &opt, x, y) {
                            hits.push(FaceBox {
                                x: (x as f64 * factor) as f32,
                                y: (y as f64 * factor) as f32,
                                w: (self.win_w as f64 * factor) as f32,
                                h: (self.win_h as f64 * factor) as f32,
                            });
                        }
                        x += step;
                    }
                    y += step;
                }
            }
            factor *= scale_factor;
        }
        let mut boxes = group_rectangles(&hits, min_neighbors, 0.2);
        boxes.sort_by(|a, b| b.area().total_cmp(&a.area()));
        boxes
    }

    /// Rect corners as offsets into an integral image of row stride `stride` (OpenCV's
    /// `OptFeature`), so a window's feature is 4 loads per rect.
    fn offsets(&self, stride: usize) -> Vec<OptFeature> {
        self.features
            .iter()
            .map(|rects| {
                let mut f = OptFeature {
                    n: rects.len().min(3),
                    corners: [[0; 4]; 3],
                    weights: [0.0; 3],
                };
                for (k, r) in rects.iter().take(3).enumerate() {
                    let (x0, y0) = (r.x as usize, r.y as usize);
                    let (x1, y1) = (x0 + r.w as usize, y0 + r.h as usize);
                    f.corners[k] = [y1 * stride + x1, y0 * stride + x1, y1 * stride + x0, y0 * stride + x0];
                    f.weights[k] = r.weight;
                }
                f
            })
            .collect()
    }

    fn classify(&self, ii: &Integral, opt: &[OptFeature], x: u32, y: u32) -> bool {
        // Variance normalisation over the inner window (OpenCV's normrect = (1, 1, w−2, h−2)).
        let (nx, ny, nw, nh) = (x + 1, y + 1, self.win_w - 2, self.win_h - 2);
        let area = (nw * nh) as f64;
        let s = ii.sum(nx, ny, nw, nh) as f64;
        let sq = ii.sqsum(nx, ny, nw, nh) as f64;
        let nf = area * sq - s * s;
        let nf = if nf > 0.0 { nf.sqrt() } else { 1.0 } as f32;
        let base = y as usize * ii.w + x as usize;
        let t = &ii.sum[base..];
        for stage in &self.stages {
            let mut sum = 0f32;
            for n in &stage.stumps {
                let f = &opt[n.feature];
                let mut v = 0f32;
                for k in 0..f.n {
                    let c = &f.corners[k];
                    let rs = t[c[0]] - t[c[1]] - t[c[2]] + t[c[3]];
                    v += f.weights[k] * rs as f32;
                }
                sum += if v < n.threshold * nf { n.left } else { n.right };
            }
            if sum < stage.threshold {
                return false;
            }
        }
        true
    }
}

struct OptFeature {
    n: usize,
    corners: [[usize; 4]; 3],
    weights: [f32; 3],
}

struct Integral {
    w: usize,
    sum: Vec<i64>,
    sq: Vec<i64>,
}

impl Integral {
    fn new(img: &GrayImage) -> Integral {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let stride = w + 1;
        let mut sum = vec![0i64; stride * (h + 1)];
        let mut sq = vec![0i64; stride * (h + 1)];
        let raw = img.as_raw();
        for y in 0..h {
            let (mut rs, mut rq) = (0i64, 0i64);
            for x in 0..w {
                let v = raw[y * w + x] as i64;
                rs += v;
                rq += v * v;
                sum[(y + 1) * stride + x + 1] = sum[y * stride + x + 1] + rs;
                sq[(y + 1) * stride + x + 1] = sq[y * stride + x + 1] + rq;
            }
        }
        Integral { w: stride, sum, sq }
    }

    #[inline]
    fn rect(t: &[i64], stride: usize, x: u32, y: u32, w: u32, h: u32) -> i64 {
        let (x0, y0, x1, y1) = (x as usize, y as usize, (x + w) as usize, (y + h) as usize);
        t[y1 * stride + x1] - t[y0 * stride + x1] - t[y1 * stride + x0] + t[y0 * stride + x0]
    }

    fn sum(&self, x: u32, y: u32, w: u32, h: u32) -> i64 {
        Self::rect(&self.sum, self.w, x, y, w, h)
    }

    fn sqsum(&self, x: u32, y: u32, w: u32, h: u32) -> i64 {
        Self::rect(&self.sq, self.w, x, y, w, h)
    }
}

/// Bilinear resize with pixel centres aligned (OpenCV's `INTER_LINEAR`, which `detectMultiScale`
/// uses for its pyramid); much cheaper than `imageops::resize` for the ~20 levels per photo.
fn resize_linear(src: &GrayImage, w: u32, h: u32) -> GrayImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let fx = sw as f32 / w as f32;
    let fy = sh as f32 / h as f32;
    let s = src.as_raw();
    let xs: Vec<(usize, usize, f32)> = (0..w)
        .map(|x| {
            let p = ((x as f32 + 0.5) * fx - 0.5).max(0.0);
            let x0 = (p as usize).min(sw - 1);
            (x0, (x0 + 1).min(sw - 1), p - x0 as f32)
        })
        .collect();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        let p = ((y as f32 + 0.5) * fy - 0.5).max(0.0);
        let y0 = (p as usize).min(sh - 1);
        let y1 = (y0 + 1).min(sh - 1);
        let ty = p - y0 as f32;
        let (r0, r1) = (&s[y0 * sw..(y0 + 1) * sw], &s[y1 * sw..(y1 + 1) * sw]);
        for &(x0, x1, tx) in &xs {
            let a = r0[x0] as f32 * (1.0 - tx) + r0[x1] as f32 * tx;
            let b = r1[x0] as f32 * (1.0 - tx) + r1[x1] as f32 * tx;
            out.push((a * (1.0 - ty) + b * ty).round() as u8);
        }
    }
    GrayImage::from_raw(w, h, out).expect("size")
}

/// OpenCV `equalizeHist`.
pub fn equalize_hist(img: &GrayImage) -> GrayImage {
    let mut hist = [0u32; 256];
    for p in img.as_raw() {
        hist[*p as usize] += 1;
    }
    let total = img.as_raw().len() as u32;
    let first = hist.iter().position(|&c| c > 0).unwrap_or(0);
    if total == 0 || hist[first] == total {
        return img.clone();
    }
    let scale = 255.0 / (total - hist[first]) as f32;
    let mut lut = [0u8; 256];
    let mut acc = 0u32;
    for i in (first + 1)..256 {
        acc += hist[i];
        lut[i] = (acc as f32 * scale).round().clamp(0.0, 255.0) as u8;
    }
    let mut out = img.clone();
    for p in out.iter_mut() {
        *p = lut[*p as usize];
    }
    out
}

/// OpenCV `groupRectangles`: cluster boxes whose edges agree within
/// `eps · (min widths + min heights) / 2`, average each cluster, keep clusters with more than
/// `min_neighbors` members, then drop clusters that lie inside a much stronger one.
pub fn group_rectangles(rects: &[FaceBox], min_neighbors: usize, eps: f32) -> Vec<FaceBox> {
    let n = rects.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let similar = |a: &FaceBox, b: &FaceBox| {
        let delta = eps * (a.w.min(b.w) + a.h.min(b.h)) * 0.5;
        (a.x - b.x).abs() <= delta
            && (a.y - b.y).abs() <= delta
            && (a.x + a.w - b.x - b.w).abs() <= delta
            && (a.y + a.h - b.y - b.h).abs() <= delta
    };
    for i in 0..n {
        for j in (i + 1)..n {
            if similar(&rects[i], &rects[j]) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a] = b;
                }
            }
        }
    }
    let mut clusters: std::collections::BTreeMap<usize, (FaceBox, usize)> = Default::default();
    for (i, r) in rects.iter().enumerate() {
        let root = find(&mut parent, i);
        let e = clusters.entry(root).or_insert((
            FaceBox {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 0.0,
            },
            0,
        ));
        e.0.x += r.x;
        e.0.y += r.y;
        e.0.w += r.w;
        e.0.h += r.h;
        e.1 += 1;
    }
    let avg: Vec<(FaceBox, usize)> = clusters
        .into_values()
        .filter(|(_, c)| *c > min_neighbors)
        .map(|(s, c)| {
            let k = c as f32;
            (
                FaceBox {
                    x: s.x / k,
                    y: s.y / k,
                    w: s.w / k,
                    h: s.h / k,
                },
                c,
            )
        })
        .collect();
    // Drop a cluster nested inside another one with at least as many members (OpenCV's filter).
    let mut out = Vec::new();
    for (i, (r1, n1)) in avg.iter().enumerate() {
        let nested = avg.iter().enumerate().any(|(j, (r2, n2))| {
            if i == j {
                return false;
            }
            let dx = r2.w * eps;
            let dy = r2.h * eps;
            *n2 > 3.max(*n1)
                && r1.x >= r2.x - dx
                && r1.y >= r2.y - dy
                && r1.x + r1.w <= r2.x + r2.w + dx
                && r1.y + r1.h <= r2.y + r2.h + dy
        });
        if !nested {
            out.push(*r1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_close_boxes() {
        let b = |x: f32| FaceBox {
            x,
            y: 10.0,
            w: 40.0,
            h: 40.0,
        };
        let g = group_rectangles(&[b(10.0), b(11.0), b(12.0), b(13.0), b(200.0)], 3, 0.2);
        assert_eq!(g.len(), 1);
        assert!((g[0].x - 11.5).abs() < 1e-4);
    }

    #[test]
    fn parses_tiny_cascade() {
        let xml = r#"<opencv_storage><cascade><stageType>BOOST</stageType>
        <featureType>HAAR</featureType><height>4</height><width>4</width>
        <stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.5</stageThreshold>
        <weakClassifiers><_><internalNodes>0 -1 0 0.0</internalNodes>
        <leafValues>0. 1.</leafValues></_></weakClassifiers></_></stages>
        <features><_><rects><_>0 0 2 4 -1.</_><_>2 0 2 4 1.</_></rects></_></features>
        </cascade></opencv_storage>"#;
        let c = Cascade::parse(xml).unwrap();
        assert_eq!(c.stages.len(), 1);
        // Right half brighter than left: feature > 0 → right leaf 1 ≥ 0.5 → accepted.
        let img = GrayImage::from_fn(4, 4, |x, _| image::Luma([if x < 2 { 0 } else { 200 }]));
        let ii = Integral::new(&img);
        assert!(c.classify(&ii, &c.offsets(ii.w), 0, 0));
        let img = GrayImage::from_fn(4, 4, |x, _| image::Luma([if x < 2 { 200 } else { 0 }]));
        let ii = Integral::new(&img);
        assert!(!c.classify(&ii, &c.offsets(ii.w), 0, 0));
    }
}
