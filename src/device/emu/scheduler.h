// scheduler.h: one kernel launch as the driver hands it to the scheduler (scheduler.cpp).
#pragma once
#include <stdint.h>

#include <string>

#include "runtime.h"

namespace emu {

// The order in which a launch's blocks run (PIX2PIX_EMU_ORDER): a kernel whose result depends on
// it has a race between blocks.
enum class BlockOrder { Forward, Reverse, Shuffle };

struct Launch {
    const char* name;
    Trampoline tramp;
    void* fn;
    void** args;
    uint3 grid, block;
    BlockOrder order;
    uint64_t seed;  // for BlockOrder::Shuffle
};

// Runs every block of the launch; false with a message naming the kernel, block, thread and
// source line when a thread breaks a rule (barrier divergence, a bad warp mask, a deadlock, __trap).
bool run_launch(const Launch& launch, std::string* error);

}  // namespace emu
