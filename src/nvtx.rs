//! NVTX ranges for Nsight Systems: `let _r = nvtx::range("D step");` pushes a named range that is
//! popped when the guard drops. libnvToolsExt is loaded at run time when present (it ships with
//! CUDA toolkits ≤ 12.8 and with Nsight); without it every call is a no-op costing one atomic load.
//! Set PIX2PIX_NVTX=0 to disable it even when the library is present.

use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;

struct Api {
    push: unsafe extern "C" fn(*const c_char) -> c_int,
    pop: unsafe extern "C" fn() -> c_int,
    _lib: libloading::Library,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        if std::env::var("PIX2PIX_NVTX").is_ok_and(|v| v == "0") {
            return None;
        }
        for name in ["libnvToolsExt.so.1", "libnvToolsExt.so", "nvToolsExt64_1.dll"] {
            // SAFETY: loading NVIDIA's NVTX library runs no initialisers with preconditions; the two
            // symbols have exactly these C signatures (nvToolsExt.h).
            unsafe {
                let Ok(lib) = libloading::Library::new(name) else {
                    continue;
                };
                let push = lib.get::<unsafe extern "C" fn(*const c_char) -> c_int>(b"nvtxRangePushA\0");
                let pop = lib.get::<unsafe extern "C" fn() -> c_int>(b"nvtxRangePop\0");
                if let (Ok(push), Ok(pop)) = (push, pop) {
                    let (push, pop) = (*push, *pop);
                    return Some(Api { push, pop, _lib: lib });
                }
            }
        }
        None
    })
    .as_ref()
}

/// Whether ranges go anywhere.
pub fn enabled() -> bool {
    api().is_some()
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
