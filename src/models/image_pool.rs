//! ImagePool (SPEC.md §7), the reference's history of generated images that D trains on:
//! for each image of a batch (stored as a detached copy),
//! - while fewer than `size` are stored: store it and return it;
//! - once full: with probability 0.5 (uniform > 0.5) return a uniformly chosen stored image and
//!   put the new one in its slot, otherwise return the new one and leave the pool unchanged;
//! - size 0 passes images through.
//!
//! The images stay on the device (one [size, C, H, W] tensor, no host round trip). The
//! decisions are host-side draws from a counter-based hash of (seed, draw number), so they are
//! deterministic, independent of the device, and resume exactly from the counter. `prepare`
//! makes them before the step and writes the batch's plan (which slot each image comes from and
//! goes to) to device memory; `apply` is one launch that follows it (`ops::tensor::pool_exchange`),
//! so a step with a pool can be captured as a CUDA graph and replayed.

use crate::checkpoint::{NamedTensor, Values};
use crate::device::step_values::StepValues;
use crate::device::Device;
use crate::ops::activation::{splitmix, uniform};
use crate::ops::tensor::pool_exchange;
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct ImagePool {
    pub size: usize,
    seed: u64,
    /// Draws taken so far (two per decision once the pool is full).
    draws: u64,
    stored: usize,
    images: Option<Tensor>,
    /// The prepared batch's plan: (source slot or −1 for the new image, slot to store it in or −1)
    /// per image.
    plan: Option<StepValues<i32>>,
}

impl ImagePool {
    pub fn new(size: usize, seed: u64) -> Self {
        ImagePool {
            size,
            seed,
            draws: 0,
            stored: 0,
            images: None,
            plan: None,
        }
    }

    /// Images currently stored.
    pub fn len(&self) -> usize {
        self.stored
    }

    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    fn draw(&mut self) -> u64 {
        self.draws += 1;
        splitmix(self.seed, self.draws - 1)
    }

    /// Writes the images D trains on for the batch `fake` into `out` (same shape as `fake`):
    /// `prepare` then `apply`.
    pub fn query(&mut self, dev: &Device, fake: &Tensor, out: &mut Tensor) {
        self.prepare(dev, fake.shape);
        self.apply(dev, fake, out);
    }

    /// The host half of a query for a batch of this shape: the reference's decisions, image by
    /// image, written as the plan `apply` follows (and the pool allocated for the image size).
    pub fn prepare(&mut self, dev: &Device, batch: Shape) {
        let one = Shape::new(self.size.max(1), batch.c, batch.h, batch.w);
        if self.images.as_ref().is_some_and(|t| t.shape != one) {
            // Another image size: the stored history does not fit it (the reference would fail
            // to concatenate); start a new history.
            self.images = None;
            self.stored = 0;
        }
        self.images.get_or_insert_with(|| dev.zeros_tensor(one));
        let mut plan = Vec::with_capacity(2 * batch.n);
        for _ in 0..batch.n {
            let (src, store) = if self.size == 0 {
                (-1, -1)
            } else if self.stored < self.size {
                // Not full: store the image and return it.
                self.stored += 1;
                (-1, self.stored as i32 - 1)
            } else {
                let p = uniform(self.seed, self.draws);
                self.draws += 1;
                if p > 0.5 {
                    // Return a stored image, keep the new one in its slot.
                    let id = (self.draw() % self.size as u64) as i32;
                    (id, id)
                } else {
                    (-1, -1)
                }
            };
            plan.extend([src, store]);
        }
        if self.plan.as_ref().is_none_or(|p| p.host().len() != plan.len()) {
            self.plan = Some(StepValues::new(dev, plan.len()));
        }
        self.plan.as_mut().expect("allocated").set(dev, &plan);
    }

    /// The device half: the prepared plan's copies (one launch, no host copy).
    pub fn apply(&mut self, dev: &Device, fake: &Tensor, out: &mut Tensor) {
        assert_eq!(fake.shape, out.shape, "image pool query shapes");
        let (Some(plan), Some(images)) = (self.plan.as_ref(), self.images.as_mut()) else {
            panic!("ImagePool::apply without prepare");
        };
        pool_exchange(dev, plan, fake, images, out);
    }

    /// The pool as train-state tensors and metadata under `name` ("pool_A").
    pub fn state(&self, dev: &Device, name: &str) -> (Vec<NamedTensor>, Vec<(String, String)>) {
        let mut meta = vec![
            (format!("{name}.stored"), self.stored.to_string()),
            (format!("{name}.draws"), self.draws.to_string()),
        ];
        let mut tensors = vec![];
        if let (Some(t), true) = (self.images.as_ref(), self.stored > 0) {
            let s = t.shape;
            let mut v = dev.download(&t.data);
            v.truncate(self.stored * s.chw());
            tensors.push(NamedTensor::f32(name, &[self.stored, s.c, s.h, s.w], v));
            meta.push((format!("{name}.size"), self.size.to_string()));
        }
        (tensors, meta)
    }

    /// Restores `state`; errors name `path`.
    pub fn load_state(
        &mut self,
        dev: &Device,
        name: &str,
        path: &Path,
        tensors: &BTreeMap<String, NamedTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<()> {
        let get = |k: &str| -> Result<u64> {
            meta.get(&format!("{name}.{k}"))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{}: metadata {name}.{k} missing", path.display()))
        };
        let stored = get("stored")? as usize;
        self.draws = get("draws")?;
        if stored > self.size {
            bail!(
                "{}: {name} holds {stored} images but --pool-size is {}",
                path.display(),
                self.size
            );
        }
        self.stored = stored;
        self.images = None;
        if stored == 0 {
            return Ok(());
        }
        match tensors.get(name) {
            Some(NamedTensor {
                dims,
                values: Values::F32(v),
                ..
            }) if dims.len() == 4 && dims[0] == stored => {
                let s = Shape::new(self.size, dims[1], dims[2], dims[3]);
                let mut all = v.clone();
                all.resize(s.numel(), 0.0);
                self.images = Some(dev.upload_tensor(s, &all));
                Ok(())
            }
            _ => bail!("{}: tensor {name} missing or not [{stored}, C, H, W]", path.display()),
        }
    }
}
