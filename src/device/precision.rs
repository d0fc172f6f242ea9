//! `--precision fp32|tf32|bf16`: how a CUDA device multiplies in its convolutions, i.e. which
//! variant of the conv kernel lab (kernels/conv.cu) runs. Storage is fp32 in every case (weights,
//! activations, gradients, Adam moments); only the GEMM operands are rounded:
//! - `fp32` (variant 1, the default): fp32 SIMT FMAs.
//! - `tf32` (variant 2): tensor cores, operands rounded to tf32 (10 mantissa bits, cvt.rna),
//!   fp32 accumulation. PyTorch's own default for convolutions on Ampere and later.
//! - `bf16` (variant 3): tensor cores, operands rounded to bf16 (7 mantissa bits, round to
//!   nearest even), fp32 accumulation; fp32 master weights and Adam moments as under PyTorch AMP.
//!
//! The CPU reference always computes in fp32; [`Precision::round`] is the operand rounding, for
//! like-for-like checks of a variant against the reference on rounded inputs.

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];

    /// `fp32|tf32|bf16`, or the kernel-lab variant number `1|2|3`.
    pub fn parse(s: &str) -> Result<Precision> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "1" => Precision::Fp32,
            "tf32" | "2" => Precision::Tf32,
            "bf16" | "3" => Precision::Bf16,
            _ => bail!("unknown precision {s:?}: expected fp32, tf32 or bf16 (or conv variant 1, 2 or 3)"),
        })
    }

    /// `PIX2PIX_CONV_VARIANT` (1|2|3 or a precision name), when set.
    pub fn from_env() -> Result<Option<Precision>> {
        match std::env::var("PIX2PIX_CONV_VARIANT") {
            Ok(v) if !v.trim().is_empty() => Precision::parse(&v)
                .map(Some)
                .map_err(|e| e.context("PIX2PIX_CONV_VARIANT")),
            _ => Ok(None),
        }
    }

    /// The kernel-lab variant number of kernels/conv.cu.
    pub fn variant(self) -> u8 {
        match self {
            Precision::Fp32 => 1,
            Precision::Tf32 => 2,
            Precision::Bf16 => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The suffix of this variant's kernels in kernels/conv.cu (`conv_fwd_k4_tf32`).
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            Precision::Fp32 => "",
            Precision::Tf32 => "_tf32",
            Precision::Bf16 => "_bf16",
        }
    }

    /// The lowest PTX architecture (×10) whose kernels implement this variant (mma.sync with
    /// tf32/bf16 operands needs sm_80).
    pub fn min_arch(self) -> u32 {
        match self {
            Precision::Fp32 => 0,
            Precision::Tf32 | Precision::Bf16 => 80,
        }
    }

    /// The rounding this variant applies to a GEMM operand, on the host: tf32 as cvt.rna.tf32.f32
    /// (to nearest, ties away from zero), bf16 as `half::bf16::from_f32` (to nearest, ties to even).
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::Fp32 => v,
            Precision::Tf32 => {
                if !v.is_finite() {
                    return v;
                }
                f32::from_bits((v.to_bits() + 0x1000) & 0xffff_e000)
            }
            Precision::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// The unit roundoff of the operands (half an ulp at 1): 2⁻²⁴, 2⁻¹¹, 2⁻⁸.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::Fp32 => 2f64.powi(-24),
            Precision::Tf32 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn rounding() {
        // tf32 keeps 10 mantissa bits: 1 + 2⁻¹¹ is a tie, rounded away from zero to 1 + 2⁻¹⁰.
        let tie = 1.0 + 2f32.powi(-11);
        assert_eq!(Precision::Tf32.round(tie), 1.0 + 2f32.powi(-10));
        assert_eq!(Precision::Tf32.round(-tie), -(1.0 + 2f32.powi(-10)));
        assert_eq!(Precision::Tf32.round(1.0 + 2f32.powi(-12)), 1.0);
        // bf16 keeps 7: 1 + 2⁻⁸ is a tie, rounded to even (1.0); 1 + 3·2⁻⁸ to 1 + 2⁻⁶.
        assert_eq!(Precision::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(Precision::Bf16.round(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(Precision::Fp32.round(0.1), 0.1);
        assert!(Precision::Tf32.round(f32::NAN).is_nan());
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
            assert_eq!(Precision::parse(&p.variant().to_string()).unwrap(), p);
        }
        assert!(Precision::parse("fp16").is_err());
    }
}
