//! The aligned dataset: every A|B image file under `<root>/<phase>`, in the reference's order.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The reference's `IMG_EXTENSIONS`: each extension in lower or upper case. Mixed case (`.Png`)
/// is not listed there, so it is not an image here either; that keeps our file list (and so the
/// epoch length and order) the same as the reference's on the same folder.
const EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "ppm", "bmp", "tif", "tiff"];

pub fn is_image_file(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    EXTENSIONS.iter().any(|&e| ext == e || ext == e.to_ascii_uppercase())
}

/// A sorted list of A|B files. Opening lists files only; decoding happens in the loader.
#[derive(Clone, Debug)]
pub struct AlignedDataset {
    root: PathBuf,
    paths: Vec<PathBuf>,
}

impl AlignedDataset {
    /// List every image under `root/phase`, recursively, sorted by full path.
    pub fn open(root: &Path, phase: &str) -> Result<Self> {
        let dir = root.join(phase);
        if !dir.is_dir() {
            bail!(
                "dataset folder {} does not exist or is not a folder (expected <dataroot>/{phase} \
                 holding A|B images)",
                dir.display()
            );
        }
        let mut paths = Vec::new();
        walk(&dir, &mut paths)?;
        if paths.is_empty() {
            bail!(
                "no images in {} (looked recursively for {})",
                dir.display(),
                EXTENSIONS.join("/")
            );
        }
        // The reference sorts the full path strings (Python `sorted`), which is byte order for
        // UTF-8; Path's own Ord compares component-wise and would order "a/b" and "a-c" differently.
        paths.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        Ok(AlignedDataset { root: dir, paths })
    }

    /// Build a dataset from an explicit list (kept in the given order).
    pub fn from_paths(paths: Vec<PathBuf>) -> Self {
        AlignedDataset {
            root: PathBuf::new(),
            paths,
        }
    }

    /// The folder that was listed (`root/phase`).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn path(&self, i: usize) -> &Path {
        &self.paths[i]
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// Like `os.walk` without `followlinks`: descend into real folders, list files (and links to
/// files) whose extension is an image extension.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_filter_matches_the_reference_list() {
        for ok in ["a.png", "a.PNG", "b.jpeg", "c.JPG", "d.tiff", "e.TIF", "f.ppm", "g.bmp"] {
            assert!(is_image_file(Path::new(ok)), "{ok}");
        }
        for no in ["a.txt", "a.Png", "a.gif", "png", "a.png.bak", "a.webp"] {
            assert!(!is_image_file(Path::new(no)), "{no}");
        }
    }
}
