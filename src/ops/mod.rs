//! One file per op family: its parameter struct, the CPU reference forward/backward, and the
//! CUDA launcher of its twin in kernels/<family>.cu.

pub mod activation;
pub mod adam;
pub mod conv;
pub mod loss;
pub mod norm;
pub mod tensor;

/// The #[repr(C)] argument structs have the size the kernels' PTX declares for them (the emulator
/// checks the host C++ build against the same PTX, so all three sides agree).
#[cfg(test)]
mod abi {
    use crate::device::cuda::{embedded, ptx_param_sizes};
    use std::mem::size_of;

    #[test]
    fn argument_structs_match_the_ptx() {
        let required = embedded::REQUIRED;
        if embedded::PTX_TABLE.is_empty() {
            assert!(!required, "PIX2PIX_REQUIRE_CUDA=1 but no PTX embedded");
            return;
        }
        // (kernel, the struct's parameter position counted from the last, its Rust size)
        for (kernel, from_end, rust) in [
            ("conv_fwd_k4", 0, size_of::<super::conv::cuda::ConvArgs>()),
            ("conv_wgrad_kx", 0, size_of::<super::conv::cuda::ConvArgs>()),
            ("bn_forward_train", 0, size_of::<super::norm::BnArgs>()),
            ("bn_backward", 0, size_of::<super::norm::BnArgs>()),
            ("adam_update", 1, size_of::<super::adam::AdamArgs>()),
        ] {
            let ptx = ptx_param_sizes(kernel).unwrap_or_else(|| panic!("{kernel} not in the PTX"));
            assert_eq!(
                ptx.iter().rev().nth(from_end),
                Some(&rust),
                "{kernel}: PTX parameter sizes {ptx:?}, Rust struct {rust} bytes"
            );
        }
    }
}
