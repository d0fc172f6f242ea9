//! The losses of recent steps, read without stopping the device. After each step the loss
//! buffer is copied device→host asynchronously into one of a few pinned slots, with an event
//! behind the copy; the training loop takes rows back, in order, as their events complete, so the
//! host never waits for the stream in the loop (on the CPU the copy is immediate). When every
//! slot is in flight the oldest is waited for: the host runs at most `SLOTS` steps ahead, which
//! bounds how late a non-finite loss is seen. `drain` waits for all, before a checkpoint is saved.

use crate::device::cuda::err_str;
use crate::device::Device;
use crate::tensor::Storage;
use cudarc::driver::{CudaEvent, PinnedHostSlice};
use std::collections::VecDeque;

/// Steps the host may run ahead of the losses it has read.
pub const SLOTS: usize = 8;

enum Slot {
    Cpu(Vec<f32>),
    Cuda {
        host: PinnedHostSlice<f32>,
        done: CudaEvent,
    },
}

/// Rows of type `R` (what the loop knows of a step) waiting for their losses.
pub struct LossReader<R> {
    slots: Vec<Slot>,
    /// In flight, oldest first: (slot, row).
    pending: VecDeque<(usize, R)>,
    next: usize,
}

impl<R> LossReader<R> {
    /// Slots for a loss buffer of `len` floats.
    pub fn new(dev: &Device, len: usize) -> Self {
        let slots = (0..SLOTS)
            .map(|_| match dev {
                Device::Cpu => Slot::Cpu(vec![0.0; len]),
                Device::Cuda(c) => {
                    // SAFETY: the memory is written by the copy before it is read (`take`).
                    let host = unsafe { c.ctx.alloc_pinned_with_flags::<f32>(len.max(1), 0) }
                        .unwrap_or_else(|e| panic!("allocating pinned memory for the losses: {}", err_str(e)));
                    let done = c
                        .ctx
                        .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))
                        .unwrap_or_else(|e| panic!("creating a CUDA event: {}", err_str(e)));
                    Slot::Cuda { host, done }
                }
            })
            .collect();
        LossReader {
            slots,
            pending: VecDeque::new(),
            next: 0,
        }
    }

    /// Queues the copy of `losses` (the step just submitted) with its row; returns the rows
    /// whose losses have arrived, oldest first.
    pub fn push(&mut self, dev: &Device, losses: &Storage, row: R) -> Vec<(R, Vec<f32>)> {
        let mut out = vec![];
        if self.pending.len() == SLOTS {
            // Every slot is in flight: wait for the oldest.
            out.extend(self.take_front(true));
        }
        let i = self.next;
        self.next = (self.next + 1) % SLOTS;
        match (&mut self.slots[i], dev) {
            (Slot::Cpu(v), _) => {
                let n = v.len();
                v.copy_from_slice(&losses.cpu()[..n])
            }
            (Slot::Cuda { host, done }, Device::Cuda(c)) => {
                let src = losses.cuda().slice(..host.len());
                c.stream
                    .memcpy_dtoh(&src, host)
                    .unwrap_or_else(|e| panic!("copying the losses to the host: {}", err_str(e)));
                done.record(&c.stream)
                    .unwrap_or_else(|e| panic!("recording a CUDA event: {}", err_str(e)));
            }
            _ => panic!("loss reader used with another device"),
        }
        self.pending.push_back((i, row));
        while let Some(r) = self.take_front(false) {
            out.push(r);
        }
        out
    }

    /// Waits for every queued copy; returns their rows, oldest first.
    pub fn drain(&mut self) -> Vec<(R, Vec<f32>)> {
        let mut out = vec![];
        while let Some(r) = self.take_front(true) {
            out.push(r);
        }
        out
    }

    /// The oldest row if its copy has landed (or, with `wait`, once it has).
    fn take_front(&mut self, wait: bool) -> Option<(R, Vec<f32>)> {
        let &(i, _) = self.pending.front()?;
        let values = match &self.slots[i] {
            Slot::Cpu(v) => v.clone(),
            Slot::Cuda { host, done } => {
                if !wait && !done.is_complete() {
                    return None;
                }
                done.synchronize()
                    .unwrap_or_else(|e| panic!("waiting for the losses: {}", err_str(e)));
                host.as_slice()
                    .unwrap_or_else(|e| panic!("reading the losses: {}", err_str(e)))
                    .to_vec()
            }
        };
        let (_, row) = self.pending.pop_front().expect("checked above");
        Some((row, values))
    }
}
