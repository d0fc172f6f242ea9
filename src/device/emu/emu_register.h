// emu_register.h: registers a host-compiled KERNEL with the emulated driver. build.rs generates, per
// kernels/FAMILY.cu, a file that includes the .cu and then `EMU_KERNEL("FAMILY", name)` for every
// KERNEL it declares. The trampoline and the parameter table come from the kernel's own signature.
#pragma once
#include <stddef.h>

#include <type_traits>
#include <utility>

#include "runtime.h"

namespace emu {

template <class... A>
struct Tramp {
    template <size_t... I>
    static void call_with(void* fn, void** args, std::index_sequence<I...>) {
        auto f = reinterpret_cast<void (*)(A...)>(fn);
        f(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    }
    static void call(void* fn, void** args) { call_with(fn, args, std::index_sequence_for<A...>{}); }
};

struct Registrar {
    template <class... A>
    Registrar(const char* family, const char* name, void (*f)(A...)) {
        static const ParamInfo params[sizeof...(A) + 1] = {
            ParamInfo{(uint32_t)sizeof(A), (uint32_t)std::is_pointer_v<A>}..., ParamInfo{0, 0}};
        register_kernel(family, name, &Tramp<A...>::call, reinterpret_cast<void*>(f), (int)sizeof...(A), params);
    }
};

}  // namespace emu

#define EMU_KERNEL(family, name) static ::emu::Registrar emu_registrar_##name(family, #name, &name);
