//! PyTorch parity: rebuild a recurrent layer from a fixture written by
//! `torch_fixtures.py` (config JSON in the metadata, weights under PyTorch names, inputs,
//! outputs and gradients), run forward and backward, and compare every tensor.

use crate::checkpoint::{self, CheckpointError, StoredTensor, TensorFile};
use crate::params::ParamStore;
use crate::rnn::{CellKind, Nonlinearity, Recurrent, RnnOptions};
use crate::session::{Mode, Session};
use recur_tape::{Element, Tape, Tensor, Var};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a fixture could not be checked (as opposed to checked and found different).
#[derive(Debug)]
pub enum ParityError {
    /// The fixture file could not be read.
    File(CheckpointError),
    /// The file was read but is not a fixture this check understands.
    Fixture {
        /// The fixture.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ParityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParityError::File(e) => write!(f, "{e}"),
            ParityError::Fixture { path, reason } => {
                write!(f, "{}: not a usable fixture: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ParityError {}

/// One compared tensor: its name and the normwise relative error ‖ours − torch‖∞ / ‖torch‖∞.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The tensor's name in the fixture (`output`, `grad.weight_ih_l0`, ...).
    pub name: String,
    /// ‖ours − torch‖∞ / ‖torch‖∞.
    pub rel_error: f64,
}

/// Every tensor of one fixture compared against PyTorch's.
#[derive(Clone, Debug)]
pub struct ParityReport {
    /// The fixture's layer configuration, as it describes itself.
    pub config: String,
    /// One comparison per output, final state and gradient.
    pub comparisons: Vec<Comparison>,
}

impl ParityReport {
    /// The largest relative error of all comparisons.
    pub fn worst(&self) -> f64 {
        self.comparisons
            .iter()
            .map(|c| c.rel_error)
            .fold(0.0, f64::max)
    }
}

/// Tensors in a fixture that are not layer weights.
const DATA_KEYS: [&str; 10] = [
    "input", "h0", "c0", "lengths", "output", "h_n", "c_n", "grad_out", "grad_h_n", "grad_c_n",
];

struct Fixture<'a> {
    path: &'a Path,
    file: TensorFile,
}

impl Fixture<'_> {
    fn bad(&self, reason: impl Into<String>) -> ParityError {
        ParityError::Fixture {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn tensor<T: Element>(&self, name: &str) -> Result<Tensor<T>, ParityError> {
        self.file
            .get(name)
            .ok_or_else(|| self.bad(format!("missing tensor {name:?}")))?
            .to_float()
            .ok_or_else(|| self.bad(format!("tensor {name:?} is not a float tensor")))
    }

    fn lengths(&self, cfg: &Value) -> Result<Option<Vec<usize>>, ParityError> {
        match self.file.get("lengths") {
            Some(StoredTensor::I64 { values, .. }) => values
                .iter()
                .map(|&v| usize::try_from(v).map_err(|_| self.bad(format!("negative length {v}"))))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.bad(format!("lengths must be I64, found {}", other.dtype()))),
            None => match cfg.get("lengths") {
                Some(Value::Array(a)) => Ok(Some(
                    a.iter()
                        .filter_map(Value::as_u64)
                        .map(|v| v as usize)
                        .collect(),
                )),
                _ => Ok(None),
            },
        }
    }
}

fn field<'v>(fx: &Fixture<'_>, cfg: &'v Value, key: &str) -> Result<&'v Value, ParityError> {
    cfg.get(key)
        .ok_or_else(|| fx.bad(format!("config has no {key:?}")))
}

fn usize_field(fx: &Fixture<'_>, cfg: &Value, key: &str) -> Result<usize, ParityError> {
    field(fx, cfg, key)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| fx.bad(format!("config {key:?} is not a count")))
}

fn bool_field(fx: &Fixture<'_>, cfg: &Value, key: &str) -> Result<bool, ParityError> {
    field(fx, cfg, key)?
        .as_bool()
        .ok_or_else(|| fx.bad(format!("config {key:?} is not a boolean")))
}

fn rel_error<T: Element>(ours: &Tensor<T>, torch: &Tensor<T>) -> f64 {
    if ours.shape() != torch.shape() {
        return f64::INFINITY;
    }
    let scale = torch
        .data()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.to_f64().unwrap_or(f64::NAN).abs()));
    let diff = ours.max_abs_diff(torch).to_f64().unwrap_or(f64::NAN);
    if diff.is_nan() {
        f64::INFINITY
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}

/// Checks one fixture in element type `T` (f64 for the 1e-10 bar, f32 for 1e-4).
pub fn run_fixture<T: Element>(path: &Path) -> Result<ParityReport, ParityError> {
    let file = checkpoint::read(path).map_err(ParityError::File)?;
    let fx = Fixture { path, file };
    let config = fx
        .file
        .metadata
        .get("config")
        .ok_or_else(|| fx.bad("no \"config\" in the metadata"))?
        .clone();
    let cfg: Value =
        serde_json::from_str(&config).map_err(|e| fx.bad(format!("config is not JSON: {e}")))?;
    let mode = field(&fx, &cfg, "mode")?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let options = RnnOptions::new(
        usize_field(&fx, &cfg, "input_size")?,
        usize_field(&fx, &cfg, "hidden_size")?,
    )
    .num_layers(usize_field(&fx, &cfg, "num_layers")?)
    .bidirectional(bool_field(&fx, &cfg, "bidirectional")?)
    .batch_first(bool_field(&fx, &cfg, "batch_first")?)
    .bias(bool_field(&fx, &cfg, "bias")?);
    if options.num_layers == 0 || options.hidden_size == 0 {
        return Err(fx.bad("num_layers and hidden_size must be positive"));
    }
    let proj_size = cfg.get("proj_size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut store = ParamStore::<T>::new();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let kind = match mode.as_str() {
        "RNN" => match cfg.get("nonlinearity").and_then(Value::as_str) {
            Some("relu") => CellKind::Rnn(Nonlinearity::Relu),
            Some("tanh") | None => CellKind::Rnn(Nonlinearity::Tanh),
            Some(other) => return Err(fx.bad(format!("unknown nonlinearity {other:?}"))),
        },
        "LSTM" => CellKind::Lstm,
        "GRU" => CellKind::Gru,
        other => return Err(fx.bad(format!("unknown mode {other:?}"))),
    };
    if proj_size > 0 && (kind != CellKind::Lstm || proj_size >= options.hidden_size) {
        return Err(fx.bad(format!(
            "proj_size {proj_size} needs an LSTM with hidden_size above it"
        )));
    }
    let options = options.proj_size(proj_size);
    let layer = Recurrent::of_kind(&mut store, "", kind, options.clone(), &mut rng);
    for (name, _) in &fx.file.tensors {
        if !name.starts_with("grad.")
            && !DATA_KEYS.contains(&name.as_str())
            && store.find(name).is_none()
        {
            return Err(fx.bad(format!(
                "weight {name:?} does not belong to the configured layer"
            )));
        }
    }
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        let w = fx.tensor::<T>(&name)?;
        if w.shape() != store.get(id).shape() {
            return Err(fx.bad(format!(
                "weight {name:?} has shape {:?}, expected {:?}",
                w.shape(),
                store.get(id).shape()
            )));
        }
        *store.get_mut(id) = w;
    }

    let is_lstm = kind == CellKind::Lstm;
    let tape = Tape::<T>::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let x = tape.var(fx.tensor("input")?);
    let mut init = vec![tape.var(fx.tensor("h0")?)];
    if is_lstm {
        init.push(tape.var(fx.tensor("c0")?));
    }
    let lengths = fx.lengths(&cfg)?;
    check_shapes(&fx, &options, proj_size, x, &init, lengths.as_deref())?;
    let out = layer.forward(&s, x, Some(&init), lengths.as_deref());
    let mut loss = (out.output * tape.constant(fx.tensor("grad_out")?)).sum()
        + (out.h_n() * tape.constant(fx.tensor("grad_h_n")?)).sum();
    if let Some(c_n) = out.c_n() {
        loss = loss + (c_n * tape.constant(fx.tensor("grad_c_n")?)).sum();
    }
    let grads = tape.backward(loss);

    let mut comparisons = Vec::new();
    let mut compare = |name: &str, ours: Tensor<T>| -> Result<(), ParityError> {
        let torch = fx.tensor::<T>(name)?;
        comparisons.push(Comparison {
            name: name.to_string(),
            rel_error: rel_error(&ours, &torch),
        });
        Ok(())
    };
    compare("output", out.output.to_tensor())?;
    compare("h_n", out.h_n().to_tensor())?;
    if let Some(c_n) = out.c_n() {
        compare("c_n", c_n.to_tensor())?;
    }
    compare("grad.input", grads.wrt(x))?;
    compare("grad.h0", grads.wrt(init[0]))?;
    if is_lstm {
        compare("grad.c0", grads.wrt(init[1]))?;
    }
    for id in store.ids() {
        compare(&format!("grad.{}", store.name(id)), grads.wrt(s.param(id)))?;
    }
    Ok(ParityReport {
        config,
        comparisons,
    })
}

/// Rejects fixtures whose tensors do not fit the configured layer, before the layer's own
/// shape assertions would panic.
fn check_shapes<T: Element>(
    fx: &Fixture<'_>,
    o: &RnnOptions,
    proj_size: usize,
    x: Var<'_, T>,
    init: &[Var<'_, T>],
    lengths: Option<&[usize]>,
) -> Result<(), ParityError> {
    let xs = x.shape();
    if xs.len() != 3 || xs[2] != o.input_size {
        return Err(fx.bad(format!(
            "input has shape {:?}, expected [_, _, {}]",
            xs.as_slice(),
            o.input_size
        )));
    }
    let (steps, batch) = if o.batch_first {
        (xs[1], xs[0])
    } else {
        (xs[0], xs[1])
    };
    let units = o.num_layers * if o.bidirectional { 2 } else { 1 };
    let out = if proj_size > 0 {
        proj_size
    } else {
        o.hidden_size
    };
    for (v, w, name) in init
        .iter()
        .zip([out, o.hidden_size])
        .zip(["h0", "c0"])
        .map(|((v, w), n)| (v, w, n))
    {
        if v.shape().as_slice() != [units, batch, w] {
            return Err(fx.bad(format!(
                "{name} has shape {:?}, expected {:?}",
                v.shape().as_slice(),
                [units, batch, w]
            )));
        }
    }
    if let Some(l) = lengths {
        if l.len() != batch || l.iter().any(|&n| n == 0 || n > steps) {
            return Err(fx.bad(format!(
                "lengths {l:?} do not fit {batch} rows of {steps} steps"
            )));
        }
    }
    Ok(())
}
