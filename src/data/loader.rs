//! The prefetching batch loader: worker threads decode and transform ahead of the training loop,
//! the consumer gets batches in the epoch's order, and a bad file is skipped, never a panic.
//!
//! Work split: with T workers, worker t handles epoch positions t, t+T, t+2T, … in order and
//! sends each result into its own bounded channel; the consumer reads position p from channel
//! p mod T. That keeps the epoch order without a reorder buffer, bounds the read-ahead (each
//! channel holds a couple of batches' worth), and makes results independent of scheduling
//! because every random draw comes from `seeding::sample_rng(seed, epoch, index)`.

use super::aligned::AlignedDataset;
use super::image_io::load_rgb;
use super::options::DataOptions;
use super::seeding::{epoch_order, sample_rng};
use super::transform::{draw_params, sample_from_image, split_ab, to_tensor_normalized, transform_half, Sample};
use super::unaligned::{Part, UnalignedDataset};
use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;
use rand::Rng;
use rayon::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// How many batches each epoch may decode ahead of the consumer.
const PREFETCH_BATCHES: usize = 2;

/// `n` samples stacked along a leading batch axis: `a` and `b` are N·C·H·W, NCHW order.
#[derive(Clone, Debug)]
pub struct Batch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub paths: Vec<PathBuf>,
    /// Seconds the consumer spent blocked waiting for this batch's samples (the reference's
    /// `data` figure in loss_log.txt).
    pub wait_s: f64,
}

/// What a loader reads: aligned A|B pairs (pix2pix) or two unpaired lists (CycleGAN).
#[derive(Clone, Debug)]
pub enum Dataset {
    Aligned(AlignedDataset),
    Unaligned(UnalignedDataset),
}

impl From<AlignedDataset> for Dataset {
    fn from(d: AlignedDataset) -> Self {
        Dataset::Aligned(d)
    }
}

impl From<UnalignedDataset> for Dataset {
    fn from(d: UnalignedDataset) -> Self {
        Dataset::Unaligned(d)
    }
}

impl Dataset {
    /// Items per epoch.
    pub fn len(&self) -> usize {
        match self {
            Dataset::Aligned(d) => d.len(),
            Dataset::Unaligned(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every file, once (what `in_memory` decodes).
    fn files(&self) -> &[PathBuf] {
        match self {
            Dataset::Aligned(d) => d.paths(),
            Dataset::Unaligned(d) => d.files(),
        }
    }

    /// The file of item `i` (its A image for the unaligned dataset).
    pub fn path(&self, i: usize) -> &Path {
        match self {
            Dataset::Aligned(d) => d.path(i),
            Dataset::Unaligned(d) => &d.files()[d.item_a(i).0],
        }
    }

    /// The file of every item, in item order.
    pub fn paths(&self) -> Vec<PathBuf> {
        (0..self.len()).map(|i| self.path(i).to_path_buf()).collect()
    }
}

struct Shared {
    dataset: Dataset,
    opts: DataOptions,
    /// `in_memory`: every file decoded once; a failed decode keeps its message for skipping.
    cache: Option<Vec<std::result::Result<RgbImage, String>>>,
    skipped: AtomicUsize,
    skipped_files: Mutex<Vec<(PathBuf, String)>>,
    wait_ns: AtomicU64,
}

impl Shared {
    /// Decode (or fetch) item `index` and run the SPEC §6 chain with its own (seed, epoch, index)
    /// random stream. Every error names the file.
    fn load(&self, index: usize, epoch: u64) -> Result<Sample> {
        let mut rng = sample_rng(self.opts.seed, epoch, index as u64);
        let u = match &self.dataset {
            Dataset::Aligned(d) => {
                let path = d.path(index);
                let img = self.decoded(index)?;
                return sample_from_image(&img, &self.opts, &mut rng, path.to_path_buf())
                    .with_context(|| format!("{}", path.display()));
            }
            Dataset::Unaligned(u) => u,
        };
        // Unaligned: A[index mod |A|] and a random B (B[index mod |B|] when serial), each with
        // its own crop and flip drawn in that order from the item's stream.
        let ib = if self.opts.serial_batches {
            index % u.len_b()
        } else {
            rng.gen_range(0..u.len_b())
        };
        let mut image = |(file, part): (usize, Part)| -> Result<(Vec<f32>, usize, usize)> {
            let path = &u.files()[file];
            let img = self.decoded(file)?;
            let half = match part {
                Part::Whole => img.into_owned(),
                Part::PairA => split_ab(&img, self.opts.direction)?.0,
                Part::PairB => split_ab(&img, self.opts.direction)?.1,
            };
            let params = draw_params(&self.opts, half.width() as usize, half.height() as usize, &mut rng);
            let out = transform_half(&half, &params, &self.opts).with_context(|| format!("{}", path.display()))?;
            Ok((to_tensor_normalized(&out), out.height() as usize, out.width() as usize))
        };
        let (a, ha, wa) = image(u.item_a(index))?;
        let (b, hb, wb) = image(u.item_b(ib))?;
        let pa = u.files()[u.item_a(index).0].clone();
        if (ha, wa) != (hb, wb) {
            bail!(
                "{}: its A image ({wa}x{ha}) and the B image {} ({wb}x{hb}) differ in size after preprocessing \
                 (use --preprocess resize_and_crop or crop for images of other sizes)",
                pa.display(),
                u.files()[u.item_b(ib).0].display()
            );
        }
        Ok(Sample {
            a,
            b,
            c: 3,
            h: ha,
            w: wa,
            path: pa,
        })
    }

    /// File `file` decoded (or from the `in_memory` cache).
    fn decoded(&self, file: usize) -> Result<std::borrow::Cow<'_, RgbImage>> {
        match &self.cache {
            Some(cache) => cache[file]
                .as_ref()
                .map(std::borrow::Cow::Borrowed)
                .map_err(|e| anyhow!("{e}")),
            None => Ok(std::borrow::Cow::Owned(load_rgb(&self.dataset.files()[file])?)),
        }
    }

    /// `load`, with a decoder panic (hostile or corrupt input) turned into an error to skip.
    fn load_guarded(&self, index: usize, epoch: u64) -> Result<Sample> {
        catch_unwind(AssertUnwindSafe(|| self.load(index, epoch)))
            .unwrap_or_else(|_| Err(anyhow!("{}: the decoder panicked", self.dataset.path(index).display())))
    }

    fn record_skip(&self, path: PathBuf, reason: String) {
        eprintln!("data: skipping a sample: {reason}");
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = self.skipped_files.lock() {
            v.push((path, reason));
        }
    }
}

/// Owns the dataset and options; hands out one `EpochIter` per epoch. Cheap to clone.
#[derive(Clone)]
pub struct Loader {
    shared: Arc<Shared>,
}

impl Loader {
    /// Validate the options and, with `in_memory`, decode every file now (in parallel).
    pub fn new(dataset: impl Into<Dataset>, opts: DataOptions) -> Result<Self> {
        let dataset = dataset.into();
        opts.validate()?;
        let cache = if opts.in_memory {
            Some(
                dataset
                    .files()
                    .par_iter()
                    .map(|p| {
                        catch_unwind(|| load_rgb(p))
                            .unwrap_or_else(|_| Err(anyhow!("{}: the decoder panicked", p.display())))
                            .map_err(|e| format!("{e:#}"))
                    })
                    .collect(),
            )
        } else {
            None
        };
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                opts,
                cache,
                skipped: AtomicUsize::new(0),
                skipped_files: Mutex::new(Vec::new()),
                wait_ns: AtomicU64::new(0),
            }),
        })
    }

    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    pub fn options(&self) -> &DataOptions {
        &self.shared.opts
    }

    /// Number of files (samples per epoch, before any skips).
    pub fn len(&self) -> usize {
        self.shared.dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.dataset.is_empty()
    }

    /// Batches in a full epoch with no skips; the last one may be partial (no drop_last).
    pub fn batches_per_epoch(&self) -> usize {
        self.len().div_ceil(self.shared.opts.batch_size)
    }

    /// Samples skipped so far, over all epochs.
    pub fn skipped(&self) -> usize {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Every skip so far: the file and the reason.
    pub fn skipped_files(&self) -> Vec<(PathBuf, String)> {
        self.shared.skipped_files.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Total seconds consumers have spent waiting for data, over all epochs.
    pub fn total_wait_s(&self) -> f64 {
        self.shared.wait_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// One sample exactly as epoch `epoch` would produce it, on the calling thread.
    pub fn load_sample(&self, index: usize, epoch: u64) -> Result<Sample> {
        self.shared.load_guarded(index, epoch)
    }

    /// The dataset indices epoch `epoch` visits, in order.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let o = &self.shared.opts;
        epoch_order(self.len(), o.seed, epoch, o.serial_batches)
    }

    /// Start epoch `epoch`: workers begin decoding immediately; iterate to get the batches.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let order = Arc::new(self.epoch_order(epoch));
        let threads = self.shared.opts.num_threads;
        let per_worker = (PREFETCH_BATCHES * self.shared.opts.batch_size).div_ceil(threads.max(1));
        let mut receivers = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = sync_channel(per_worker.max(1));
            let shared = Arc::clone(&self.shared);
            let order = Arc::clone(&order);
            let spawned = std::thread::Builder::new().name(format!("data-{t}")).spawn(move || {
                for &index in order.iter().skip(t).step_by(threads) {
                    let result = shared.load_guarded(index, epoch);
                    if tx.send((index, result)).is_err() {
                        return; // the epoch was dropped early
                    }
                }
            });
            match spawned {
                Ok(handle) => {
                    receivers.push(rx);
                    workers.push(handle);
                }
                Err(e) => {
                    // The position → worker mapping assumes all T workers exist, so stop the ones
                    // already started and load on the consumer's thread instead of failing the run.
                    eprintln!("data: cannot start loader thread {t} ({e}); loading on this thread");
                    receivers.clear();
                    for handle in workers.drain(..) {
                        let _ = handle.join();
                    }
                    break;
                }
            }
        }
        EpochIter {
            shared: Arc::clone(&self.shared),
            order,
            epoch,
            pos: 0,
            receivers,
            workers,
            skipped: 0,
            wait_s: 0.0,
        }
    }
}

/// The batches of one epoch, in order. Dropping it early stops the workers.
pub struct EpochIter {
    shared: Arc<Shared>,
    order: Arc<Vec<usize>>,
    epoch: u64,
    pos: usize,
    receivers: Vec<Receiver<(usize, Result<Sample>)>>,
    workers: Vec<JoinHandle<()>>,
    skipped: usize,
    wait_s: f64,
}

impl EpochIter {
    /// Samples skipped in this epoch so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Seconds this epoch's consumer has spent waiting for data so far.
    pub fn wait_s(&self) -> f64 {
        self.wait_s
    }

    /// The next sample result in epoch order, and the seconds spent waiting for it.
    fn next_result(&mut self) -> Option<(Result<Sample>, f64)> {
        if self.pos >= self.order.len() {
            return None;
        }
        let start = Instant::now();
        let result = if self.receivers.is_empty() {
            // num_threads = 0: load on this thread, like the reference's test-time loader.
            self.shared.load_guarded(self.order[self.pos], self.epoch)
        } else {
            let t = self.pos % self.receivers.len();
            match self.receivers[t].recv() {
                Ok((_, r)) => r,
                Err(_) => {
                    // Cannot happen short of a worker dying outside load_guarded; end the epoch
                    // rather than hang or panic.
                    eprintln!("data: loader thread {t} stopped; ending epoch {} early", self.epoch);
                    self.pos = self.order.len();
                    return None;
                }
            }
        };
        self.pos += 1;
        Some((result, start.elapsed().as_secs_f64()))
    }

    fn skip(&mut self, path: PathBuf, reason: String) {
        self.skipped += 1;
        self.shared.record_skip(path, reason);
    }
}

impl Iterator for EpochIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let batch_size = self.shared.opts.batch_size;
        let mut samples: Vec<Sample> = Vec::with_capacity(batch_size);
        let mut wait = 0.0;
        while samples.len() < batch_size {
            let Some((result, waited)) = self.next_result() else {
                break;
            };
            wait += waited;
            match result {
                Ok(s) => match samples.first() {
                    Some(f) if (f.c, f.h, f.w) != (s.c, s.h, s.w) => {
                        let reason = format!(
                            "{}: its size {}x{} differs from {}x{} of the batch it falls in \
                             (preprocess {} keeps image sizes)",
                            s.path.display(),
                            s.w,
                            s.h,
                            f.w,
                            f.h,
                            self.shared.opts.preprocess
                        );
                        self.skip(s.path, reason);
                    }
                    _ => samples.push(s),
                },
                Err(e) => {
                    let index = self.order[self.pos - 1];
                    let path = self.shared.dataset.path(index).to_path_buf();
                    self.skip(path, format!("{e:#}"));
                }
            }
        }
        self.wait_s += wait;
        self.shared.wait_ns.fetch_add((wait * 1e9) as u64, Ordering::Relaxed);
        if samples.is_empty() {
            return None;
        }
        Some(stack(samples, wait))
    }
}

/// Stack samples of one shape into a batch.
fn stack(samples: Vec<Sample>, wait_s: f64) -> Batch {
    let (c, h, w) = (samples[0].c, samples[0].h, samples[0].w);
    let n = samples.len();
    let mut a = Vec::with_capacity(n * c * h * w);
    let mut b = Vec::with_capacity(n * c * h * w);
    let mut paths = Vec::with_capacity(n);
    for s in samples {
        a.extend_from_slice(&s.a);
        b.extend_from_slice(&s.b);
        paths.push(s.path);
    }
    Batch {
        a,
        b,
        n,
        c,
        h,
        w,
        paths,
        wait_s,
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing the receivers makes any worker blocked in `send` return; then wait for them so
        // no thread outlives the epoch.
        self.receivers.clear();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}
