// driver.cpp: the part of the CUDA driver API that cudarc calls, implemented on the CPU. Built by
// build.rs into a shared library whose SONAME is libcuda.so; src/device/emu.rs loads it before
// cudarc's first dlopen("libcuda.so"), so cudarc, our launchers and the PTX-table lookup run
// unchanged above it. Kernels are the host builds of kernels/*.cu (registered by name); a module
// is the real PTX, whose `.entry` names and parameter lists are checked against those builds.
//
// Fidelity: fresh allocations are NaN (0xFF bytes); every pointer argument of a launch must point
// into a live allocation; launch limits, the shared-memory limit and device attributes are those
// of a real GPU (PIX2PIX_EMU_GPU=h100|a100|v100); the driver's CUDA version is 13.0 or
// PIX2PIX_EMU_DRIVER's, and PTX newer than it loads is refused as a real driver refuses it
// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION); a fault inside a kernel is sticky for the context,
// as on a GPU. Stream capture records kernels (parameters copied), memsets, device copies and
// events into a graph that cuGraphLaunch replays; what cannot be captured (host copies, a
// synchronisation, an allocation) fails and invalidates the capture, as on a GPU. Everything runs synchronously on the calling thread, so streams and events are
// trivially ordered and an event's time is host time (never a GPU figure).
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "scheduler.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_INVALID_PTX = 218,
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_PERMITTED = 800,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    CUDA_ERROR_UNKNOWN = 999,
};

#define API extern "C" __attribute__((visibility("default")))

namespace {

// ---- the GPU it pretends to be -------------------------------------------------------------------
struct Profile {
    const char* key;
    const char* name;
    int major, minor, sms, smem_optin, smem_per_sm, l2, clock_khz, mem_clock_khz, bus_width;
    unsigned long long total_mem;
};
const Profile PROFILES[] = {
    {"h100", "NVIDIA H100 80GB HBM3", 9, 0, 132, 232448, 233472, 52428800, 1980000, 2619000, 5120, 85028896768ull},
    {"a100", "NVIDIA A100-SXM4-80GB", 8, 0, 108, 166912, 167936, 41943040, 1410000, 1593000, 5120, 85097971712ull},
    {"v100", "Tesla V100-SXM2-32GB", 7, 0, 80, 98304, 98304, 6291456, 1530000, 877000, 4096, 34359738368ull},
};
const int DRIVER_VERSION = 13000;  // CUDA 13.0 unless PIX2PIX_EMU_DRIVER says otherwise

// The CUDA version this driver reports (cuDriverGetVersion): PIX2PIX_EMU_DRIVER=12040 is a CUDA 12.4
// driver, which, like a real one, refuses PTX newer than it knows.
int driver_version() {
    static const int v = [] {
        const char* e = getenv("PIX2PIX_EMU_DRIVER");
        if (!e) return DRIVER_VERSION;
        const int d = atoi(e);
        if (d < 10000 || d > 99999) {
            fprintf(stderr, "cuda-emu: PIX2PIX_EMU_DRIVER=%s is not a CUDA version like 12040; using %d\n", e,
                    DRIVER_VERSION);
            return DRIVER_VERSION;
        }
        return d;
    }();
    return v;
}

int max_ptx_isa(int v);

// The newest PTX ISA this driver loads: what its CUDA version loads, or PIX2PIX_EMU_PTX_MAX=80 (8.0), a
// driver that refuses PTX its version should load (to test the caller's fallback on
// CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
int ptx_isa_limit() {
    static const int v = [] {
        const char* e = getenv("PIX2PIX_EMU_PTX_MAX");
        return e && atoi(e) > 0 ? atoi(e) : max_ptx_isa(driver_version());
    }();
    return v;
}

// The newest PTX ISA (major×10 + minor) a driver of CUDA `v` loads, from the PTX ISA's release
// history: CUDA 11.x → 7.x, 12.0–12.5 → 8.0–8.5, 12.6 → 8.5, 12.7/12.8/12.9 → 8.6/8.7/8.8, 13.x → 9.x.
int max_ptx_isa(int v) {
    const int major = v / 1000, minor = (v % 1000) / 10;
    if (major >= 13) return 90 + minor;
    if (major == 12) return minor <= 5 ? 80 + minor : minor == 6 ? 85 : 79 + minor;
    if (major == 11) return 70 + minor;
    return 0;
}
const int SMEM_DEFAULT = 49152;    // per block without opting in

struct Kernel {
    std::string family, name;
    emu::Trampoline tramp;
    void* fn;
    std::vector<emu::ParamInfo> params;
};

struct PtxEntry {
    std::string name;
    std::vector<unsigned> param_sizes;
    unsigned maxntid = 0;  // the threads a block may have (`.maxntid`, from __launch_bounds__); 0: no bound
};
struct Module {
    std::vector<PtxEntry> entries;
    int target = 0;
};
struct Function {
    const Kernel* kernel;
    int max_dynamic_smem = SMEM_DEFAULT;
    unsigned max_threads = 1024;  // the device limit, or the kernel's `.maxntid` when it declares one
};
struct Event {
    double ms = 0;
    bool recorded = false;
};
// A recorded operation of a captured stream. Kernel parameters are copied at capture (by the
// kernel's own parameter sizes), as CUDA does.
struct Node {
    enum Kind { Kernel, Memset, MemcpyDtoD, EventRecord } kind;
    const Function* fn = nullptr;
    emu::uint3 grid{}, block{};
    std::vector<std::vector<char>> params;
    CUdeviceptr dst = 0, src = 0;
    size_t bytes = 0;
    unsigned char value = 0;
    Event* event = nullptr;
};
struct Graph {
    std::vector<Node> nodes;
};
struct Stream {
    Graph* capture = nullptr;  // while capturing
    std::string invalidated;   // why the capture can no longer end in a graph
};
struct Context {
    int unused = 0;
};

struct State {
    std::mutex mu;
    const Profile* gpu = &PROFILES[0];
    emu::BlockOrder order = emu::BlockOrder::Forward;
    uint64_t seed = 0;
    bool initialised = false;
    std::map<uintptr_t, size_t> allocs;  // base → bytes
    unsigned long long allocated = 0;
    std::atomic<uint64_t> launches{0};        // cuLaunchKernel calls that ran (not captured)
    std::atomic<uint64_t> graph_launches{0};  // cuGraphLaunch calls
    std::atomic<uint64_t> graph_kernels{0};   // kernels run by graph replays
    std::atomic<int> sticky{CUDA_SUCCESS};
    std::string sticky_msg;
    Context primary;
    std::mutex launch_mu;  // sanitizer builds run one launch at a time (static __shared__)
};
State& st() {
    static State* s = new State();
    return *s;
}
std::map<std::string, Kernel>& registry() {
    static auto* r = new std::map<std::string, Kernel>();
    return *r;
}

thread_local std::string last_error;
thread_local Context* current = nullptr;

CUresult err(CUresult code, std::string msg) {
    last_error = std::move(msg);
    return code;
}
CUresult ok() {
    last_error.clear();
    return CUDA_SUCCESS;
}

CUresult check_sticky() {
    const int s = st().sticky.load();
    if (s != CUDA_SUCCESS) {
        std::lock_guard<std::mutex> g(st().mu);
        last_error = st().sticky_msg;
        return s;
    }
    return CUDA_SUCCESS;
}

// An operation the stream cannot record while capturing (a host copy, a synchronisation, an
// allocation): as on a GPU it fails and invalidates the capture.
CUresult capture_refuses(void* stream, const char* what) {
    auto* st = static_cast<Stream*>(stream);
    if (!st || !st->capture) return CUDA_SUCCESS;
    std::string why = std::string(what) + " while the stream is being captured into a graph";
    if (st->invalidated.empty()) st->invalidated = why;
    return err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, why);
}
Graph* capturing(void* stream) {
    auto* st = static_cast<Stream*>(stream);
    return st && st->invalidated.empty() ? st->capture : nullptr;
}

const char* mode_name() {
#if defined(EMU_ASAN)
    return "memcheck";
#elif defined(EMU_TSAN)
    return "racecheck";
#else
    return "plain";
#endif
}

// ---- PTX: the `.entry` names, their parameter sizes, the target ------------------------------------
unsigned ptx_type_size(const std::string& t) {
    if (t.size() < 3) return 0;
    const int bits = atoi(t.c_str() + 2);
    return bits > 0 ? (unsigned)bits / 8 : 0;
}

CUresult parse_ptx(const char* text, Module* m, std::string* why) {
    const std::string s(text);
    size_t t = s.find(".target");
    if (t != std::string::npos) {
        size_t p = s.find("sm_", t);
        if (p != std::string::npos) m->target = atoi(s.c_str() + p + 3);
    }
    size_t v = s.find(".version");
    if (v != std::string::npos) {
        int major = 0, minor = 0;
        sscanf(s.c_str() + v + 8, " %d.%d", &major, &minor);
        const int isa = major * 10 + minor, max = ptx_isa_limit();
        if (isa > max) {
            *why = "PTX .version " + std::to_string(major) + "." + std::to_string(minor) + " is newer than this driver (CUDA " +
                   std::to_string(driver_version() / 1000) + "." + std::to_string(driver_version() % 1000 / 10) +
                   ", PTX ISA up to " + std::to_string(max / 10) + "." + std::to_string(max % 10) + ") accepts";
            return CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
        }
    }
    size_t pos = 0;
    while ((pos = s.find(".entry", pos)) != std::string::npos) {
        pos += 6;
        size_t a = s.find_first_not_of(" \t\r\n", pos);
        size_t b = s.find_first_of(" \t\r\n(", a);
        if (a == std::string::npos || b == std::string::npos) break;
        PtxEntry e;
        e.name = s.substr(a, b - a);
        size_t open = s.find('(', b), close = s.find(')', b);
        size_t brace = s.find('{', b);
        if (open != std::string::npos && close != std::string::npos && open < brace) {
            std::string list = s.substr(open + 1, close - open - 1);
            size_t q = 0;
            while ((q = list.find(".param", q)) != std::string::npos) {
                q += 6;
                size_t end = list.find(',', q);
                std::string decl = list.substr(q, end == std::string::npos ? std::string::npos : end - q);
                unsigned size = 0, count = 1;
                size_t k = 0;
                while (k < decl.size()) {
                    size_t w0 = decl.find_first_not_of(" \t\r\n", k);
                    if (w0 == std::string::npos) break;
                    size_t w1 = decl.find_first_of(" \t\r\n", w0);
                    std::string word = decl.substr(w0, w1 == std::string::npos ? std::string::npos : w1 - w0);
                    if (word.size() > 2 && word[0] == '.' && strchr("busf", word[1]) && isdigit((unsigned char)word[2]))
                        size = ptx_type_size(word);
                    size_t br = word.find('[');
                    if (br != std::string::npos) count = (unsigned)atoi(word.c_str() + br + 1);
                    k = w1 == std::string::npos ? decl.size() : w1;
                }
                e.param_sizes.push_back(size * count);
                if (end == std::string::npos) break;
                q = end;
            }
        }
        // Directives between the parameter list and the body: `.maxntid x, y, z` (a block may
        // have at most x·y·z threads; a larger launch fails on a GPU).
        size_t nt = s.find(".maxntid", b);
        if (nt != std::string::npos && nt < brace) {
            unsigned x = 1, y = 1, z = 1;
            const int got = sscanf(s.c_str() + nt + 8, " %u , %u , %u", &x, &y, &z);
            if (got >= 1) e.maxntid = x * (got >= 2 ? y : 1) * (got >= 3 ? z : 1);
        }
        m->entries.push_back(std::move(e));
        pos = b;
    }
    if (m->entries.empty()) {
        *why = "the module image has no .entry (not PTX?)";
        return CUDA_ERROR_INVALID_PTX;
    }
    return CUDA_SUCCESS;
}

std::string sizes_str(const std::vector<unsigned>& v) {
    std::string r;
    for (size_t i = 0; i < v.size(); ++i) r += (i ? "," : "") + std::to_string(v[i]);
    return r;
}

// Is [p, p+1) inside a live allocation?
bool is_device_ptr(uintptr_t p) {
    auto& a = st().allocs;
    auto it = a.upper_bound(p);
    if (it == a.begin()) return false;
    --it;
    return p >= it->first && p <= it->first + it->second;  // one past the end is a valid (empty) view
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void configure() {
    State& s = st();
    if (const char* g = getenv("PIX2PIX_EMU_GPU")) {
        for (const Profile& p : PROFILES)
            if (strcmp(g, p.key) == 0) s.gpu = &p;
    }
    if (const char* o = getenv("PIX2PIX_EMU_ORDER")) {
        if (strcmp(o, "reverse") == 0) s.order = emu::BlockOrder::Reverse;
        else if (strncmp(o, "shuffle", 7) == 0) {
            s.order = emu::BlockOrder::Shuffle;
            s.seed = o[7] == ':' ? strtoull(o + 8, nullptr, 10) : 1;
        }
    }
    // Override modules: host builds of scratch kernels that replace registered ones (tests of the
    // emulator itself plant bugs this way).
    if (const char* ov = getenv("PIX2PIX_EMU_OVERRIDE")) {
        std::string list(ov);
        size_t a = 0;
        while (a <= list.size()) {
            size_t b = list.find(':', a);
            std::string path = list.substr(a, b == std::string::npos ? std::string::npos : b - a);
            if (!path.empty() && !dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL))
                fprintf(stderr, "cuda-emu: cannot load override %s: %s\n", path.c_str(), dlerror());
            else if (!path.empty())
                fprintf(stderr, "cuda-emu: kernels overridden by %s\n", path.c_str());
            if (b == std::string::npos) break;
            a = b + 1;
        }
    }
}

}  // namespace

// ---- registration (called by the kernels' static registrars) ------------------------------------------
namespace emu {
void register_kernel(const char* family, const char* name, Trampoline tramp, void* fn, int nparams,
                     const ParamInfo* params) {
    Kernel k{family, name, tramp, fn, std::vector<ParamInfo>(params, params + nparams)};
    registry()[name] = std::move(k);
}
}  // namespace emu

// ---- initialisation, devices, contexts -----------------------------------------------------------
API CUresult cuInit(unsigned int) {
    State& s = st();
    std::lock_guard<std::mutex> g(s.mu);
    if (!s.initialised) {
        configure();
        s.initialised = true;
    }
    return ok();
}
API CUresult cuDriverGetVersion(int* v) {
    *v = driver_version();
    return ok();
}
API CUresult cuDeviceGetCount(int* n) {
    if (!st().initialised) return err(CUDA_ERROR_NOT_INITIALIZED, "cuInit was not called");
    *n = 1;
    return ok();
}
API CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return err(CUDA_ERROR_INVALID_DEVICE, "the emulated driver has one device, cuda:0");
    *d = 0;
    return ok();
}
API CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, (size_t)len, "%s (emulated, cuda-emu %s)", st().gpu->name, mode_name());
    return ok();
}
API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = st().gpu->total_mem;
    return ok();
}
API CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice) {
    memset(uuid, 0, 16);
    memcpy(uuid, "pix2pix-cuda-emu", 16);
    return ok();
}
API CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }

API CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice) {
    const Profile& p = *st().gpu;
    switch (attr) {
        case 1: *v = 1024; break;                 // MAX_THREADS_PER_BLOCK
        case 2: *v = 1024; break;                 // MAX_BLOCK_DIM_X
        case 3: *v = 1024; break;                 // MAX_BLOCK_DIM_Y
        case 4: *v = 64; break;                   // MAX_BLOCK_DIM_Z
        case 5: *v = 2147483647; break;           // MAX_GRID_DIM_X
        case 6: *v = 65535; break;                // MAX_GRID_DIM_Y
        case 7: *v = 65535; break;                // MAX_GRID_DIM_Z
        case 8: *v = SMEM_DEFAULT; break;         // MAX_SHARED_MEMORY_PER_BLOCK
        case 9: *v = 65536; break;                // TOTAL_CONSTANT_MEMORY
        case 10: *v = 32; break;                  // WARP_SIZE
        case 12: *v = 65536; break;               // MAX_REGISTERS_PER_BLOCK
        case 13: *v = p.clock_khz; break;         // CLOCK_RATE
        case 16: *v = p.sms; break;               // MULTIPROCESSOR_COUNT
        case 36: *v = p.mem_clock_khz; break;     // MEMORY_CLOCK_RATE
        case 37: *v = p.bus_width; break;         // GLOBAL_MEMORY_BUS_WIDTH
        case 38: *v = p.l2; break;                // L2_CACHE_SIZE
        case 39: *v = 2048; break;                // MAX_THREADS_PER_MULTIPROCESSOR
        case 75: *v = p.major; break;             // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = p.minor; break;             // COMPUTE_CAPABILITY_MINOR
        case 81: *v = p.smem_per_sm; break;       // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        case 82: *v = 65536; break;               // MAX_REGISTERS_PER_MULTIPROCESSOR
        case 97: *v = p.smem_optin; break;        // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        case 106: *v = 32; break;                 // MAX_BLOCKS_PER_MULTIPROCESSOR
        case 115: *v = 1; break;                  // MEMORY_POOLS_SUPPORTED
        default: *v = 0; break;
    }
    return ok();
}

API CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice) {
    *ctx = &st().primary;
    return ok();
}
API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return ok(); }
API CUresult cuCtxSetCurrent(void* ctx) {
    current = static_cast<Context*>(ctx);
    return ok();
}
API CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = current;
    return ok();
}
API CUresult cuCtxSynchronize() { return check_sticky() ?: ok(); }
API CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return ok();
}

// ---- memory ------------------------------------------------------------------------------------
API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
    if (CUresult e = check_sticky()) return e;
    State& s = st();
    {
        std::lock_guard<std::mutex> g(s.mu);
        if (s.allocated + bytes > s.gpu->total_mem)
            return err(CUDA_ERROR_OUT_OF_MEMORY, "more than the emulated GPU's memory");
    }
    void* p = malloc(bytes ? bytes : 1);
    if (!p) return err(CUDA_ERROR_OUT_OF_MEMORY, "host malloc failed");
    memset(p, 0xFF, bytes);  // NaN in f32 and f64: reads of unwritten memory show
    std::lock_guard<std::mutex> g(s.mu);
    s.allocs[(uintptr_t)p] = bytes;
    s.allocated += bytes;
    *dptr = (CUdeviceptr)(uintptr_t)p;
    return ok();
}
API CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, void* stream) {
    // Real CUDA would add a memory node; the engine sizes every buffer before capture, and the
    // emulator holds it to that.
    if (CUresult e = capture_refuses(stream, "an allocation")) return e;
    return cuMemAlloc_v2(dptr, bytes);
}
API CUresult cuMemFree_v2(CUdeviceptr dptr) {
    State& s = st();
    if (!dptr) return ok();
    {
        std::lock_guard<std::mutex> g(s.mu);
        auto it = s.allocs.find((uintptr_t)dptr);
        if (it == s.allocs.end()) return err(CUDA_ERROR_INVALID_VALUE, "cuMemFree of a pointer that is not an allocation");
        s.allocated -= it->second;
        s.allocs.erase(it);
    }
    free((void*)(uintptr_t)dptr);
    return check_sticky() ?: ok();
}
API CUresult cuMemFreeAsync(CUdeviceptr dptr, void* stream) {
    if (CUresult e = capture_refuses(stream, "a free")) return e;
    return cuMemFree_v2(dptr);
}
API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    std::lock_guard<std::mutex> g(st().mu);
    *total = st().gpu->total_mem;
    *free_bytes = st().gpu->total_mem - st().allocated;
    return ok();
}
API CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    *p = malloc(bytes ? bytes : 1);
    return *p ? ok() : err(CUDA_ERROR_OUT_OF_MEMORY, "host malloc failed");
}
API CUresult cuMemFreeHost(void* p) {
    free(p);
    return ok();
}

static CUresult copy(void* dst, const void* src, size_t bytes) {
    if (CUresult e = check_sticky()) return e;
    if (bytes) memcpy(dst, src, bytes);
    return ok();
}
API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return copy((void*)dst, src, n); }
API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* stream) {
    if (CUresult e = capture_refuses(stream, "a host-to-device copy from pageable memory")) return e;
    return copy((void*)dst, src, n);
}
API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return copy(dst, (const void*)src, n); }
API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* stream) {
    if (CUresult e = capture_refuses(stream, "a device-to-host copy")) return e;
    return copy(dst, (const void*)src, n);
}
API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (CUresult e = check_sticky()) return e;
    memmove((void*)dst, (const void*)src, n);
    return ok();
}
API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* stream) {
    if (Graph* g = capturing(stream)) {
        Node node{Node::MemcpyDtoD};
        node.dst = dst;
        node.src = src;
        node.bytes = n;
        g->nodes.push_back(std::move(node));
        return ok();
    }
    return cuMemcpyDtoD_v2(dst, src, n);
}
API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    if (CUresult e = check_sticky()) return e;
    memset((void*)dst, v, n);
    return ok();
}
API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* stream) {
    if (Graph* g = capturing(stream)) {
        Node node{Node::Memset};
        node.dst = dst;
        node.value = v;
        node.bytes = n;
        g->nodes.push_back(std::move(node));
        return ok();
    }
    return cuMemsetD8_v2(dst, v, n);
}
API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    if (CUresult e = check_sticky()) return e;
    unsigned* p = (unsigned*)dst;
    for (size_t i = 0; i < n; ++i) p[i] = v;
    return ok();
}
API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void*) { return cuMemsetD32_v2(dst, v, n); }

// ---- streams and events -----------------------------------------------------------------------------
API CUresult cuStreamCreate(void** s, unsigned) {
    *s = new Stream();
    return ok();
}
API CUresult cuStreamCreateWithPriority(void** s, unsigned f, int) { return cuStreamCreate(s, f); }
API CUresult cuStreamDestroy_v2(void* s) {
    delete static_cast<Stream*>(s);
    return ok();
}
API CUresult cuStreamSynchronize(void* stream) {
    if (CUresult e = capture_refuses(stream, "a stream synchronisation")) return e;
    return check_sticky() ?: ok();
}
API CUresult cuStreamQuery(void* stream) {
    if (CUresult e = capture_refuses(stream, "a stream query")) return e;
    return check_sticky() ?: ok();
}
API CUresult cuStreamWaitEvent(void*, void*, unsigned) { return check_sticky() ?: ok(); }
API CUresult cuStreamIsCapturing(void* stream, int* status) {
    auto* st = static_cast<Stream*>(stream);
    // CU_STREAM_CAPTURE_STATUS_NONE / _ACTIVE / _INVALIDATED
    *status = !st || !st->capture ? 0 : (st->invalidated.empty() ? 1 : 2);
    return ok();
}
API CUresult cuStreamBeginCapture_v2(void* stream, int) {
    auto* st = static_cast<Stream*>(stream);
    if (!st) return err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "the legacy default stream cannot be captured");
    if (st->capture) return err(CUDA_ERROR_ILLEGAL_STATE, "the stream is already being captured");
    st->capture = new Graph();
    st->invalidated.clear();
    return ok();
}
API CUresult cuStreamEndCapture(void* stream, void** graph) {
    auto* st = static_cast<Stream*>(stream);
    if (!st || !st->capture) return err(CUDA_ERROR_ILLEGAL_STATE, "the stream is not being captured");
    Graph* g = st->capture;
    st->capture = nullptr;
    if (!st->invalidated.empty()) {
        delete g;
        *graph = nullptr;
        return err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "the capture was invalidated by " + st->invalidated);
    }
    *graph = g;
    return ok();
}

API CUresult cuEventCreate(void** e, unsigned) {
    *e = new Event();
    return ok();
}
API CUresult cuEventDestroy_v2(void* e) {
    delete static_cast<Event*>(e);
    return ok();
}
API CUresult cuEventRecord(void* e, void* stream) {
    if (CUresult r = check_sticky()) return r;
    auto* ev = static_cast<Event*>(e);
    if (Graph* g = capturing(stream)) {
        Node node{Node::EventRecord};
        node.event = ev;
        g->nodes.push_back(std::move(node));
        return ok();
    }
    ev->ms = now_ms();
    ev->recorded = true;
    return ok();
}
API CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
API CUresult cuEventSynchronize(void*) { return check_sticky() ?: ok(); }
API CUresult cuEventQuery(void*) { return check_sticky() ?: ok(); }
API CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
    auto *s = static_cast<Event*>(a), *e = static_cast<Event*>(b);
    if (!s->recorded || !e->recorded) return err(CUDA_ERROR_INVALID_HANDLE, "event not recorded");
    *ms = (float)(e->ms - s->ms);
    return ok();
}
API CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) { return cuEventElapsedTime(ms, a, b); }

// ---- modules and functions ----------------------------------------------------------------------------
API CUresult cuModuleLoadData(void** module, const void* image) {
    auto* m = new Module();
    std::string why;
    if (CUresult e = parse_ptx(static_cast<const char*>(image), m, &why)) {
        delete m;
        return err(e, why);
    }
    const int cc = st().gpu->major * 10 + st().gpu->minor;
    if (m->target > cc) {
        delete m;
        return err(CUDA_ERROR_NO_BINARY_FOR_GPU,
                   "PTX for sm_" + std::to_string(m->target) + " on an sm_" + std::to_string(cc) + " device");
    }
    *module = m;
    return ok();
}
API CUresult cuModuleUnload(void* module) {
    delete static_cast<Module*>(module);
    return ok();
}
API CUresult cuModuleGetFunction(void** f, void* module, const char* name) {
    auto* m = static_cast<Module*>(module);
    const PtxEntry* entry = nullptr;
    for (const PtxEntry& e : m->entries)
        if (e.name == name) entry = &e;
    if (!entry) return err(CUDA_ERROR_NOT_FOUND, std::string("no .entry ") + name + " in this module's PTX");
    auto it = registry().find(name);
    if (it == registry().end())
        return err(CUDA_ERROR_NOT_FOUND, std::string(name) + " is in the PTX but has no host build in the emulator");
    const Kernel& k = it->second;
    std::vector<unsigned> host;
    for (const auto& p : k.params) host.push_back(p.size);
    if (host != entry->param_sizes)
        return err(CUDA_ERROR_INVALID_IMAGE, std::string(name) + ": the PTX declares parameters of " +
                                                 sizes_str(entry->param_sizes) + " bytes, the host build " +
                                                 sizes_str(host) + " (build skew between nvcc and the host compiler?)");
    auto* fn = new Function{&k};
    if (entry->maxntid) fn->max_threads = entry->maxntid;
    *f = fn;
    return ok();
}
API CUresult cuFuncGetAttribute(int* v, int attr, void* f) {
    auto* fn = static_cast<Function*>(f);
    switch (attr) {
        case 0: *v = (int)fn->max_threads; break;      // MAX_THREADS_PER_BLOCK (its launch bound)
        case 1: *v = 0; break;                         // SHARED_SIZE_BYTES (static: not known here)
        case 4: *v = 32; break;                        // NUM_REGS (nominal)
        case 8: *v = fn->max_dynamic_smem; break;      // MAX_DYNAMIC_SHARED_SIZE_BYTES
        default: *v = 0; break;
    }
    return ok();
}
API CUresult cuFuncSetAttribute(void* f, int attr, int v) {
    auto* fn = static_cast<Function*>(f);
    if (attr == 8) {
        if (v < 0 || v > st().gpu->smem_optin)
            return err(CUDA_ERROR_INVALID_VALUE, "dynamic shared memory above the device's opt-in limit");
        fn->max_dynamic_smem = v;
    }
    return ok();
}
API CUresult cuFuncSetCacheConfig(void*, int) { return ok(); }

// Pointer arguments must point into live device memory (checked at every launch and replay).
static CUresult check_pointers(const Kernel& k, void** params, const std::string& who) {
    std::lock_guard<std::mutex> g(st().mu);
    for (size_t i = 0; i < k.params.size(); ++i) {
        if (!k.params[i].is_pointer) continue;
        uintptr_t p;
        memcpy(&p, params[i], sizeof p);
        if (p && !is_device_ptr(p)) {
            char buf[64];
            snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)p);
            return err(CUDA_ERROR_INVALID_VALUE, who + "argument " + std::to_string(i) + " (" + buf +
                                                     ") does not point into a live device allocation");
        }
    }
    return CUDA_SUCCESS;
}

static std::string who(const Kernel& k) { return "launch of " + k.name + " (" + k.family + ".cu): "; }

// Runs one launch; a fault inside the kernel becomes the context's sticky error.
static void execute(const Kernel& k, void** params, emu::uint3 grid, emu::uint3 block) {
    State& s = st();
    emu::Launch l{k.name.c_str(), k.tramp, k.fn, params, grid, block, s.order, s.seed};
    std::string fault;
    bool good;
#if defined(EMU_SHARED_STATIC)
    {
        std::lock_guard<std::mutex> g(s.launch_mu);
        good = emu::run_launch(l, &fault);
    }
#else
    good = emu::run_launch(l, &fault);
#endif
    if (!good) {
        // As on a GPU: the launch itself succeeded, the fault is reported from now on (sticky).
        fprintf(stderr, "cuda-emu: kernel fault: %s\n", fault.c_str());
        std::lock_guard<std::mutex> g(s.mu);
        if (s.sticky.load() == CUDA_SUCCESS) s.sticky_msg = "kernel fault: " + fault;
        s.sticky.store(CUDA_ERROR_LAUNCH_FAILED);
    }
}

API CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned smem, void* stream, void** params, void** extra) {
    if (CUresult e = check_sticky()) return e;
    auto* fn = static_cast<Function*>(f);
    if (!fn) return err(CUDA_ERROR_INVALID_HANDLE, "launch of a null function");
    const Kernel& k = *fn->kernel;
    const std::string w = who(k);
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    if (!gx || !gy || !gz || !bx || !by || !bz) return err(CUDA_ERROR_INVALID_VALUE, w + "a zero grid or block dimension");
    if (threads > 1024 || bx > 1024 || by > 1024 || bz > 64)
        return err(CUDA_ERROR_INVALID_VALUE, w + "block (" + std::to_string(bx) + "," + std::to_string(by) + "," +
                                                 std::to_string(bz) + ") is over the limits (1024 threads; 1024, 1024, 64)");
    // A block larger than the kernel's __launch_bounds__ (ptxas sized its registers for the bound).
    // The error code a driver returns for it is not pinned down here; the refusal is.
    if (threads > fn->max_threads)
        return err(CUDA_ERROR_INVALID_VALUE, w + "block of " + std::to_string(threads) +
                                                 " threads, over the kernel's launch bound (.maxntid " +
                                                 std::to_string(fn->max_threads) + ")");
    if (gy > 65535 || gz > 65535 || gx > 2147483647u)
        return err(CUDA_ERROR_INVALID_VALUE, w + "grid (" + std::to_string(gx) + "," + std::to_string(gy) + "," +
                                                 std::to_string(gz) + ") is over the limits (2^31-1, 65535, 65535)");
    if ((int)smem > fn->max_dynamic_smem)
        return err(CUDA_ERROR_INVALID_VALUE, w + std::to_string(smem) + " bytes of dynamic shared memory, over the " +
                                                 std::to_string(fn->max_dynamic_smem) + " allowed");
    if (extra) return err(CUDA_ERROR_NOT_SUPPORTED, w + "the `extra` argument form is not emulated");
    if (!params && !k.params.empty()) return err(CUDA_ERROR_INVALID_VALUE, w + "no kernel parameters given");
    if (CUresult e = check_pointers(k, params, w)) return e;
    if (Graph* g = capturing(stream)) {
        Node node{Node::Kernel};
        node.fn = fn;
        node.grid = {gx, gy, gz};
        node.block = {bx, by, bz};
        for (size_t i = 0; i < k.params.size(); ++i) {
            const char* p = static_cast<const char*>(params[i]);
            node.params.emplace_back(p, p + k.params[i].size);
        }
        g->nodes.push_back(std::move(node));
        return ok();
    }
    st().launches.fetch_add(1);
    execute(k, params, {gx, gy, gz}, {bx, by, bz});
    return ok();
}

// ---- graphs: what a captured stream recorded, replayed in order ------------------------------------
API CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    if (!graph) return err(CUDA_ERROR_INVALID_VALUE, "instantiating a null graph");
    *exec = new Graph(*static_cast<Graph*>(graph));
    return ok();
}
API CUresult cuGraphLaunch(void* exec, void* stream) {
    if (CUresult e = check_sticky()) return e;
    if (capturing(stream)) return err(CUDA_ERROR_NOT_SUPPORTED, "a graph launch inside a capture is not emulated");
    State& s = st();
    s.graph_launches.fetch_add(1);
    for (Node& n : static_cast<Graph*>(exec)->nodes) {
        if (s.sticky.load() != CUDA_SUCCESS) break;
        switch (n.kind) {
            case Node::Kernel: {
                const Kernel& k = *n.fn->kernel;
                std::vector<void*> ptrs;
                for (auto& p : n.params) ptrs.push_back(p.data());
                if (CUresult e = check_pointers(k, ptrs.data(), "graph replay: " + who(k))) return e;
                s.graph_kernels.fetch_add(1);
                execute(k, ptrs.data(), n.grid, n.block);
                break;
            }
            case Node::Memset: memset((void*)n.dst, n.value, n.bytes); break;
            case Node::MemcpyDtoD: memmove((void*)n.dst, (const void*)n.src, n.bytes); break;
            case Node::EventRecord:
                n.event->ms = now_ms();
                n.event->recorded = true;
                break;
        }
    }
    return ok();
}
API CUresult cuGraphUpload(void*, void*) { return ok(); }
API CUresult cuGraphExecDestroy(void* exec) {
    delete static_cast<Graph*>(exec);
    return ok();
}
API CUresult cuGraphDestroy(void* graph) {
    delete static_cast<Graph*>(graph);
    return ok();
}

// ---- errors ----------------------------------------------------------------------------------------
static const char* error_name(CUresult e) {
    switch (e) {
        case CUDA_SUCCESS: return "CUDA_SUCCESS";
        case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
        case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
        case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
        case CUDA_ERROR_INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
        case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
        case CUDA_ERROR_NO_BINARY_FOR_GPU: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
        case CUDA_ERROR_INVALID_PTX: return "CUDA_ERROR_INVALID_PTX";
        case CUDA_ERROR_UNSUPPORTED_PTX_VERSION: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
        case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case CUDA_ERROR_NOT_READY: return "CUDA_ERROR_NOT_READY";
        case CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
        case CUDA_ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
        case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
        case CUDA_ERROR_NOT_PERMITTED: return "CUDA_ERROR_NOT_PERMITTED";
        case CUDA_ERROR_ILLEGAL_STATE: return "CUDA_ERROR_ILLEGAL_STATE";
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
        default: return "CUDA_ERROR_UNKNOWN";
    }
}
static const char* error_string(CUresult e) {
    switch (e) {
        case CUDA_SUCCESS: return "no error";
        case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
        case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
        case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
        case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
        case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
        case CUDA_ERROR_INVALID_IMAGE: return "device kernel image is invalid";
        case CUDA_ERROR_NO_BINARY_FOR_GPU: return "no kernel image is available for execution on the device";
        case CUDA_ERROR_INVALID_PTX: return "a PTX JIT compilation failed";
        case CUDA_ERROR_UNSUPPORTED_PTX_VERSION: return "the provided PTX was compiled with an unsupported toolchain.";
        case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
        case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
        case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
        case CUDA_ERROR_NOT_SUPPORTED: return "operation not supported";
        case CUDA_ERROR_ILLEGAL_STATE: return "the operation cannot be performed in the present state";
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing";
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "operation failed due to a previous error during capture";
        default: return "unknown error";
    }
}
API CUresult cuGetErrorName(CUresult e, const char** s) {
    *s = error_name(e);
    return CUDA_SUCCESS;
}
API CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = error_string(e);
    return CUDA_SUCCESS;
}

// ---- for pix2pix (src/device/emu.rs) --------------------------------------------------------------
// The detail behind this thread's last failed call ("" when none).
API const char* pix2pix_emu_last_error() { return last_error.c_str(); }
// "plain", "memcheck" or "racecheck".
API const char* pix2pix_emu_mode() { return mode_name(); }
// Kernel launches since the library was loaded (not counting those replayed by graphs).
API unsigned long long pix2pix_emu_launches() { return st().launches.load(); }
// Graph launches, and the kernels they ran.
API unsigned long long pix2pix_emu_graph_launches() { return st().graph_launches.load(); }
API unsigned long long pix2pix_emu_graph_kernels() { return st().graph_kernels.load(); }
// Names of the registered kernels, one per line (for the PTX/emulator consistency test).
API const char* pix2pix_emu_kernels() {
    static std::string names;
    std::lock_guard<std::mutex> g(st().mu);
    names.clear();
    for (auto& [name, k] : registry()) names += k.family + " " + name + " " + std::to_string(k.params.size()) + "\n";
    return names.c_str();
}
