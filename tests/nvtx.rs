//! NVTX3's injection protocol (src/nvtx.rs), tested the way nsys uses it: a tool library of our
//! own, compiled here with the system C compiler, is named by NVTX_INJECTION64_PATH for a child
//! `pix2pix step`; the tool fills in push/pop handlers through the callbacks export table and
//! writes every range it sees to a file. The phases of the step (src/models/pix2pix.rs) must
//! arrive there, in order, with pushes and pops balanced.

use pix2pix::data::make_synthetic_dataset;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tool: NVTX's ids and table layout as in nvtxTypes.h (written out here so the test does not
/// depend on our own Rust definitions of them).
const TOOL_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>

typedef void (*fnptr)(void);
typedef const void* (*get_export_table_t)(uint32_t id);
typedef struct { size_t struct_size; int (*get_module_function_table)(int module, fnptr*** table, unsigned* size); } callbacks_t;
typedef struct { size_t struct_size; uint32_t version; uint32_t reserved0; void (*set_injection_version)(uint32_t); } version_t;

static FILE* out;
static int depth;

static int push_a(const char* name) { fprintf(out, "push %s\n", name); fflush(out); return depth++; }
static int pop(void) { fprintf(out, "pop\n"); fflush(out); return --depth; }

int InitializeInjectionNvtx2(get_export_table_t get) {
    const char* mode = getenv("TOOL_MODE");
    out = fopen(getenv("TOOL_LOG"), "w");
    if (!out) return 0;
    const version_t* v = (const version_t*)get(3);
    if (!v || v->struct_size < sizeof(version_t)) { fprintf(out, "no version table\n"); return 0; }
    fprintf(out, "version %u\n", v->version);
    v->set_injection_version(v->version);
    if (get(2) != NULL || get(99) != NULL) { fprintf(out, "unknown export tables answered\n"); return 0; }
    const callbacks_t* cb = (const callbacks_t*)get(1);
    if (!cb || cb->struct_size < sizeof(callbacks_t)) { fprintf(out, "no callbacks table\n"); return 0; }
    /* What nsys does: ask every module for its table and check the sizes (nvtxTypes.h). */
    const unsigned want[7] = {0, 16, 9, 15, 7, 16, 7};
    for (int m = 1; m <= 6; ++m) {
        fnptr** t = NULL; unsigned n = 0;
        if (!cb->get_module_function_table(m, &t, &n) || !t || n != want[m] || t[0] != NULL || t[n] != NULL) {
            fprintf(out, "bad table for module %d (size %u)\n", m, n);
            return 0;
        }
        for (unsigned i = 1; i < n; ++i) if (!t[i] || *t[i]) { fprintf(out, "bad slot %d.%u\n", m, i); return 0; }
    }
    if (cb->get_module_function_table(7, NULL, NULL)) { fprintf(out, "module 7 answered\n"); return 0; }
    if (mode && mode[0] == 'f') { fprintf(out, "init refuses\n"); return 0; }
    fnptr** core = NULL; unsigned n = 0;
    cb->get_module_function_table(1, &core, &n);
    *core[9] = (fnptr)push_a;   /* NVTX_CBID_CORE_RangePushA */
    *core[11] = (fnptr)pop;     /* NVTX_CBID_CORE_RangePop */
    fprintf(out, "init ok\n");
    fflush(out);
    return 1;
}
"#;

/// Compiles the tool into `dir`, or None (test skipped) when there is no C compiler.
fn build_tool(dir: &Path) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let src = dir.join("tool.c");
    std::fs::write(&src, TOOL_C).unwrap();
    let lib = dir.join("libtool_nvtx.so");
    match Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
    {
        Ok(o) if o.status.success() => Some(lib),
        Ok(o) => panic!("{cc} failed on the tool:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            println!("skipped: no C compiler ({cc}: {e})");
            None
        }
    }
}

const SMALL: &[&str] = &["--netG", "unet_128", "--ngf", "8", "--ndf", "8", "--device", "cpu"];

/// Runs `pix2pix step` on a fresh tiny model under the tool (`extra` environment on top) and
/// returns the tool's log (empty when the tool was never initialised) and the step's output.
fn step_under_tool(dir: &Path, lib: &Path, extra: &[(&str, &str)]) -> (String, String) {
    let log = dir.join(format!("ranges-{}.txt", extra.len()));
    let _ = std::fs::remove_file(&log);
    let run = |args: &[&str], tool: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pix2pix"));
        cmd.current_dir(dir).args(args).args(SMALL);
        cmd.env_remove("PIX2PIX_NVTX");
        if tool {
            cmd.env("NVTX_INJECTION64_PATH", lib).env("TOOL_LOG", &log);
            for (k, v) in extra {
                cmd.env(k, v);
            }
        }
        let o = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "pix2pix {args:?} failed:\n{text}");
        text
    };
    if !dir.join("checkpoints/nvtx/latest_net_G.safetensors").exists() {
        run(&["init", "--name", "nvtx"], false);
    }
    let out = run(
        &[
            "step",
            "--name",
            "nvtx",
            "--image",
            "data/train/0000.png",
            "--out",
            "s.safetensors",
        ],
        true,
    );
    (std::fs::read_to_string(&log).unwrap_or_default(), out)
}

#[test]
fn an_injected_tool_receives_the_phases_of_a_step_in_order() {
    let t = tempfile::tempdir().unwrap();
    let Some(lib) = build_tool(t.path()) else { return };
    make_synthetic_dataset(&t.path().join("data"), 1, 0, 0, 128, 1).unwrap();
    let (log, out) = step_under_tool(t.path(), &lib, &[]);
    assert!(
        out.contains(&format!("NVTX ranges went to injection {}", lib.display())),
        "{out}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.first(), Some(&"version 3"), "{log}");
    assert_eq!(lines.get(1), Some(&"init ok"), "{log}");

    // Balanced, never below zero, and every pop closes a push.
    let mut depth = 0i64;
    for l in &lines[2..] {
        if l.starts_with("push ") {
            depth += 1;
        } else {
            assert_eq!(*l, "pop", "unexpected line in the tool's log:\n{log}");
            depth -= 1;
            assert!(depth >= 0, "a pop without a push:\n{log}");
        }
    }
    assert_eq!(depth, 0, "pushes and pops do not balance:\n{log}");

    // The step's phases, top level, in the order the step runs them.
    let mut top = Vec::new();
    let mut depth = 0;
    for l in &lines[2..] {
        if let Some(name) = l.strip_prefix("push ") {
            if depth == 0 {
                top.push(name);
            }
            depth += 1;
        } else {
            depth -= 1;
        }
    }
    let phases = [
        "G forward",
        "D step (fwd+bwd ×2)",
        "Adam D",
        "G step (D fwd+bwd, G bwd)",
        "Adam G",
    ];
    assert_eq!(top, phases, "top-level ranges:\n{log}");
    // Layers' ranges nest inside the phases (named by their PyTorch keys).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("push model.") && l.ends_with(" fwd")),
        "no layer ranges:\n{log}"
    );
}

#[test]
fn a_tool_that_fails_its_init_or_pix2pix_nvtx_0_leaves_ranges_off() {
    let t = tempfile::tempdir().unwrap();
    let Some(lib) = build_tool(t.path()) else { return };
    make_synthetic_dataset(&t.path().join("data"), 1, 0, 0, 128, 1).unwrap();
    let (log, out) = step_under_tool(t.path(), &lib, &[("TOOL_MODE", "fail")]);
    assert!(log.ends_with("init refuses\n"), "{log}");
    assert!(!log.contains("push"), "{log}");
    assert!(
        out.contains("InitializeInjectionNvtx2 failed") && !out.contains("NVTX ranges went"),
        "{out}"
    );
    let (log, out) = step_under_tool(t.path(), &lib, &[("PIX2PIX_NVTX", "0"), ("TOOL_MODE", "ok")]);
    assert_eq!(log, "", "PIX2PIX_NVTX=0 must not load the tool");
    assert!(!out.contains("NVTX ranges went"), "{out}");
}
