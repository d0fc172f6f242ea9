// Tensor utilities: fill, copy, add, concat/split along channels.
#include "common.cuh"

KERNEL void tensor_fill(float* __restrict__ y, long long n, float v) {
    GRID_STRIDE(i, n) y[i] = v;
}
