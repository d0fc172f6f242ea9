// scheduler.cpp: runs one kernel launch of the emulated CUDA device. A block's threads are fibers on
// the launching host thread (a stack each, a hand-written context switch of a few instructions);
// a fiber runs until it waits at __syncthreads, at a warp collective, or exits. The checks a
// kernel author needs live here: threads of a block meeting at different barriers, warp masks
// naming lanes that exited, do not exist or wait elsewhere, and deadlocks, each reported with the
// kernel, block, thread and source line. Under ThreadSanitizer the barrier and the warp collectives
// are the only happens-before edges between the threads of a block, so a missing __syncthreads is a
// reported race (racecheck); under AddressSanitizer the fiber stacks are announced to it (memcheck).
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <deque>
#include <random>
#include <string>
#include <vector>

#if defined(EMU_ASAN)
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
#endif
#if defined(EMU_TSAN)
extern "C" void* __tsan_get_current_fiber(void);
extern "C" void* __tsan_create_fiber(unsigned flags);
extern "C" void __tsan_switch_to_fiber(void* fiber, unsigned flags);
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
static const unsigned TSAN_NO_SYNC = 1;  // __tsan_switch_to_fiber_no_sync
#endif

// ---- the context switch (System V x86-64): callee-saved registers, MXCSR and the x87 control word
extern "C" __attribute__((visibility("hidden"))) void emu_switch(void** save_sp, void* new_sp);
extern "C" __attribute__((visibility("hidden"))) void emu_fiber_entry();
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch

    .globl emu_fiber_entry
    .hidden emu_fiber_entry
    .type emu_fiber_entry,@function
emu_fiber_entry:
    movq %rbx, %rdi
    call emu_fiber_main
    ud2
    .size emu_fiber_entry, .-emu_fiber_entry
)");

namespace emu {

thread_local ThreadCtx* cur_thread = nullptr;
thread_local BlockCtx* cur_block = nullptr;

namespace {

#if defined(EMU_ASAN) || defined(EMU_TSAN)
const size_t STACK = 512 * 1024;  // sanitizers need far larger frames
#else
const size_t STACK = 128 * 1024;
#endif
const int MAX_THREADS = 1024;

enum class St : uint8_t { Ready, Barrier, Warp, Done };
enum class Op : uint8_t { Shfl, Vote, SyncWarp, Gather };

struct Fiber {
    ThreadCtx ctx;
    void* sp = nullptr;
    char* stack_lo = nullptr;
    int linear = 0;
    St st = St::Done;
    // where it waits
    const char* file = nullptr;
    int line = 0;
    Op op = Op::Shfl;
    int kind = 0;
    unsigned mask = 0;
    uint64_t bits = 0;
    int arg = 0, width = 32;
    uint64_t result = 0;
    const uint64_t* gather_src = nullptr;  // Op::Gather: arg words to give, 32·arg to fill
    uint64_t* gather_dst = nullptr;
#if defined(EMU_ASAN)
    void* fake_stack = nullptr;
#endif
#if defined(EMU_TSAN)
    void* tsan = nullptr;
#endif
};

// Per host thread: the fibers and stacks (made once, reused by every launch), the block being run.
struct Exec {
    std::vector<Fiber> fibers;
    char* stacks = nullptr;
    void* sched_sp = nullptr;
    BlockCtx block{};
    int n = 0;                 // threads in the block
    const Launch* launch = nullptr;
    std::deque<int> ready;
    int done = 0, at_barrier = 0;
    bool failed = false;
    std::string error;
#if defined(EMU_ASAN)
    void* sched_fake = nullptr;
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
#if defined(EMU_TSAN)
    void* sched_tsan = nullptr;
    char block_sync = 0;
    char warp_sync[MAX_THREADS / 32] = {};
#endif

    Exec() {
        fibers.resize(MAX_THREADS);
        const size_t total = STACK * MAX_THREADS;
        void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "cuda-emu: cannot map %zu MiB of fiber stacks\n", total >> 20);
            abort();
        }
        stacks = (char*)m;
        for (int i = 0; i < MAX_THREADS; ++i) {
            fibers[i].stack_lo = stacks + (size_t)i * STACK;
            mprotect(fibers[i].stack_lo, 4096, PROT_NONE);  // a guard page below each stack
        }
    }
};

thread_local Exec* tl_exec = nullptr;
#if defined(EMU_TSAN)
// host → kernel → host ordering: released by the launching thread and by the scheduler after each
// block, acquired by every fiber as it starts. A fiber's exit releases exit_sync instead, which the
// scheduler acquires once the whole block is done: a fiber that happens to start after another of
// its block has exited is not ordered after it (a GPU runs them concurrently), so races between
// threads that never meet at a barrier are still seen.
char exec_sync = 0;
char exit_sync = 0;
#endif

Exec& exec() {
    if (!tl_exec) tl_exec = new Exec();
    return *tl_exec;
}

std::string where(const Exec& e, const Fiber* f) {
    char buf[512];
    const BlockCtx& b = e.block;
    int len = snprintf(buf, sizeof buf, "%s: block (%u,%u,%u) thread (%u,%u,%u)", e.launch->name, b.bid.x, b.bid.y,
                       b.bid.z, f->ctx.tid.x, f->ctx.tid.y, f->ctx.tid.z);
    if (f->file && len < (int)sizeof buf)
        snprintf(buf + len, sizeof buf - len, " at %s:%d", f->file, f->line);
    return buf;
}

void fail(Exec& e, std::string msg) {
    if (!e.failed) {
        e.failed = true;
        e.error = std::move(msg);
    }
}

void to_fiber(Exec& e, Fiber* f) {
    cur_thread = &f->ctx;
#if defined(EMU_ASAN)
    __sanitizer_start_switch_fiber(&e.sched_fake, f->stack_lo, STACK);
#endif
#if defined(EMU_TSAN)
    __tsan_switch_to_fiber(f->tsan, TSAN_NO_SYNC);
#endif
    emu_switch(&e.sched_sp, f->sp);
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(e.sched_fake, nullptr, nullptr);
#endif
    cur_thread = nullptr;
}

// From the running fiber back to the scheduler; returns when the scheduler resumes it.
void to_scheduler(Exec& e, Fiber* f, bool dying) {
#if defined(EMU_ASAN)
    __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, e.sched_bottom, e.sched_size);
#else
    (void)dying;
#endif
#if defined(EMU_TSAN)
    __tsan_switch_to_fiber(e.sched_tsan, TSAN_NO_SYNC);
#endif
    emu_switch(&f->sp, e.sched_sp);
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(f->fake_stack, &e.sched_bottom, &e.sched_size);
#endif
}

Fiber* running() {
    if (!cur_thread) {
        fprintf(stderr, "cuda-emu: a device function was called outside a kernel\n");
        abort();
    }
    return reinterpret_cast<Fiber*>(cur_thread);  // ctx is Fiber's first member
}

// Fresh stack whose first switch "returns" into emu_fiber_entry with rbx = the fiber.
void prepare(Fiber* f) {
    char* top = f->stack_lo + STACK;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top) - 2;  // 16-aligned after the entry's `call`
    *--sp = reinterpret_cast<uint64_t>(&emu_fiber_entry);  // ret address
    *--sp = 0;                                              // rbp
    *--sp = reinterpret_cast<uint64_t>(f);                  // rbx
    *--sp = 0;                                              // r12
    *--sp = 0;                                              // r13
    *--sp = 0;                                              // r14
    *--sp = 0;                                              // r15
    *--sp = 0x1F80ull | (0x037Full << 32);                  // MXCSR, x87 control word
    f->sp = sp;
}

int warp_lanes(const Exec& e, int warp) { return std::min(32, e.n - warp * 32); }

// A lane waits at a warp collective: check its mask, and run the collective when every lane it
// names has arrived at the same one.
void arrive_warp(Exec& e, Fiber* f) {
    const int warp = f->linear / 32, lane = f->linear % 32, lanes = warp_lanes(e, warp);
    const unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
    if (!(f->mask >> lane & 1u))
        return fail(e, where(e, f) + ": the mask " + std::to_string(f->mask) + " does not name the calling lane");
    if (f->mask & ~exist)
        return fail(e, where(e, f) + ": the mask names lanes that do not exist (the block has " +
                           std::to_string(e.n) + " threads, this warp " + std::to_string(lanes) + ")");
    Fiber* base = &e.fibers[warp * 32];
    for (int l = 0; l < lanes; ++l) {
        if (!(f->mask >> l & 1u)) continue;
        Fiber* o = base + l;
        if (o->st == St::Done)
            return fail(e, where(e, f) + ": the mask names lane " + std::to_string(l) + ", which has exited");
        if (o->st != St::Warp) return;  // not there yet
        if (o->mask != f->mask || o->op != f->op || o->kind != f->kind || o->line != f->line || o->file != f->file ||
            (o->op == Op::Gather && o->arg != f->arg))
            return fail(e, where(e, f) + ": lanes of one warp meet at different warp collectives (lane " +
                               std::to_string(l) + " waits at " + std::string(o->file ? o->file : "?") + ":" +
                               std::to_string(o->line) + " with mask " + std::to_string(o->mask) + ")");
    }
    // Every named lane is here: run the collective.
    unsigned ballot = 0;
    for (int l = 0; l < lanes; ++l)
        if ((f->mask >> l & 1u) && base[l].bits) ballot |= 1u << l;
    for (int l = 0; l < lanes; ++l) {
        if (!(f->mask >> l & 1u)) continue;
        Fiber* o = base + l;
        if (o->op == Op::Shfl) {
            const int w = o->width, seg = l & ~(w - 1);
            int src = l;
            switch ((ShflKind)o->kind) {
                case ShflKind::Idx: src = seg + (o->arg & (w - 1)); break;
                case ShflKind::Xor: src = l ^ o->arg; if (src >= seg + w) src = l; break;
                case ShflKind::Down: src = l + o->arg; if (src >= seg + w) src = l; break;
                case ShflKind::Up: src = l - o->arg; if (src < seg) src = l; break;
            }
            if (src < 0 || src >= lanes || !(f->mask >> src & 1u))
                return fail(e, where(e, o) + ": the shuffle reads lane " + std::to_string(src) +
                                   ", which is not in the mask (undefined on a GPU)");
            o->result = base[src].bits;
        } else if (o->op == Op::Gather) {
            // Every lane of the mask is suspended inside the collective: its words and its
            // destination (both on its stack) are live.
            const size_t bytes = sizeof(uint64_t) * (size_t)o->arg;
            for (int s = 0; s < lanes; ++s)
                if (f->mask >> s & 1u) memcpy(o->gather_dst + (size_t)s * o->arg, base[s].gather_src, bytes);
        } else if (o->op == Op::Vote) {
            switch ((VoteKind)o->kind) {
                case VoteKind::Ballot: o->result = ballot; break;
                case VoteKind::Any: o->result = ballot != 0; break;
                case VoteKind::All: o->result = ballot == f->mask; break;
            }
        }
        o->st = St::Ready;
        e.ready.push_back(l + warp * 32);
    }
}

// Every live thread waits at a __syncthreads: they must all wait at the same one.
void release_barrier(Exec& e) {
    const Fiber* first = nullptr;
    for (int i = 0; i < e.n; ++i) {
        const Fiber* f = &e.fibers[i];
        if (f->st != St::Barrier) continue;
        if (!first) first = f;
        else if (f->line != first->line || strcmp(f->file, first->file) != 0)
            return fail(e, where(e, f) + ": threads of one block wait at different __syncthreads (" +
                               where(e, first) + ")");
    }
    for (int i = 0; i < e.n; ++i)
        if (e.fibers[i].st == St::Barrier) {
            e.fibers[i].st = St::Ready;
            e.ready.push_back(i);
        }
    e.at_barrier = 0;
}

void after_switch(Exec& e, Fiber* f) {
    switch (f->st) {
        case St::Warp: arrive_warp(e, f); break;
        case St::Barrier:
            if (++e.at_barrier + e.done == e.n) release_barrier(e);
            break;
        case St::Done: {
            ++e.done;
            // A lane that exits while named by a waiting collective of its warp.
            const int warp = f->linear / 32, lane = f->linear % 32;
            for (int l = 0; l < warp_lanes(e, warp); ++l) {
                const Fiber* o = &e.fibers[warp * 32 + l];
                if (o->st == St::Warp && (o->mask >> lane & 1u))
                    return fail(e, where(e, o) + ": the mask names lane " + std::to_string(lane) +
                                       ", which has exited");
            }
            if (e.at_barrier && e.at_barrier + e.done == e.n) release_barrier(e);
            break;
        }
        case St::Ready: break;
    }
}

std::string deadlock(Exec& e) {
    std::string msg = std::string(e.launch->name) + ": deadlock: no thread can go on;";
    int shown = 0;
    for (int i = 0; i < e.n && shown < 4; ++i) {
        const Fiber* f = &e.fibers[i];
        if (f->st == St::Warp || f->st == St::Barrier) {
            msg += std::string(" ") + where(e, f) + (f->st == St::Warp ? " (warp collective)" : " (__syncthreads)") + ";";
            ++shown;
        }
    }
    return msg;
}

void run_block(Exec& e) {
    e.ready.clear();
    e.done = e.at_barrier = 0;
    const uint3 bd = e.block.bdim;
    for (int i = 0; i < e.n; ++i) {
        Fiber* f = &e.fibers[i];
        f->linear = i;
        f->ctx.tid = {(unsigned)(i % bd.x), (unsigned)(i / bd.x % bd.y), (unsigned)(i / (bd.x * bd.y))};
        f->ctx.cp.n = 0;
        f->ctx.cp.committed = 0;
        f->st = St::Ready;
        f->file = nullptr;
        f->line = 0;
#if defined(EMU_TSAN)
        // Made once and reused: blocks are ordered through exec_sync anyway (shared memory is
        // reused block after block, so racecheck covers races within a block, as compute-sanitizer's).
        if (!f->tsan) f->tsan = __tsan_create_fiber(0);
#endif
        prepare(f);
        e.ready.push_back(i);
    }
    while (!e.failed) {
        while (!e.ready.empty() && !e.failed) {
            Fiber* f = &e.fibers[e.ready.front()];
            e.ready.pop_front();
            to_fiber(e, f);
            if (!e.failed) after_switch(e, f);
        }
        if (e.failed || e.done == e.n) break;
        fail(e, deadlock(e));
    }
#if defined(EMU_TSAN)
    __tsan_acquire(&exit_sync);  // the block's threads, then the next block (shared memory is reused)
    __tsan_release(&exec_sync);
#endif
}

// A fiber waits: hand control back, and return when the scheduler resumes it.
void wait_here(Fiber* f, St st, const char* file, int line) {
    Exec& e = exec();
    f->st = st;
    f->file = file;
    f->line = line;
#if defined(EMU_TSAN)
    void* sync = st == St::Barrier ? (void*)&e.block_sync : (void*)&e.warp_sync[f->linear / 32];
    __tsan_release(sync);
#endif
    to_scheduler(e, f, false);
#if defined(EMU_TSAN)
    __tsan_acquire(sync);
#endif
}

}  // namespace

// ---- called by kernels (runtime.h) -----------------------------------------------------------------
void syncthreads(const char* file, int line) { wait_here(running(), St::Barrier, file, line); }

static uint64_t collective(Op op, int kind, unsigned mask, uint64_t bits, int arg, int width, const char* file,
                           int line) {
    Fiber* f = running();
    if (op == Op::Shfl && (width <= 0 || width > 32 || (width & (width - 1)))) {
        fail(exec(), where(exec(), f) + ": shuffle width " + std::to_string(width) + " is not a power of 2 up to 32");
        to_scheduler(exec(), f, true);
    }
    f->op = op;
    f->kind = kind;
    f->mask = mask;
    f->bits = bits;
    f->arg = arg;
    f->width = width;
    wait_here(f, St::Warp, file, line);
    return f->result;
}

uint64_t shfl_bits(ShflKind kind, unsigned mask, uint64_t bits, int arg, int width, const char* file, int line) {
    return collective(Op::Shfl, (int)kind, mask, bits, arg, width, file, line);
}
unsigned vote(VoteKind kind, unsigned mask, int pred, const char* file, int line) {
    return (unsigned)collective(Op::Vote, (int)kind, mask, pred != 0, 0, 32, file, line);
}
void syncwarp(const char* file, int line, unsigned mask) { collective(Op::SyncWarp, 0, mask, 0, 0, 32, file, line); }
void warp_gather(unsigned mask, const uint64_t* mine, int n, uint64_t* all, const char* file, int line) {
    Fiber* f = running();
    f->gather_src = mine;
    f->gather_dst = all;
    collective(Op::Gather, 0, mask, 0, n, 32, file, line);
}

unsigned activemask() {
    Exec& e = exec();
    Fiber* f = running();
    const int warp = f->linear / 32;
    unsigned m = 0;
    for (int l = 0; l < warp_lanes(e, warp); ++l)
        if (e.fibers[warp * 32 + l].st != St::Done) m |= 1u << l;
    return m;
}

void trap(const char* file, int line) {
    Exec& e = exec();
    Fiber* f = running();
    f->file = file;
    f->line = line;
    fail(e, where(e, f) + ": __trap()");
    to_scheduler(e, f, true);
    __builtin_unreachable();
}

// ---- one launch ----------------------------------------------------------------------------------
bool run_launch(const Launch& l, std::string* error) {
    Exec& e = exec();
    e.launch = &l;
    e.failed = false;
    e.error.clear();
    e.n = (int)(l.block.x * l.block.y * l.block.z);
    e.block.bdim = l.block;
    e.block.gdim = l.grid;
    const uint64_t blocks = (uint64_t)l.grid.x * l.grid.y * l.grid.z;
    std::vector<uint64_t> order;
    if (l.order != BlockOrder::Forward) {
        order.resize(blocks);
        for (uint64_t i = 0; i < blocks; ++i) order[i] = i;
        if (l.order == BlockOrder::Reverse) std::reverse(order.begin(), order.end());
        else std::shuffle(order.begin(), order.end(), std::mt19937_64(l.seed));
    }
#if defined(EMU_TSAN)
    e.sched_tsan = __tsan_get_current_fiber();
    __tsan_release(&exec_sync);
#endif
    BlockCtx* saved = cur_block;
    cur_block = &e.block;
    for (uint64_t i = 0; i < blocks && !e.failed; ++i) {
        const uint64_t b = order.empty() ? i : order[i];
        e.block.bid = {(unsigned)(b % l.grid.x), (unsigned)(b / l.grid.x % l.grid.y),
                       (unsigned)(b / ((uint64_t)l.grid.x * l.grid.y))};
        run_block(e);
    }
    cur_block = saved;
#if defined(EMU_TSAN)
    __tsan_acquire(&exec_sync);
#endif
    if (e.failed) *error = e.error;
    return !e.failed;
}

}  // namespace emu

// The first code a fiber runs (from emu_fiber_entry, on its own stack).
extern "C" __attribute__((visibility("hidden"), used)) void emu_fiber_main(void* fiber) {
    using namespace emu;
    Fiber* f = static_cast<Fiber*>(fiber);
    Exec& e = exec();
#if defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &e.sched_bottom, &e.sched_size);
#endif
#if defined(EMU_TSAN)
    __tsan_acquire(&exec_sync);
#endif
    e.launch->tramp(e.launch->fn, e.launch->args);
    f->st = St::Done;
#if defined(EMU_TSAN)
    __tsan_release(&exit_sync);
#endif
    to_scheduler(e, f, true);
    __builtin_unreachable();
}
