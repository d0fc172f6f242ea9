//! The training step as one CUDA graph. At batch 1 a step is a few hundred small launches, so
//! launch latency decides its time unless the launches are submitted as one graph. For a fixed
//! batch shape: the first step runs eagerly (it allocates the step's buffers and the split-K
//! workspace and loads the kernels), the second is captured (`Model::run_step` recorded on the
//! stream, nothing run) and launched, and every later step replays that graph. The values that
//! change between steps (Adam's factors, dropout seeds) are in device memory, written by
//! `Model::prepare_step` before each launch; the host counters a step advances (BN's
//! num_batches_tracked) are advanced on replay by the amount the captured step advanced them.
//!
//! A new batch shape (the smaller last batch of an epoch), `--no-graph` and per-phase timing
//! (`--profile`, which synchronises between phases) run eagerly; so does the CPU. A model's host
//! decisions (CycleGAN's image pool) are made in `prepare_step` and reach the graph as data.

use super::model::Model;
use crate::device::cuda::err_str;
use crate::device::Device;
use crate::nvtx;
use crate::tensor::{Shape, Tensor};
use anyhow::{anyhow, Result};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, DevicePtr};

/// How the last step ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepRun {
    Eager,
    Captured,
    Replayed,
}

pub struct StepGraph {
    enabled: bool,
    /// The batch shapes and input addresses the graph was captured for.
    key: Option<(Shape, Shape, u64, u64)>,
    /// A step has run eagerly at `key` (buffers and workspace are allocated).
    warm: bool,
    graph: Option<CudaGraph>,
    /// How much one step advances each network's host counters, in `Model::networks` order.
    counter_delta: Vec<Vec<i64>>,
    /// Steps run each way, for logs and tests.
    pub eager: u64,
    pub captures: u64,
    pub replays: u64,
}

impl StepGraph {
    /// `enabled`: capture and replay where possible (the default; `--no-graph` turns it off).
    pub fn new(enabled: bool) -> Self {
        StepGraph {
            enabled,
            key: None,
            warm: false,
            graph: None,
            counter_delta: vec![],
            eager: 0,
            captures: 0,
            replays: 0,
        }
    }

    /// Why steps of `model` on `dev` run eagerly, or None when they are replayed as a graph.
    pub fn eager_reason(&self, dev: &Device, model: &dyn Model) -> Option<&'static str> {
        if !dev.is_cuda() {
            Some("the CPU device has no graphs")
        } else if !self.enabled {
            Some("--no-graph")
        } else if model.phase_times().is_some() {
            Some("per-phase timing synchronises inside the step")
        } else {
            None
        }
    }

    /// Runs `model.run_step` on the batch: eagerly, by capturing it, or by replaying the graph.
    /// Call `model.prepare_step` first, as for an eager step.
    pub fn run(&mut self, dev: &Device, model: &mut dyn Model, real_a: &Tensor, real_b: &Tensor) -> Result<StepRun> {
        let Device::Cuda(c) = dev else {
            return Ok(self.run_eager(dev, model, real_a, real_b));
        };
        if self.eager_reason(dev, model).is_some() {
            self.graph = None;
            self.key = None;
            return Ok(self.run_eager(dev, model, real_a, real_b));
        }
        let ptr = |t: &Tensor| t.data.cuda().device_ptr(&c.stream).0;
        let key = (real_a.shape, real_b.shape, ptr(real_a), ptr(real_b));
        if self.key != Some(key) {
            // Another shape or input buffer: the model reallocates its buffers for it, so the old
            // graph's addresses are stale. Warm up again, then capture.
            self.graph = None;
            self.key = Some(key);
            self.warm = false;
        }
        if !self.warm {
            self.warm = true;
            return Ok(self.run_eager(dev, model, real_a, real_b));
        }
        if let Some(g) = &self.graph {
            let _r = nvtx::range("step (CUDA graph replay)");
            self.advance_counters(model);
            g.launch()
                .map_err(|e| anyhow!("launching the step's CUDA graph: {}", err_str(e)))?;
            self.replays += 1;
            return Ok(StepRun::Replayed);
        }
        let _r = nvtx::range("step (CUDA graph capture)");
        let before = counters(model);
        c.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| anyhow!("beginning the step's stream capture: {}", err_str(e)))?;
        model.run_step(dev, real_a, real_b);
        let graph = c
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(|e| anyhow!("capturing the step as a CUDA graph: {}", err_str(e)))?
            .ok_or_else(|| anyhow!("capturing the step as a CUDA graph: the capture recorded nothing"))?;
        self.counter_delta = counters(model)
            .iter()
            .zip(&before)
            .map(|(after, before)| after.iter().zip(before).map(|(a, b)| a - b).collect())
            .collect();
        graph
            .launch()
            .map_err(|e| anyhow!("launching the step's CUDA graph: {}", err_str(e)))?;
        self.graph = Some(graph);
        self.captures += 1;
        Ok(StepRun::Captured)
    }

    fn run_eager(&mut self, dev: &Device, model: &mut dyn Model, a: &Tensor, b: &Tensor) -> StepRun {
        model.run_step(dev, a, b);
        self.eager += 1;
        StepRun::Eager
    }

    fn advance_counters(&self, model: &mut dyn Model) {
        for ((_, ps), delta) in model.networks_mut().into_iter().zip(&self.counter_delta) {
            for (c, d) in ps.counters.iter_mut().zip(delta) {
                *c += d;
            }
        }
    }
}

fn counters(model: &dyn Model) -> Vec<Vec<i64>> {
    model.networks().iter().map(|(_, ps)| ps.counters.clone()).collect()
}
