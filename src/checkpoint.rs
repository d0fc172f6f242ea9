//! Checkpoints as safetensors with the PyTorch reference's state_dict keys (SPEC.md §9), so weights
//! move both ways between this engine and PyTorch (`safetensors.torch.load_file` + load_state_dict).
//! Writes are atomic: a temp file in the same folder, fsync, rename.

use crate::nn::params::{Kind, ParamStore};
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Values,
}

impl NamedTensor {
    pub fn f32(name: impl Into<String>, dims: &[usize], v: Vec<f32>) -> Self {
        NamedTensor {
            name: name.into(),
            dims: dims.to_vec(),
            values: Values::F32(v),
        }
    }
}

/// Writes tensors (and optional string metadata) to `path` atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    write_atomic(path, &serialize(tensors, metadata)?)
}

/// The safetensors bytes of `tensors` (and optional string metadata).
pub fn serialize(tensors: &[NamedTensor], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| match &t.values {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let mut views = BTreeMap::new();
    for (t, b) in tensors.iter().zip(&bytes) {
        let dtype = match t.values {
            Values::F32(_) => Dtype::F32,
            Values::I64(_) => Dtype::I64,
        };
        let view = TensorView::new(dtype, t.dims.clone(), b)
            .with_context(|| format!("tensor {} has the wrong size", t.name))?;
        if views.insert(t.name.clone(), view).is_some() {
            bail!("tensor {} written twice", t.name);
        }
    }
    safetensors::serialize(views, &metadata).context("serialising safetensors")
}

/// Replaces `path` with `data` so that a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_group(&[(path, data)])
}

/// Replaces several files together: every new file is written and synced under a temporary
/// name first, then all are renamed. A crash while writing leaves the old set whole; only a
/// crash between the renames (microseconds) can mix old and new files.
pub fn write_atomic_group(files: &[(&Path, &[u8])]) -> Result<()> {
    let mut tmps = vec![];
    let result = (|| -> Result<()> {
        for (path, data) in files {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let name = path
                .file_name()
                .context("output path has no file name")?
                .to_string_lossy();
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            tmps.push(tmp.clone());
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(data)
                .and_then(|_| f.sync_all())
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        for ((path, _), tmp) in files.iter().zip(&tmps) {
            std::fs::rename(tmp, path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for tmp in &tmps {
            let _ = std::fs::remove_file(tmp);
        }
    }
    result
}

/// Reads every tensor of a safetensors file (F32, I64; F16/BF16/F64/I32 are converted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, NamedTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st =
        SafeTensors::deserialize(&bytes).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let values = match v.dtype() {
            Dtype::F32 => Values::F32(
                d.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::F64 => Values::F32(
                d.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
            ),
            Dtype::I64 => Values::I64(
                d.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::I32 => Values::I64(
                d.chunks_exact(4)
                    .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                    .collect(),
            ),
            other => bail!(
                "{}: tensor {name} has dtype {other:?}; expected F32 or I64",
                path.display()
            ),
        };
        out.insert(
            name.clone(),
            NamedTensor {
                name,
                dims: v.shape().to_vec(),
                values,
            },
        );
    }
    Ok(out)
}

/// The network's state_dict as tensors: parameters, running stats, num_batches_tracked; with
/// `prefix` ("netG.") prepended, and, when `grads`, each parameter's gradient as `<name>.grad`.
pub fn state_tensors(ps: &ParamStore, prefix: &str, values: bool, grads: bool) -> Vec<NamedTensor> {
    let h = ps.host();
    let mut out = vec![];
    for e in &ps.entries {
        let name = format!("{prefix}{}", e.name);
        match e.kind {
            Kind::Param => {
                if values {
                    out.push(NamedTensor::f32(&name, &e.dims, h.data[e.span.range()].to_vec()));
                }
                if grads {
                    out.push(NamedTensor::f32(
                        format!("{name}.grad"),
                        &e.dims,
                        h.grad[e.span.range()].to_vec(),
                    ));
                }
            }
            Kind::Buffer if values => out.push(NamedTensor::f32(&name, &e.dims, h.buffers[e.span.range()].to_vec())),
            Kind::Counter if values => out.push(NamedTensor {
                name,
                dims: vec![],
                values: Values::I64(vec![ps.counters[e.span.off]]),
            }),
            _ => {}
        }
    }
    out
}

/// Saves a network's state_dict (PyTorch key names) to `path`.
pub fn save_network(path: &Path, ps: &ParamStore) -> Result<()> {
    write_safetensors(path, &state_tensors(ps, "", true, false), None)
}

/// Loads a network's state_dict strictly: every key present with the right shape, no extra keys.
pub fn load_network(path: &Path, ps: &mut ParamStore) -> Result<()> {
    let file = read_safetensors(path)?;
    load_from(&file, "", path, ps)
}

/// Loads the entries named `prefix + key` from already-read tensors (strict, like load_state_dict).
pub fn load_from(file: &BTreeMap<String, NamedTensor>, prefix: &str, path: &Path, ps: &mut ParamStore) -> Result<()> {
    let mut h = ps.host();
    let mut counters = ps.counters.clone();
    for e in &ps.entries {
        let name = format!("{prefix}{}", e.name);
        let t = file.get(&name).with_context(|| {
            format!(
                "{}: missing tensor {name} (expected shape {:?})",
                path.display(),
                e.dims
            )
        })?;
        if t.dims != e.dims {
            bail!(
                "{}: tensor {name} has shape {:?}, expected {:?}",
                path.display(),
                t.dims,
                e.dims
            );
        }
        match (e.kind, &t.values) {
            (Kind::Param, Values::F32(v)) => h.data[e.span.range()].copy_from_slice(v),
            (Kind::Buffer, Values::F32(v)) => h.buffers[e.span.range()].copy_from_slice(v),
            (Kind::Counter, Values::I64(v)) => counters[e.span.off] = v[0],
            (Kind::Counter, Values::F32(v)) => counters[e.span.off] = v[0] as i64,
            _ => bail!("{}: tensor {name} has the wrong dtype", path.display()),
        }
    }
    let known: std::collections::HashSet<String> = ps.entries.iter().map(|e| format!("{prefix}{}", e.name)).collect();
    let extra: Vec<&String> = file
        .keys()
        .filter(|k| k.starts_with(prefix) && !known.contains(*k))
        .collect();
    if !extra.is_empty() {
        bail!(
            "{}: unexpected tensor(s) {} — was it saved from a network with other options (--netG, --ngf, --ndf, --norm)?",
            path.display(),
            extra.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    ps.load_host(&h.data, &h.buffers, &counters)
}
