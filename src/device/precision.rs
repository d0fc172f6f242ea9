//! `--precision fp32|tf32|bf16`: how a CUDA device multiplies in its convolutions. Storage is
//! fp32 in every case (weights, activations, gradients, Adam moments); only the GEMM operands are
//! rounded:
//! - `fp32` (the default): fp32 SIMT FMAs.
//! - `tf32`: tensor cores, operands rounded to tf32 (10 mantissa bits, cvt.rna), fp32
//!   accumulation. PyTorch's own default for convolutions on Ampere and later.
//! - `bf16`: tensor cores, operands rounded to bf16 (7 mantissa bits, round to nearest even),
//!   fp32 accumulation; fp32 master weights and Adam moments as under PyTorch AMP.
//!
//! Each precision runs one variant of the conv kernel lab (kernels/conv_tiles.cuh), [`ConvVariant`]:
//! v1 fp32, v2 tf32, v3 bf16 by default, and v4 / v5 (tf32 / bf16 through a cp.async pipeline)
//! or v6 / v7 (bf16 / tf32 on 128×128 tiles) when asked for by number
//! (`PIX2PIX_CONV_VARIANT=4|5|6|7`).
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

    /// `fp32|tf32|bf16`, or the number `1|2|3` of its default kernel-lab variant.
    pub fn parse(s: &str) -> Result<Precision> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "1" => Precision::Fp32,
            "tf32" | "2" => Precision::Tf32,
            "bf16" | "3" => Precision::Bf16,
            _ => bail!("unknown precision {s:?}: expected fp32, tf32 or bf16 (or conv variant 1, 2 or 3)"),
        })
    }

    /// The conv variant this precision runs unless another is asked for.
    pub fn variant(self) -> ConvVariant {
        match self {
            Precision::Fp32 => ConvVariant::V1,
            Precision::Tf32 => ConvVariant::V2,
            Precision::Bf16 => ConvVariant::V3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The lowest PTX architecture (×10) whose kernels implement this precision (mma.sync with
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

/// One variant of the conv kernel lab (kernels/conv_tiles.cuh): how the implicit GEMMs stage their tiles
/// and multiply. Variants of one precision compute the same results (v4 and v7 are v2 bit for bit,
/// v5 and v6 are v3); they differ in speed only, which benches/kernels.rs measures side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// fp32 SIMT FMAs, tiles staged through registers (the baseline).
    V1,
    /// tf32 mma.sync, tiles staged through registers.
    V2,
    /// bf16 mma.sync, tiles staged through registers.
    V3,
    /// tf32 mma.sync, tiles staged by a 3-stage cp.async pipeline, fragments read by ldmatrix.
    V4,
    /// bf16 mma.sync, tiles staged by v4's cp.async pipeline, fragments paired as they are read.
    V5,
    /// bf16 mma.sync on 128×128 tiles (K-steps of 32), bf16 tiles in shared memory read by ldmatrix.
    V6,
    /// tf32 mma.sync on 128×128 tiles (K-steps of 16), tf32 tiles in shared memory read by ldmatrix.
    V7,
}

impl ConvVariant {
    pub const ALL: [ConvVariant; 7] = [
        ConvVariant::V1,
        ConvVariant::V2,
        ConvVariant::V3,
        ConvVariant::V4,
        ConvVariant::V5,
        ConvVariant::V6,
        ConvVariant::V7,
    ];

    /// `1`..`7` (or `v1`..`v7`), or a precision name for its default variant.
    pub fn parse(s: &str) -> Result<ConvVariant> {
        let t = s.trim().to_ascii_lowercase();
        let num = t.strip_prefix('v').unwrap_or(&t);
        Ok(match num {
            "1" => ConvVariant::V1,
            "2" => ConvVariant::V2,
            "3" => ConvVariant::V3,
            "4" => ConvVariant::V4,
            "5" => ConvVariant::V5,
            "6" => ConvVariant::V6,
            "7" => ConvVariant::V7,
            _ => match Precision::parse(&t) {
                Ok(p) => p.variant(),
                Err(_) => bail!("unknown conv variant {s:?}: expected 1 to 7 (or fp32, tf32, bf16)"),
            },
        })
    }

    /// `PIX2PIX_CONV_VARIANT` (1..7 or a precision name), when set.
    pub fn from_env() -> Result<Option<ConvVariant>> {
        match std::env::var("PIX2PIX_CONV_VARIANT") {
            Ok(v) if !v.trim().is_empty() => ConvVariant::parse(&v)
                .map(Some)
                .map_err(|e| e.context("PIX2PIX_CONV_VARIANT")),
            _ => Ok(None),
        }
    }

    /// The variant's number in kernels/conv_tiles.cuh (1..7).
    pub fn number(self) -> u8 {
        match self {
            ConvVariant::V1 => 1,
            ConvVariant::V2 => 2,
            ConvVariant::V3 => 3,
            ConvVariant::V4 => 4,
            ConvVariant::V5 => 5,
            ConvVariant::V6 => 6,
            ConvVariant::V7 => 7,
        }
    }

    pub fn from_number(n: u8) -> Option<ConvVariant> {
        ConvVariant::ALL.into_iter().find(|v| v.number() == n)
    }

    /// How it multiplies.
    pub fn precision(self) -> Precision {
        match self {
            ConvVariant::V1 => Precision::Fp32,
            ConvVariant::V2 | ConvVariant::V4 | ConvVariant::V7 => Precision::Tf32,
            ConvVariant::V3 | ConvVariant::V5 | ConvVariant::V6 => Precision::Bf16,
        }
    }

    /// The suffix of its kernels in kernels/conv.cu (`conv_fwd_k4_tf32_async`).
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            ConvVariant::V1 => "",
            ConvVariant::V2 => "_tf32",
            ConvVariant::V3 => "_bf16",
            ConvVariant::V4 => "_tf32_async",
            ConvVariant::V5 => "_bf16_async",
            ConvVariant::V6 => "_bf16_128",
            ConvVariant::V7 => "_tf32_128",
        }
    }

    /// The side of its square output tile: one block computes tile × tile outputs of the GEMM.
    pub fn tile(self) -> usize {
        match self {
            ConvVariant::V6 | ConvVariant::V7 => 128,
            _ => 64,
        }
    }

    /// The lowest PTX architecture (×10) whose kernels implement it (cp.async needs sm_80 too).
    pub fn min_arch(self) -> u32 {
        self.precision().min_arch()
    }
}

/// `v4 tf32`.
impl std::fmt::Display for ConvVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{} {}", self.number(), self.precision())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::{ConvVariant, Precision};

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
            assert_eq!(Precision::parse(&p.variant().number().to_string()).unwrap(), p);
            assert_eq!(p.variant().precision(), p);
        }
        assert!(Precision::parse("fp16").is_err());
    }

    #[test]
    fn variants() {
        for v in ConvVariant::ALL {
            assert_eq!(ConvVariant::parse(&v.number().to_string()).unwrap(), v);
            assert_eq!(ConvVariant::parse(&format!("V{}", v.number())).unwrap(), v);
            assert_eq!(ConvVariant::from_number(v.number()), Some(v));
        }
        assert_eq!(ConvVariant::parse("tf32").unwrap(), ConvVariant::V2);
        assert_eq!(ConvVariant::V4.precision(), Precision::Tf32);
        assert_eq!(ConvVariant::V4.to_string(), "v4 tf32");
        assert_eq!(ConvVariant::V5.precision(), Precision::Bf16);
        assert_eq!(ConvVariant::V5.to_string(), "v5 bf16");
        assert_eq!(ConvVariant::V6.precision(), Precision::Bf16);
        assert_eq!(ConvVariant::V6.tile(), 128);
        assert_eq!(ConvVariant::V7.precision(), Precision::Tf32);
        assert_eq!(ConvVariant::V7.tile(), 128);
        assert!(ConvVariant::parse("8").is_err());
        assert!(Precision::parse("4").is_err());
    }
}
