//! Learning-rate schedules (SPEC.md §5). Adam itself is `ops::adam`, run per network by
//! `nn::ParamStore::adam`. The current reference steps the scheduler at the end of each epoch, so
//! epoch e (1-based) trains with t = e − epoch_count scheduler steps taken.

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrPolicy {
    /// Constant for n_epochs, then linear decay over n_epochs_decay (the default).
    Linear,
    /// ×0.1 every `lr_decay_iters` epochs.
    Step { lr_decay_iters: usize },
    /// Cosine annealing to 0 over n_epochs (T_max = n_epochs).
    Cosine,
}

impl LrPolicy {
    pub fn parse(s: &str, lr_decay_iters: usize) -> Result<Self> {
        Ok(match s {
            "linear" => LrPolicy::Linear,
            "step" => LrPolicy::Step { lr_decay_iters },
            "cosine" => LrPolicy::Cosine,
            "plateau" => bail!(
                "--lr-policy plateau is not supported yet (it needs a validation metric); use linear, step or cosine"
            ),
            _ => bail!("unknown --lr-policy {s:?}: expected linear, step or cosine"),
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub lr: f64,
    pub policy: LrPolicy,
    pub n_epochs: usize,
    pub n_epochs_decay: usize,
    pub epoch_count: usize,
}

impl Schedule {
    /// The learning rate epoch `epoch` (1-based, as printed) trains with.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let t = epoch.saturating_sub(self.epoch_count) as f64;
        match self.policy {
            LrPolicy::Linear => {
                let over = (t + self.epoch_count as f64 - self.n_epochs as f64).max(0.0);
                self.lr * (1.0 - over / (self.n_epochs_decay as f64 + 1.0))
            }
            LrPolicy::Step { lr_decay_iters } => self.lr * 0.1f64.powi((t as usize / lr_decay_iters.max(1)) as i32),
            LrPolicy::Cosine => self.lr * (1.0 + (std::f64::consts::PI * t / self.n_epochs.max(1) as f64).cos()) / 2.0,
        }
    }

    /// The last epoch (n_epochs + n_epochs_decay).
    pub fn last_epoch(&self) -> usize {
        self.n_epochs + self.n_epochs_decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_policy_matches_the_reference() {
        let s = Schedule {
            lr: 2e-4,
            policy: LrPolicy::Linear,
            n_epochs: 100,
            n_epochs_decay: 100,
            epoch_count: 1,
        };
        assert_eq!(s.lr_at(1), 2e-4);
        assert_eq!(s.lr_at(100), 2e-4);
        assert!((s.lr_at(101) - 2e-4 * 100.0 / 101.0).abs() < 1e-12);
        assert!((s.lr_at(200) - 2e-4 / 101.0).abs() < 1e-12);
        // Resuming at epoch 150 with --epoch-count 150 gives the same rate as an unbroken run.
        let r = Schedule { epoch_count: 150, ..s };
        assert!((r.lr_at(150) - s.lr_at(150)).abs() < 1e-15);
    }

    #[test]
    fn step_and_cosine() {
        let s = Schedule {
            lr: 1.0,
            policy: LrPolicy::Step { lr_decay_iters: 50 },
            n_epochs: 100,
            n_epochs_decay: 0,
            epoch_count: 1,
        };
        assert_eq!(s.lr_at(50), 1.0);
        assert!((s.lr_at(51) - 0.1).abs() < 1e-12);
        let c = Schedule {
            policy: LrPolicy::Cosine,
            ..s
        };
        assert!((c.lr_at(51) - 0.5).abs() < 1e-12);
    }
}
