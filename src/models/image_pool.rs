//! ImagePool (SPEC.md §7), the reference's history of generated images that D trains on:
//! for each image of a batch (stored as a detached copy),
//! - while fewer than `size` are stored: store it and return it;
//! - once full: with probability 0.5 (uniform > 0.5) return a uniformly chosen stored image and
//!   put the new one in its slot, otherwise return the new one and leave the pool unchanged;
//! - size 0 passes images through.
//!
//! The images stay on the device (one [size, C, H, W] tensor; copies per image, no host round
//! trip). The decisions are host-side draws from a counter-based hash of (seed, draw number),
//! so they are deterministic, independent of the device, and resume exactly from the counter.

use crate::checkpoint::{NamedTensor, Values};
use crate::device::Device;
use crate::ops::activation::{splitmix, uniform};
use crate::ops::tensor::copy_sample;
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
}

impl ImagePool {
    pub fn new(size: usize, seed: u64) -> Self {
        ImagePool {
            size,
            seed,
            draws: 0,
            stored: 0,
            images: None,
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

    /// Writes the images D trains on for the batch `fake` into `out` (same shape as `fake`).
    pub fn query(&mut self, dev: &Device, fake: &Tensor, out: &mut Tensor) {
        assert_eq!(fake.shape, out.shape, "image pool query shapes");
        let one = Shape::new(self.size.max(1), fake.shape.c, fake.shape.h, fake.shape.w);
        if self.images.as_ref().is_some_and(|t| t.shape != one) {
            // Another image size: the stored history does not fit it (the reference would fail
            // to concatenate); start a new history.
            self.images = None;
            self.stored = 0;
        }
        for b in 0..fake.shape.n {
            if self.size == 0 {
                copy_sample(dev, fake, b, out, b);
                continue;
            }
            let images = self.images.get_or_insert_with(|| dev.zeros_tensor(one));
            if self.stored < self.size {
                copy_sample(dev, fake, b, images, self.stored);
                self.stored += 1;
                copy_sample(dev, fake, b, out, b);
                continue;
            }
            let p = uniform(self.seed, self.draws);
            self.draws += 1;
            if p > 0.5 {
                let id = (self.draw() % self.size as u64) as usize;
                let images = self.images.as_mut().expect("pool allocated");
                copy_sample(dev, images, id, out, b);
                copy_sample(dev, fake, b, images, id);
            } else {
                copy_sample(dev, fake, b, out, b);
            }
        }
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
