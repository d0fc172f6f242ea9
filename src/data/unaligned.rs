//! The unaligned dataset (`--dataset-mode unaligned`, SPEC.md §6–7): two unpaired image lists.
//! - The reference layout: every image under `<root>/<phase>A` and `<root>/<phase>B` (trainA,
//!   trainB), sorted, each file one image.
//! - Or a folder of A|B pairs (what `prepare` writes, `<root>/<phase>`) used unpaired: the A
//!   list is every pair's A half, the B list every pair's B half (after `--direction`), so both
//!   models can train on the same split without copying files.
//!
//! Item i (of max(|A|, |B|)) is A[i mod |A|] with B drawn at random (B[i mod |B|] with
//! `serial_batches`), and each image gets its own crop and flip.

use super::aligned::AlignedDataset;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Which part of a file an item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole image (trainA/trainB layout).
    Whole,
    /// The A (input) half of an A|B pair, after `--direction`.
    PairA,
    /// The B (target) half of an A|B pair.
    PairB,
}

#[derive(Clone, Debug)]
pub struct UnalignedDataset {
    /// Every file, each decoded once per use (or once in all with `in_memory`).
    files: Vec<PathBuf>,
    /// The A and B lists: (index into `files`, part).
    a: Vec<(usize, Part)>,
    b: Vec<(usize, Part)>,
}

impl UnalignedDataset {
    /// `<root>/<phase>A` and `<root>/<phase>B` when both exist, else the A|B pairs of
    /// `<root>/<phase>` used unpaired; an error names what is missing.
    pub fn open(root: &Path, phase: &str) -> Result<Self> {
        let (dir_a, dir_b) = (root.join(format!("{phase}A")), root.join(format!("{phase}B")));
        if dir_a.is_dir() || dir_b.is_dir() {
            for d in [&dir_a, &dir_b] {
                if !d.is_dir() {
                    bail!(
                        "unaligned dataset: {} does not exist (expected {} and {} with one image per file)",
                        d.display(),
                        dir_a.display(),
                        dir_b.display()
                    );
                }
            }
            let a = AlignedDataset::open(root, &format!("{phase}A"))?;
            let b = AlignedDataset::open(root, &format!("{phase}B"))?;
            let mut files = a.paths().to_vec();
            files.extend_from_slice(b.paths());
            let na = a.len();
            return Ok(UnalignedDataset {
                a: (0..na).map(|i| (i, Part::Whole)).collect(),
                b: (0..b.len()).map(|i| (na + i, Part::Whole)).collect(),
                files,
            });
        }
        if !root.join(phase).is_dir() {
            bail!(
                "unaligned dataset: neither {} and {} nor a folder of A|B pairs {} exists",
                dir_a.display(),
                dir_b.display(),
                root.join(phase).display()
            );
        }
        let pairs = AlignedDataset::open(root, phase)?;
        Ok(Self::from_pairs(pairs.paths().to_vec()))
    }

    /// A|B pair files used unpaired.
    pub fn from_pairs(files: Vec<PathBuf>) -> Self {
        UnalignedDataset {
            a: (0..files.len()).map(|i| (i, Part::PairA)).collect(),
            b: (0..files.len()).map(|i| (i, Part::PairB)).collect(),
            files,
        }
    }

    /// Items per epoch: max(|A|, |B|).
    pub fn len(&self) -> usize {
        self.a.len().max(self.b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len_a(&self) -> usize {
        self.a.len()
    }

    pub fn len_b(&self) -> usize {
        self.b.len()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The A item of item `i`: (file index, part).
    pub fn item_a(&self, i: usize) -> (usize, Part) {
        self.a[i % self.a.len()]
    }

    /// B item `j` of the B list.
    pub fn item_b(&self, j: usize) -> (usize, Part) {
        self.b[j]
    }
}
