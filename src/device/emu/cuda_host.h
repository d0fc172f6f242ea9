// cuda_host.h: the CUDA device-code dialect of kernels/*.cu, as host C++20, for the emulated CUDA
// device (src/device/emu/). build.rs compiles every kernels/FAMILY.cu unchanged with
//     g++ -std=c++20 -x c++ -include cuda_host.h -ffp-contract=off -mfma ...
// and links the objects with the emulated driver (driver.cpp) into a libcuda.so of our own.
//
// The mapping:
// - __global__/__device__/__forceinline__/__launch_bounds__ are qualifiers only; KERNEL entry points
//   become extern "C" host functions registered by name (emu_register.h).
// - One CUDA thread is one fiber (runtime.h); threadIdx/blockIdx/blockDim/gridDim read the current
//   fiber's and block's state.
// - __shared__ is a function-static: one block runs at a time per host thread, and all fibers of
//   that block share it (thread_local, so several host threads can launch at once; plain static in
//   the sanitizer builds, which serialise launches so that AddressSanitizer sees its redzones).
// - __syncthreads() is a barrier over the block's live threads that also checks that they all wait
//   at the same __syncthreads (file:line); warp shuffles, __syncwarp and votes are warp collectives
//   that check their mask against the lanes that take part.
// - Rounding: -ffp-contract=off rounds a*b+c twice, as nvcc's -fmad=false does; fmaf() stays one
//   fused FMA (-mfma). expf/tanhf/log1p come from the host libm, not libdevice (a few ulp apart).
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "runtime.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#ifdef EMU_SHARED_STATIC
#define __shared__ static
#else
#define __shared__ static thread_local
#endif
#define __constant__ static

// ---- built-in variables ---------------------------------------------------------------------------
#define threadIdx (::emu::cur_thread->tid)
#define blockIdx (::emu::cur_block->bid)
#define blockDim (::emu::cur_block->bdim)
#define gridDim (::emu::cur_block->gdim)
#define warpSize 32

// ---- vector types ------------------------------------------------------------------------------------
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// ---- synchronisation and warp collectives ------------------------------------------------------
#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::emu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __trap() ::emu::trap(__FILE__, __LINE__)

// The call site's file and line come in through default arguments (evaluated where called).
#define EMU_SITE const char *file = __builtin_FILE(), int line = __builtin_LINE()
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, EMU_SITE) {
    return ::emu::shfl(::emu::ShflKind::Idx, mask, v, src, width, file, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, EMU_SITE) {
    return ::emu::shfl(::emu::ShflKind::Xor, mask, v, lane_mask, width, file, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, EMU_SITE) {
    return ::emu::shfl(::emu::ShflKind::Down, mask, v, (int)delta, width, file, line);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, EMU_SITE) {
    return ::emu::shfl(::emu::ShflKind::Up, mask, v, (int)delta, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int pred, EMU_SITE) {
    return ::emu::vote(::emu::VoteKind::Ballot, mask, pred, file, line);
}
inline int __any_sync(unsigned mask, int pred, EMU_SITE) {
    return (int)::emu::vote(::emu::VoteKind::Any, mask, pred, file, line);
}
inline int __all_sync(unsigned mask, int pred, EMU_SITE) {
    return (int)::emu::vote(::emu::VoteKind::All, mask, pred, file, line);
}
inline unsigned __activemask() { return ::emu::activemask(); }

// ---- atomics (real host atomics, so ThreadSanitizer and parallel launches see them as such) -------
template <class T>
inline T emu_atomic_rmw(T* p, T v, T (*op)(T, T)) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    U* q = reinterpret_cast<U*>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED);
    for (;;) {
        T o;
        memcpy(&o, &old, sizeof o);
        T n = op(o, v);
        U nu;
        memcpy(&nu, &n, sizeof nu);
        if (__atomic_compare_exchange_n(q, &old, nu, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return o;
    }
}
template <class T>
inline T atomicAdd(T* p, T v) {
    return emu_atomic_rmw<T>(p, v, [](T a, T b) { return (T)(a + b); });
}
template <class T>
inline T atomicMax(T* p, T v) {
    return emu_atomic_rmw<T>(p, v, [](T a, T b) { return a > b ? a : b; });
}
template <class T>
inline T atomicMin(T* p, T v) {
    return emu_atomic_rmw<T>(p, v, [](T a, T b) { return a < b ? a : b; });
}
template <class T>
inline T atomicExch(T* p, T v) {
    return emu_atomic_rmw<T>(p, v, [](T, T b) { return b; });
}
template <class T>
inline T atomicCAS(T* p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

// ---- device math that has no host name ---------------------------------------------------------
template <class A, class B>
inline auto min(A a, B b) {
    using T = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<T>) return (T)fmin((double)a, (double)b);
    else return (T)b < (T)a ? (T)b : (T)a;
}
template <class A, class B>
inline auto max(A a, B b) {
    using T = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<T>) return (T)fmax((double)a, (double)b);
    else return (T)a < (T)b ? (T)b : (T)a;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }
