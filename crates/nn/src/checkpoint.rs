//! safetensors checkpoints under PyTorch's names: atomic writes (temp file, fsync, rename)
//! and loading that checks every name, shape and dtype and returns a typed error, never a
//! panic. A `state_dict` saved by `safetensors.torch.save_file` loads as it is.

use crate::optim::Optimizer;
use crate::params::ParamStore;
use recur_tape::{Element, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Entries under this prefix hold optimizer state; they are not parameters.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Entries under this prefix hold the rest of a training state (see
/// [`crate::train_state`]); loading weights skips them, so a training-state file is also a
/// weights checkpoint.
pub const STATE_PREFIX: &str = "state.";

/// Why a checkpoint could not be written or read.
#[derive(Debug)]
pub enum CheckpointError {
    /// The file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not a valid safetensors file (truncated, bad header, bad offsets...).
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter the model has is not in the file.
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The parameter's name.
        name: String,
    },
    /// The file has a tensor the model has no parameter for.
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape differs from its parameter's.
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The parameter's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The file's.
        found: Vec<usize>,
    },
    /// A tensor is stored in another dtype than the model's.
    DtypeMismatch {
        /// The file.
        path: PathBuf,
        /// The parameter's name.
        name: String,
        /// The model's dtype.
        expected: String,
        /// The file's.
        found: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CheckpointError::Malformed { path, reason } => {
                write!(
                    f,
                    "{}: not a valid safetensors checkpoint: {reason}",
                    path.display()
                )
            }
            CheckpointError::MissingKey { path, name } => {
                write!(f, "{}: missing tensor {name:?}", path.display())
            }
            CheckpointError::UnexpectedKey { path, name } => {
                write!(
                    f,
                    "{}: unexpected tensor {name:?} (no such parameter)",
                    path.display()
                )
            }
            CheckpointError::ShapeMismatch {
                path,
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{}: tensor {name:?} has shape {found:?}, expected {expected:?}",
                    path.display()
                )
            }
            CheckpointError::DtypeMismatch {
                path,
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{}: tensor {name:?} has dtype {found}, expected {expected}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A tensor read from a file, in the dtype it was stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredTensor {
    /// Stored as 32-bit floats.
    F32(Tensor<f32>),
    /// Stored as 64-bit floats.
    F64(Tensor<f64>),
    /// Stored as 64-bit integers (token ids, lengths).
    I64 {
        /// The values, row-major.
        values: Vec<i64>,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
}

impl StoredTensor {
    /// The safetensors dtype name: `"F32"`, `"F64"` or `"I64"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            StoredTensor::F32(_) => "F32",
            StoredTensor::F64(_) => "F64",
            StoredTensor::I64 { .. } => "I64",
        }
    }

    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            StoredTensor::F32(t) => t.shape(),
            StoredTensor::F64(t) => t.shape(),
            StoredTensor::I64 { shape, .. } => shape,
        }
    }

    /// The values as a float tensor of type `T` (converting between f32 and f64 if needed);
    /// `None` for integer tensors.
    pub fn to_float<T: Element>(&self) -> Option<Tensor<T>> {
        match self {
            StoredTensor::F32(t) => Some(t.cast()),
            StoredTensor::F64(t) => Some(t.cast()),
            StoredTensor::I64 { .. } => None,
        }
    }

    /// A float tensor stored in `T`'s own dtype (bit for bit).
    pub fn of_float<T: Element>(t: &Tensor<T>) -> Self {
        if T::DTYPE == "F32" {
            StoredTensor::F32(t.cast())
        } else {
            StoredTensor::F64(t.cast())
        }
    }

    /// The tensor as `T` only if it is stored as `T`.
    pub fn exactly<T: Element>(&self) -> Option<Tensor<T>> {
        (self.dtype() == T::DTYPE)
            .then(|| self.to_float())
            .flatten()
    }
}

/// The contents of a safetensors file: tensors in file order and the string metadata.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// Every tensor with its name, in the order of the file.
    pub tensors: Vec<(String, StoredTensor)>,
    /// The file's `__metadata__` strings.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The tensor named `name`, if the file has one.
    pub fn get(&self, name: &str) -> Option<&StoredTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every tensor of a safetensors file (F32, F64 and I64 are supported).
pub fn read(path: &Path) -> Result<TensorFile, CheckpointError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    parse(path, &bytes)
}

/// Parses safetensors bytes; `path` only names the source in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<TensorFile, CheckpointError> {
    let malformed = |reason: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(format!("{e:?}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| malformed(format!("{e:?}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = Vec::new();
    // Keep the file's own order (the header's offsets), which is PyTorch's order.
    let mut views: Vec<(String, TensorView<'_>)> = st.tensors();
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    for (name, view) in views {
        let shape = view.shape().to_vec();
        let data = view.data();
        let width = match view.dtype() {
            Dtype::F32 => 4,
            _ => 8,
        };
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements.and_then(|n| n.checked_mul(width)) != Some(data.len()) {
            return Err(malformed(format!(
                "tensor {name:?}: shape {shape:?} does not match its {} bytes",
                data.len()
            )));
        }
        let stored = match view.dtype() {
            Dtype::F32 => StoredTensor::F32(Tensor::from_vec(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
                &shape,
            )),
            Dtype::F64 => StoredTensor::F64(Tensor::from_vec(
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                &shape,
            )),
            Dtype::I64 => StoredTensor::I64 {
                values: data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                shape,
            },
            other => {
                return Err(malformed(format!(
                    "tensor {name:?} has unsupported dtype {other:?}"
                )))
            }
        };
        tensors.push((name, stored));
    }
    Ok(TensorFile { tensors, metadata })
}

/// One tensor's bytes as safetensors stores them (little-endian).
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw_float<T: Element>(t: &Tensor<T>) -> Raw {
    let mut bytes = Vec::with_capacity(t.numel() * std::mem::size_of::<T>());
    let dtype = if T::DTYPE == "F32" {
        for v in t.data() {
            bytes.extend_from_slice(&v.to_f32().expect("f32").to_le_bytes());
        }
        Dtype::F32
    } else {
        for v in t.data() {
            bytes.extend_from_slice(&v.to_f64().expect("f64").to_le_bytes());
        }
        Dtype::F64
    };
    Raw {
        dtype,
        shape: t.shape().to_vec(),
        bytes,
    }
}

fn raw_stored(t: &StoredTensor) -> Raw {
    match t {
        StoredTensor::F32(t) => raw_float(t),
        StoredTensor::F64(t) => raw_float(t),
        StoredTensor::I64 { values, shape } => Raw {
            dtype: Dtype::I64,
            shape: shape.clone(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        },
    }
}

/// Writes named tensors atomically: a temp file beside `path`, fsynced, then renamed over it,
/// so a crash mid-write leaves any previous file intact.
pub fn write<T: Element>(
    path: &Path,
    tensors: &[(String, &Tensor<T>)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let raw: Vec<(&str, Raw)> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), raw_float(t)))
        .collect();
    write_raw(path, &raw, metadata)
}

/// Writes a [`TensorFile`] (tensors of any stored dtype, and its metadata) atomically, as
/// [`write()`] does.
pub fn write_file(path: &Path, file: &TensorFile) -> Result<(), CheckpointError> {
    let raw: Vec<(&str, Raw)> = file
        .tensors
        .iter()
        .map(|(n, t)| (n.as_str(), raw_stored(t)))
        .collect();
    write_raw(path, &raw, file.metadata.clone())
}

fn write_raw(
    path: &Path,
    tensors: &[(&str, Raw)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let views = tensors.iter().map(|(n, t)| (*n, t));
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    let bytes =
        safetensors::tensor::serialize(views, &meta).map_err(|e| CheckpointError::Malformed {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })?;
    write_atomically(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old file or
/// the new one, complete: a temp file unique to the write beside it, fsynced, renamed over
/// `path`, and the directory fsynced. On error the temp file is removed and `path` is
/// untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per write, so concurrent saves (threads or processes) never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Saves a parameter store (and optionally an optimizer's state under `optimizer.`).
pub fn save<T: Element>(
    path: &Path,
    params: &ParamStore<T>,
    optimizer: Option<&dyn Optimizer<T>>,
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let opt_state = optimizer
        .map(|o| o.state_tensors(params))
        .unwrap_or_default();
    let mut named: Vec<(String, &Tensor<T>)> =
        params.iter().map(|(n, t)| (n.to_string(), t)).collect();
    named.extend(
        opt_state
            .iter()
            .map(|(n, t)| (format!("{OPTIMIZER_PREFIX}{n}"), t)),
    );
    write(path, &named, metadata)
}

/// Loads a checkpoint into `params`, requiring exactly the store's names with matching shapes
/// and dtype; restores optimizer state if one is given. Returns the file's metadata.
/// On any error, `params` is left unchanged.
pub fn load<T: Element>(
    path: &Path,
    params: &mut ParamStore<T>,
    optimizer: Option<&mut dyn Optimizer<T>>,
) -> Result<HashMap<String, String>, CheckpointError> {
    let file = read(path)?;
    load_from(path, &file, params, optimizer)?;
    Ok(file.metadata)
}

/// [`load`] from a file already read; `path` only names it in errors.
pub fn load_from<T: Element>(
    path: &Path,
    file: &TensorFile,
    params: &mut ParamStore<T>,
    optimizer: Option<&mut dyn Optimizer<T>>,
) -> Result<(), CheckpointError> {
    let p = || path.to_path_buf();
    let mut values: Vec<Option<Tensor<T>>> = vec![None; params.len()];
    let mut opt_state = Vec::new();
    for (name, stored) in &file.tensors {
        if name.starts_with(STATE_PREFIX) {
            continue;
        }
        if let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) {
            if let Some(t) = stored.exactly::<T>() {
                opt_state.push((rest.to_string(), t));
            }
            continue;
        }
        let id = params
            .find(name)
            .ok_or_else(|| CheckpointError::UnexpectedKey {
                path: p(),
                name: name.clone(),
            })?;
        let expected = params.get(id).shape();
        if stored.shape() != expected {
            return Err(CheckpointError::ShapeMismatch {
                path: p(),
                name: name.clone(),
                expected: expected.to_vec(),
                found: stored.shape().to_vec(),
            });
        }
        let t = stored
            .exactly::<T>()
            .ok_or_else(|| CheckpointError::DtypeMismatch {
                path: p(),
                name: name.clone(),
                expected: T::DTYPE.to_string(),
                found: stored.dtype().to_string(),
            })?;
        values[id.index()] = Some(t);
    }
    if let Some(missing) = params.ids().find(|id| values[id.index()].is_none()) {
        return Err(CheckpointError::MissingKey {
            path: p(),
            name: params.name(missing).to_string(),
        });
    }
    for (id, v) in params.ids().zip(values) {
        *params.get_mut(id) = v.expect("checked above");
    }
    if let Some(opt) = optimizer {
        opt.load_state_tensors(params, &opt_state);
    }
    Ok(())
}
