//! `--profile`: where a step's time goes. On CUDA, per kernel (CUDA events around every launch);
//! on every device, per phase of the step (with a synchronisation at each phase boundary).

use crate::device::cuda::KernelTime;
use crate::device::Device;
use crate::models::model::Model;
use crate::models::phases::PhaseTimes;

/// Switches profiling on for the model (phases) and the device (kernels).
pub fn start(dev: &Device, m: &mut dyn Model) {
    m.set_phase_timing(true);
    if let Device::Cuda(c) = dev {
        c.set_profiling(true);
    }
}

/// Folds the launches of the last steps into the totals (call after each profiled step so the
/// event pool stays small).
pub fn collect(dev: &Device) -> Vec<KernelTime> {
    match dev {
        Device::Cuda(c) => c.collect_kernel_times(),
        Device::Cpu => vec![],
    }
}

/// The report: phases, then kernels with calls, total ms, ms per step and share of kernel time.
pub fn render(phases: &PhaseTimes, kernels: &[KernelTime]) -> String {
    let steps = phases.steps.max(1) as f64;
    let total = phases.total();
    let mut s = format!(
        "profile over {} step(s): {:.3} ms per step (phases timed with a sync at each boundary)\n",
        phases.steps,
        total / steps * 1e3
    );
    s += &format!("{:<28} {:>10} {:>7}\n", "phase", "ms/step", "share");
    for (n, &v) in phases.names.iter().zip(&phases.secs) {
        s += &format!(
            "{n:<28} {:>10.3} {:>6.1}%\n",
            v / steps * 1e3,
            100.0 * v / total.max(1e-12)
        );
    }
    if !kernels.is_empty() {
        let ktotal: f64 = kernels.iter().map(|k| k.ms).sum();
        let emulated = kernels.iter().any(|k| k.emulated);
        if emulated {
            s += "\nEMULATED device (cuda-emu): the times below are host time of the CPU emulation, not GPU \
                  figures; the launch counts are those of the GPU path\n";
        }
        s += &format!(
            "\n{:<22} {:<11} {:>8} {:>11} {:>10} {:>7}\n",
            "kernel", "family", "calls", "total ms", "ms/step", "share"
        );
        for k in kernels {
            s += &format!(
                "{:<22} {:<11} {:>8} {:>11.3} {:>10.4} {:>6.1}%\n",
                k.name,
                k.family,
                k.calls,
                k.ms,
                k.ms / steps,
                100.0 * k.ms / ktotal.max(1e-12)
            );
        }
        s += &format!(
            "kernels: {:.3} ms{} per step in {} launches per step\n",
            ktotal / steps,
            if emulated { " of emulated (host) time" } else { "" },
            (kernels.iter().map(|k| k.calls).sum::<u64>() as f64 / steps).round()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_phases_and_kernels() {
        let p = PhaseTimes {
            names: vec!["G forward", "D step", "Adam D", "G step", "Adam G"],
            secs: vec![0.01, 0.02, 0.001, 0.03, 0.002],
            steps: 2,
        };
        let k = vec![KernelTime {
            name: "conv_fwd_k4",
            family: "conv",
            calls: 40,
            ms: 12.0,
            emulated: false,
        }];
        let r = render(&p, &k);
        assert!(r.contains("31.500 ms per step"), "{r}");
        assert!(
            r.contains("conv_fwd_k4") && r.contains("100.0%") && r.contains("20 launches per step"),
            "{r}"
        );
        assert!(!r.contains("EMULATED"), "{r}");
        let k = vec![KernelTime {
            emulated: true,
            ..k[0].clone()
        }];
        let r = render(&p, &k);
        assert!(
            r.contains("EMULATED") && r.contains("not GPU") && r.contains("emulated (host) time"),
            "{r}"
        );
    }
}
