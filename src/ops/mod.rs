//! One file per op family: its parameter struct, the CPU reference forward/backward, and the
//! CUDA launcher of its twin in kernels/<family>.cu.
