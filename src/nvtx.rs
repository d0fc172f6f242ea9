//! NVTX ranges for Nsight Systems: `let _r = nvtx::range("D step");` pushes a named range that is
//! popped when the guard drops. Where the ranges go, decided once per process:
//!
//! 1. `NVTX_INJECTION64_PATH` set (nsys sets it): NVTX3's injection protocol, spoken by this file
//!    itself, since CUDA 13 ships no libnvToolsExt. The tool library is loaded, its
//!    `InitializeInjectionNvtx2` is called with our `get_export_table`; through the callbacks export
//!    table the tool asks for each module's function table (an array of pointers to our slots) and
//!    writes its handlers into the slots. We then call the core module's `nvtxRangePushA` and
//!    `nvtxRangePop` slots. An init that fails (returns 0) leaves ranges off, as NVTX3 does.
//! 2. Otherwise libnvToolsExt (CUDA toolkits ≤ 12.8 and Nsight ship it), when it can be loaded.
//! 3. Otherwise nothing: every call is a no-op costing one atomic load.
//!
//! `PIX2PIX_NVTX=0` turns ranges off even when a tool or the library is there.

use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;

type PushA = unsafe extern "C" fn(*const c_char) -> c_int;
type Pop = unsafe extern "C" fn() -> c_int;

struct Api {
    push: PushA,
    pop: Pop,
    /// Where the ranges go, for logs ("injection LIB", "libnvToolsExt.so.1").
    target: String,
    _lib: libloading::Library,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        if std::env::var("PIX2PIX_NVTX").is_ok_and(|v| v == "0") {
            return None;
        }
        match std::env::var_os("NVTX_INJECTION64_PATH").filter(|p| !p.is_empty()) {
            Some(path) => injection::load(&path),
            None => load_nvtoolsext(),
        }
    })
    .as_ref()
}

fn load_nvtoolsext() -> Option<Api> {
    for name in ["libnvToolsExt.so.1", "libnvToolsExt.so", "nvToolsExt64_1.dll"] {
        // SAFETY: loading NVIDIA's NVTX library runs no initialisers with preconditions; the two
        // symbols have exactly these C signatures (nvToolsExt.h).
        unsafe {
            let Ok(lib) = libloading::Library::new(name) else {
                continue;
            };
            let push = lib.get::<PushA>(b"nvtxRangePushA\0").map(|f| *f);
            let pop = lib.get::<Pop>(b"nvtxRangePop\0").map(|f| *f);
            if let (Ok(push), Ok(pop)) = (push, pop) {
                return Some(Api {
                    push,
                    pop,
                    target: name.to_string(),
                    _lib: lib,
                });
            }
        }
    }
    None
}

/// NVTX3's injection protocol (nvtxDetail/nvtxInit.h, nvtxImpl.h, nvtxTypes.h of NVIDIA/NVTX): the
/// export tables a tool queries and the function tables whose slots it fills.
mod injection {
    use super::{Api, Pop, PushA};
    use std::ffi::{c_int, c_uint, c_void};
    use std::sync::OnceLock;

    /// A slot the tool writes a handler into (`NvtxFunctionPointer`, null = not handled).
    type Slot = Option<unsafe extern "C" fn()>;

    /// NvtxExportTableID.
    const ETID_CALLBACKS: u32 = 1;
    const ETID_VERSIONINFO: u32 = 3;
    /// The NVTX API version we speak (NVTX_VERSION).
    const NVTX_VERSION: u32 = 3;

    /// NvtxCallbackModule → the number of callback ids of that module (its `NVTX_CBID_*_SIZE`,
    /// slot 0 being the invalid id): CORE, CUDA, OPENCL, CUDART, CORE2, SYNC.
    const MODULE_SIZES: [(c_int, usize); 6] = [(1, 16), (2, 9), (3, 15), (4, 7), (5, 16), (6, 7)];
    const MODULE_CORE: c_int = 1;
    /// NvtxCallbackIdCore.
    const CBID_CORE_RANGE_PUSH_A: usize = 9;
    const CBID_CORE_RANGE_POP: usize = 11;

    /// NvtxExportTableCallbacks.
    #[repr(C)]
    struct Callbacks {
        struct_size: usize,
        get_module_function_table: unsafe extern "C" fn(c_int, *mut *mut *mut Slot, *mut c_uint) -> c_int,
    }

    /// NvtxExportTableVersionInfo.
    #[repr(C)]
    struct VersionInfo {
        struct_size: usize,
        version: u32,
        reserved0: u32,
        set_injection_nvtx_version: unsafe extern "C" fn(u32),
    }

    /// One module's slots and its function table: `table[i]` points at `slots[i]` for the ids
    /// 1..size, `table[0]` and `table[size]` are null (the extra null makes a tool that reads past
    /// the end crash instead of writing somewhere).
    struct Module {
        id: c_int,
        size: usize,
        slots: *mut Slot,
        table: *mut *mut Slot,
    }

    struct Tables {
        modules: Vec<Module>,
        callbacks: Callbacks,
        version: VersionInfo,
    }
    // SAFETY: the tables are written by the tool during init (on the thread running the OnceLock
    // initialiser) and only read afterwards.
    unsafe impl Send for Tables {}
    unsafe impl Sync for Tables {}

    fn tables() -> &'static Tables {
        static T: OnceLock<Tables> = OnceLock::new();
        T.get_or_init(|| {
            let modules = MODULE_SIZES
                .iter()
                .map(|&(id, size)| {
                    let slots: &'static mut [Slot] = Box::leak(vec![None; size].into_boxed_slice());
                    let base = slots.as_mut_ptr();
                    let table: Vec<*mut Slot> = (0..=size)
                        .map(|i| {
                            if i == 0 || i == size {
                                std::ptr::null_mut()
                            } else {
                                // SAFETY: i < size, inside the leaked slot array.
                                unsafe { base.add(i) }
                            }
                        })
                        .collect();
                    Module {
                        id,
                        size,
                        slots: base,
                        table: Box::leak(table.into_boxed_slice()).as_mut_ptr(),
                    }
                })
                .collect();
            Tables {
                modules,
                callbacks: Callbacks {
                    struct_size: std::mem::size_of::<Callbacks>(),
                    get_module_function_table,
                },
                version: VersionInfo {
                    struct_size: std::mem::size_of::<VersionInfo>(),
                    version: NVTX_VERSION,
                    reserved0: 0,
                    set_injection_nvtx_version,
                },
            }
        })
    }

    /// `GetModuleFunctionTable` of the callbacks export table: the module's table and its size
    /// (the number of callback ids, including the invalid id 0); 0 for a module we do not know.
    unsafe extern "C" fn get_module_function_table(
        module: c_int,
        out_table: *mut *mut *mut Slot,
        out_size: *mut c_uint,
    ) -> c_int {
        let Some(m) = tables().modules.iter().find(|m| m.id == module) else {
            return 0;
        };
        if !out_size.is_null() {
            *out_size = m.size as c_uint;
        }
        if !out_table.is_null() {
            *out_table = m.table;
        }
        1
    }

    unsafe extern "C" fn set_injection_nvtx_version(_version: u32) {}

    /// The `NvtxGetExportTableFunc_t` handed to the tool.
    unsafe extern "C" fn get_export_table(id: u32) -> *const c_void {
        let t = tables();
        match id {
            ETID_CALLBACKS => &t.callbacks as *const Callbacks as *const c_void,
            ETID_VERSIONINFO => &t.version as *const VersionInfo as *const c_void,
            _ => std::ptr::null(),
        }
    }

    type InitializeInjection = unsafe extern "C" fn(unsafe extern "C" fn(u32) -> *const c_void) -> c_int;

    /// Loads the tool at `path` and lets it fill the slots; None (ranges off) when it cannot be
    /// loaded, has no `InitializeInjectionNvtx2`, fails its init, or handles no push/pop.
    pub(super) fn load(path: &std::ffi::OsStr) -> Option<Api> {
        let shown = path.to_string_lossy();
        // SAFETY: the tool library is NVTX's contract with us: loading it and calling its init with
        // our export-table function is exactly what NVTX3's loader does.
        unsafe {
            let lib = match libloading::Library::new(path) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("nvtx: cannot load the injection library {shown}: {e} (NVTX ranges off)");
                    return None;
                }
            };
            let init = match lib.get::<InitializeInjection>(b"InitializeInjectionNvtx2\0") {
                Ok(f) => *f,
                Err(_) => {
                    eprintln!("nvtx: {shown} exports no InitializeInjectionNvtx2 (NVTX ranges off)");
                    return None;
                }
            };
            let t = tables();
            if init(get_export_table) == 0 {
                eprintln!("nvtx: {shown}'s InitializeInjectionNvtx2 failed (NVTX ranges off)");
                return None;
            }
            let core = t.modules.iter().find(|m| m.id == MODULE_CORE)?;
            let push = (*core.slots.add(CBID_CORE_RANGE_PUSH_A))?;
            let pop = (*core.slots.add(CBID_CORE_RANGE_POP))?;
            Some(Api {
                push: std::mem::transmute::<unsafe extern "C" fn(), PushA>(push),
                pop: std::mem::transmute::<unsafe extern "C" fn(), Pop>(pop),
                target: format!("injection {shown}"),
                _lib: lib,
            })
        }
    }
}

/// Whether ranges go anywhere.
pub fn enabled() -> bool {
    api().is_some()
}

/// Where ranges go: "injection PATH" (a tool such as nsys), "libnvToolsExt.so.1", or "off".
pub fn target() -> &'static str {
    api().map(|a| a.target.as_str()).unwrap_or("off")
}

/// Pops the range when dropped.
#[must_use = "the range ends when this guard drops"]
pub struct Range(bool);

impl Drop for Range {
    fn drop(&mut self) {
        if self.0 {
            if let Some(a) = api() {
                // SAFETY: matches a successful push on this thread.
                unsafe { (a.pop)() };
            }
        }
    }
}

/// Starts a range named `name` (ends when the returned guard drops).
pub fn range(name: &str) -> Range {
    match api() {
        Some(a) => {
            let c = CString::new(name.replace('\0', " ")).unwrap();
            // SAFETY: a valid NUL-terminated string that outlives the call (NVTX copies it).
            unsafe { (a.push)(c.as_ptr()) };
            Range(true)
        }
        None => Range(false),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_nest_without_a_library() {
        let _a = super::range("outer");
        let _b = super::range("inner");
    }
}
