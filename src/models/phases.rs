//! Phases of a training step: one helper that opens an NVTX range per phase and, when phase
//! timing is on (`--profile`, the step benchmark), synchronises the device at each boundary and
//! adds the phase's seconds to a table. Steps only name their phases; nothing else about
//! profiling lives in a step's algorithm.

use crate::device::Device;
use crate::nvtx;
use std::time::Instant;

/// Seconds spent per named phase, summed over `steps` steps, in first-seen order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    pub names: Vec<&'static str>,
    pub secs: Vec<f64>,
    pub steps: u64,
}

impl PhaseTimes {
    pub fn add(&mut self, name: &'static str, secs: f64) {
        match self.names.iter().position(|&n| n == name) {
            Some(i) => self.secs[i] += secs,
            None => {
                self.names.push(name);
                self.secs.push(secs);
            }
        }
    }

    pub fn total(&self) -> f64 {
        self.secs.iter().sum()
    }
}

/// Marks the phases of one step. Created at the start of a step with the model's (taken) timing
/// table, `phase` at each boundary, `finish` hands the table back.
pub struct StepTimer<'a> {
    dev: &'a Device,
    times: Option<PhaseTimes>,
    current: Option<(&'static str, nvtx::Range, Option<Instant>)>,
}

impl<'a> StepTimer<'a> {
    pub fn new(dev: &'a Device, times: Option<PhaseTimes>) -> Self {
        if times.is_some() {
            dev.synchronize();
        }
        StepTimer {
            dev,
            times,
            current: None,
        }
    }

    /// Ends the current phase (if any) and starts `name`.
    pub fn phase(&mut self, name: &'static str) {
        self.end();
        let start = self.times.is_some().then(Instant::now);
        self.current = Some((name, nvtx::range(name), start));
    }

    fn end(&mut self) {
        if let Some((name, range, start)) = self.current.take() {
            drop(range);
            if let (Some(t), Some(start)) = (self.times.as_mut(), start) {
                self.dev.synchronize();
                t.add(name, start.elapsed().as_secs_f64());
            }
        }
    }

    /// Ends the last phase and returns the timing table (None when timing is off).
    pub fn finish(mut self) -> Option<PhaseTimes> {
        self.end();
        let mut t = self.times.take();
        if let Some(t) = t.as_mut() {
            t.steps += 1;
        }
        t
    }
}
