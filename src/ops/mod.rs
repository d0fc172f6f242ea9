//! One file per op family: its parameter struct, the CPU reference forward/backward, and the
//! CUDA launcher of its twin in kernels/<family>.cu.

pub mod activation;
pub mod adam;
pub mod conv;
pub mod loss;
pub mod norm;
pub mod tensor;
