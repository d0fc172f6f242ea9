// runtime.h: what emulated kernels call into (declared here, defined in scheduler.cpp), shared by
// cuda_host.h (the device-code dialect) and the emulated driver. One CUDA thread is one fiber; a
// block's fibers run on the launching host thread, switching only at barriers, warp collectives
// and exit, so every kernel is deterministic under the emulator.
#pragma once
#include <stdint.h>
#include <string.h>

#include <type_traits>

// Visible to override modules (host builds of scratch kernels loaded by the driver).
#define EMU_EXPORT __attribute__((visibility("default")))

namespace emu {

struct uint3 {
    unsigned x, y, z;
};

// A thread's cp.async copies in flight (device_fns.cuh's host versions): each has its bytes read
// at issue and lands at the cp.async.wait_group that completes its group; until then the
// destination holds a poison pattern, so reading it before the wait (or a WAR race with another
// thread's reads, seen by racecheck) shows up.
struct AsyncCopy {
    void* dst;
    uint32_t bytes;
    uint32_t group;  // the number of commits before it was issued
    unsigned char data[16];
};
struct AsyncCopies {
    static const int CAP = 64;
    AsyncCopy q[CAP];
    int n;
    uint32_t committed;  // cp.async.commit_group count
};

// The state a kernel reads through threadIdx (per fiber) and blockIdx/blockDim/gridDim (per block).
struct ThreadCtx {
    uint3 tid;
    AsyncCopies cp;
};
struct BlockCtx {
    uint3 bid, bdim, gdim;
};
EMU_EXPORT extern thread_local ThreadCtx* cur_thread;
EMU_EXPORT extern thread_local BlockCtx* cur_block;

EMU_EXPORT void syncthreads(const char* file, int line);
EMU_EXPORT void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu);

enum class ShflKind : int { Idx, Xor, Down, Up };
enum class VoteKind : int { Ballot, Any, All };
EMU_EXPORT uint64_t shfl_bits(ShflKind kind, unsigned mask, uint64_t bits, int arg, int width, const char* file,
                             int line);
EMU_EXPORT unsigned vote(VoteKind kind, unsigned mask, int pred, const char* file, int line);
// A warp collective with no CUDA counterpart, for the host versions of device_fns.cuh's warp-wide
// instructions (mma, ldmatrix): every lane of `mask` gives n words and gets all of them, all[l·n + i]
// = lane l's mine[i] (lanes outside the mask: untouched). One collective (a round of the warp's
// fibers through the scheduler) where __shfl_sync takes one per word a lane reads from another.
EMU_EXPORT void warp_gather(unsigned mask, const uint64_t* mine, int n, uint64_t* all, const char* file, int line);
EMU_EXPORT unsigned activemask();
[[noreturn]] EMU_EXPORT void trap(const char* file, int line);

template <class T>
inline T shfl(ShflKind kind, unsigned mask, T v, int arg, int width, const char* file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    b = shfl_bits(kind, mask, b, arg, width, file, line);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}

// ---- kernel registry ---------------------------------------------------------------------------
// Each KERNEL of kernels/FAMILY.cu is registered by name with a trampoline that unpacks the
// driver's void** argument array by the kernel's own parameter types.
struct ParamInfo {
    uint32_t size;
    uint32_t is_pointer;
};
using Trampoline = void (*)(void* fn, void** args);
// A later registration of the same name replaces the earlier one (PIX2PIX_EMU_OVERRIDE modules).
EMU_EXPORT void register_kernel(const char* family, const char* name, Trampoline tramp, void* fn, int nparams,
                     const ParamInfo* params);

}  // namespace emu
