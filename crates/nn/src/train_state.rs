//! Training-state files: everything a training loop needs to continue exactly where it
//! stopped, in one safetensors file written atomically. The parameters keep their own names
//! (so the file is also a weights checkpoint), the optimizer's state sits under `optimizer.`,
//! and the rest (the truncated-BPTT driver, RNG states, the loop's counters and sums, any
//! tensor a user's loop adds) under `state.`; the run's configuration and other JSON go into
//! the metadata. Exact: floats are stored bit for bit, never through decimal text.
//!
//! ```
//! use rand::{Rng, SeedableRng};
//! use rand_chacha::ChaCha12Rng;
//! use recur_nn::optim::{Adam, AdamOptions};
//! use recur_nn::train_state::TrainState;
//! use recur_nn::ParamStore;
//! use recur_tape::Tensor;
//!
//! let mut store = ParamStore::new();
//! store.add("w", Tensor::from_vec(vec![1.0f32, 2.0], &[2]));
//! let mut rng = ChaCha12Rng::seed_from_u64(7);
//! rng.gen::<u64>();
//!
//! let mut state = TrainState::new();
//! state.put_params(&store, &Adam::new(AdamOptions::adam(1e-3)));
//! state.put_rng("sample", &rng);
//! state.put_u64s("progress", &[3, 120]);
//! state.put_json("config", &serde_json::json!({"hidden": 256}));
//! let path = std::env::temp_dir().join(format!("doc-state-{}.safetensors", std::process::id()));
//! state.save(&path).unwrap();
//!
//! let back = TrainState::load(&path).unwrap();
//! back.check_config("config", &serde_json::json!({"hidden": 256})).unwrap();
//! assert!(back.check_config("config", &serde_json::json!({"hidden": 512})).is_err());
//! assert_eq!(back.u64s("progress").unwrap(), [3, 120]);
//! assert_eq!(back.rng("sample").unwrap().gen::<u64>(), rng.gen::<u64>());
//! # std::fs::remove_file(&path).unwrap();
//! ```

use crate::checkpoint::{self, CheckpointError, StoredTensor, TensorFile, STATE_PREFIX};
use crate::optim::Optimizer;
use crate::params::ParamStore;
use rand_chacha::ChaCha12Rng;
use recur_tape::{Element, Tensor};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// The metadata key and value that mark a training-state file.
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "recur-train-state/1";

/// Why a training state could not be written, read or resumed from.
#[derive(Debug)]
pub enum StateError {
    /// Reading, writing or parsing the file, or loading its parameters, failed.
    Checkpoint(CheckpointError),
    /// The file is a safetensors file but not a training state (a weights-only checkpoint).
    NotAState {
        /// The file.
        path: PathBuf,
    },
    /// An entry the loop needs is absent or has the wrong type or size.
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state was saved by a run with another configuration.
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Each differing field: its name, the state's value and the current run's.
        differences: Vec<(String, String, String)>,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Checkpoint(e) => e.fmt(f),
            StateError::NotAState { path } => write!(
                f,
                "{}: a weights-only checkpoint, not a training state (it cannot resume a run; \
                 use it to initialise one instead)",
                path.display()
            ),
            StateError::Invalid {
                path,
                entry,
                reason,
            } => write!(
                f,
                "{}: not a valid training state: {entry}: {reason}",
                path.display()
            ),
            StateError::Mismatch { path, differences } => {
                write!(
                    f,
                    "{}: saved by a run with other settings, refusing to resume:",
                    path.display()
                )?;
                for (field, saved, now) in differences {
                    write!(f, "\n  {field}: the state has {saved}, this run has {now}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Checkpoint(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CheckpointError> for StateError {
    fn from(e: CheckpointError) -> Self {
        StateError::Checkpoint(e)
    }
}

/// A training state being assembled for [`TrainState::save`], or read by
/// [`TrainState::load`].
#[derive(Clone, Debug)]
pub struct TrainState {
    path: PathBuf,
    file: TensorFile,
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

impl TrainState {
    /// An empty state.
    pub fn new() -> Self {
        let mut file = TensorFile::default();
        file.metadata.insert(FORMAT_KEY.into(), FORMAT.into());
        TrainState {
            path: PathBuf::from("(unsaved training state)"),
            file,
        }
    }

    /// Writes the state atomically: a crash at any moment leaves the previous file or this
    /// one, complete. A failed write (disk full, no permission) is an `Err` and leaves the
    /// previous file as it was.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        Ok(checkpoint::write_file(path, &self.file)?)
    }

    /// Reads a state written by [`TrainState::save`]; anything else is an `Err`.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    /// Parses a state's bytes; `path` only names the source in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, StateError> {
        let file = checkpoint::parse(path, bytes)?;
        if file.metadata.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(StateError::NotAState {
                path: path.to_path_buf(),
            });
        }
        Ok(TrainState {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file it was read from (a placeholder for a state not yet read).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's tensors and metadata.
    pub fn file(&self) -> &TensorFile {
        &self.file
    }

    fn invalid(&self, entry: &str, reason: impl Into<String>) -> StateError {
        StateError::Invalid {
            path: self.path.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn put(&mut self, name: String, tensor: StoredTensor) {
        self.file.tensors.retain(|(n, _)| *n != name);
        self.file.tensors.push((name, tensor));
    }

    fn stored(&self, name: &str) -> Result<&StoredTensor, StateError> {
        self.file
            .get(&format!("{STATE_PREFIX}{name}"))
            .ok_or_else(|| self.invalid(name, "missing"))
    }

    /// Stores the parameters under their names and the optimizer's state (its moments, step
    /// counts and learning rate).
    pub fn put_params<T: Element>(&mut self, params: &ParamStore<T>, optimizer: &dyn Optimizer<T>) {
        for (name, t) in params.iter() {
            self.put(name.to_string(), StoredTensor::of_float(t));
        }
        for (name, t) in optimizer.state_tensors(params) {
            let name = format!("{}{name}", checkpoint::OPTIMIZER_PREFIX);
            self.put(name, StoredTensor::of_float(&t));
        }
        self.put_f64s("optimizer.lr", &[optimizer.lr()]);
    }

    /// Restores what [`TrainState::put_params`] stored. Every parameter must be present with
    /// its shape and dtype; on error `params` is unchanged.
    pub fn restore_params<T: Element>(
        &self,
        params: &mut ParamStore<T>,
        optimizer: &mut dyn Optimizer<T>,
    ) -> Result<(), StateError> {
        let lr = self.f64s("optimizer.lr")?;
        let [lr] = lr[..] else {
            return Err(self.invalid("optimizer.lr", "not one value"));
        };
        checkpoint::load_from(&self.path, &self.file, params, Some(optimizer))?;
        optimizer.set_lr(lr);
        Ok(())
    }

    /// Stores a float tensor under `state.<name>`, in `T`'s dtype.
    pub fn put_tensor<T: Element>(&mut self, name: &str, tensor: &Tensor<T>) {
        self.put(
            format!("{STATE_PREFIX}{name}"),
            StoredTensor::of_float(tensor),
        );
    }

    /// The float tensor stored under `name`, which must be in `T`'s dtype.
    pub fn tensor<T: Element>(&self, name: &str) -> Result<Tensor<T>, StateError> {
        let stored = self.stored(name)?;
        stored
            .exactly::<T>()
            .ok_or_else(|| self.invalid(name, format!("stored as {}", stored.dtype())))
    }

    /// Stores f64 values exactly (losses summed so far, curves, a learning rate).
    pub fn put_f64s(&mut self, name: &str, values: &[f64]) {
        self.put_tensor(name, &Tensor::from_vec(values.to_vec(), &[values.len()]));
    }

    /// The f64 values stored under `name`.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>, StateError> {
        Ok(self.tensor::<f64>(name)?.data().to_vec())
    }

    /// Stores (x, y) points exactly (a loss curve), as f64 values x₀ y₀ x₁ y₁ …
    pub fn put_points(&mut self, name: &str, points: &[(f64, f64)]) {
        let flat: Vec<f64> = points.iter().flat_map(|&(x, y)| [x, y]).collect();
        self.put_f64s(name, &flat);
    }

    /// The points stored by [`TrainState::put_points`].
    pub fn points(&self, name: &str) -> Result<Vec<(f64, f64)>, StateError> {
        let flat = self.f64s(name)?;
        if flat.len() % 2 != 0 {
            return Err(self.invalid(name, "an odd number of values"));
        }
        Ok(flat.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    /// Stores integers exactly (counters, positions, token ids).
    pub fn put_u64s(&mut self, name: &str, values: &[u64]) {
        let shape = vec![values.len()];
        let values = values.iter().map(|&v| v as i64).collect();
        self.put(
            format!("{STATE_PREFIX}{name}"),
            StoredTensor::I64 { values, shape },
        );
    }

    /// The integers stored under `name`.
    pub fn u64s(&self, name: &str) -> Result<Vec<u64>, StateError> {
        match self.stored(name)? {
            StoredTensor::I64 { values, .. } => Ok(values.iter().map(|&v| v as u64).collect()),
            other => Err(self.invalid(name, format!("stored as {}", other.dtype()))),
        }
    }

    /// Integers stored under `name` as `usize`, each below `limit` (an index into something
    /// of that size), so a damaged file cannot index out of bounds.
    pub fn indices(&self, name: &str, limit: usize) -> Result<Vec<usize>, StateError> {
        self.u64s(name)?
            .into_iter()
            .map(|v| {
                usize::try_from(v)
                    .ok()
                    .filter(|&v| v < limit)
                    .ok_or_else(|| self.invalid(name, format!("{v} is not below {limit}")))
            })
            .collect()
    }

    /// Stores a ChaCha12 generator's exact position (seed, stream and word position), so the
    /// restored one continues its sequence. `rand`'s `StdRng` is ChaCha12 too: a
    /// `ChaCha12Rng::seed_from_u64(s)` draws what `StdRng::seed_from_u64(s)` draws.
    pub fn put_rng(&mut self, name: &str, rng: &ChaCha12Rng) {
        let seed = rng.get_seed();
        let mut words: Vec<u64> = seed
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let pos = rng.get_word_pos();
        words.extend([rng.get_stream(), pos as u64, (pos >> 64) as u64]);
        self.put_u64s(&format!("rng.{name}"), &words);
    }

    /// The generator stored by [`TrainState::put_rng`].
    pub fn rng(&self, name: &str) -> Result<ChaCha12Rng, StateError> {
        use rand::SeedableRng;
        let entry = format!("rng.{name}");
        let words = self.u64s(&entry)?;
        let [s0, s1, s2, s3, stream, lo, hi] = words[..] else {
            return Err(self.invalid(&entry, format!("{} words, expected 7", words.len())));
        };
        let mut seed = [0u8; 32];
        for (chunk, w) in seed.chunks_exact_mut(8).zip([s0, s1, s2, s3]) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let mut rng = ChaCha12Rng::from_seed(seed);
        rng.set_stream(stream);
        rng.set_word_pos(u128::from(lo) | (u128::from(hi) << 64));
        Ok(rng)
    }

    /// Stores JSON in the metadata under `key` (the run's configuration, say).
    pub fn put_json(&mut self, key: &str, value: &Value) {
        self.file
            .metadata
            .insert(key.to_string(), value.to_string());
    }

    /// The JSON stored under `key`.
    pub fn json(&self, key: &str) -> Result<Value, StateError> {
        let text = self
            .file
            .metadata
            .get(key)
            .ok_or_else(|| self.invalid(key, "missing"))?;
        serde_json::from_str(text).map_err(|e| self.invalid(key, e.to_string()))
    }

    /// Refuses to resume unless the JSON object stored under `key` equals `current` field by
    /// field; the error names every field that differs with both values.
    pub fn check_config(&self, key: &str, current: &Value) -> Result<(), StateError> {
        let saved = self.json(key)?;
        let fields = |v: &Value| v.as_object().cloned().unwrap_or_default();
        let (saved, current) = (fields(&saved), fields(current));
        let mut names: Vec<&String> = saved.keys().chain(current.keys()).collect();
        names.sort();
        names.dedup();
        let show = |v: Option<&Value>| v.map_or("nothing".to_string(), Value::to_string);
        let differences: Vec<_> = names
            .into_iter()
            .filter(|n| saved.get(*n) != current.get(*n))
            .map(|n| (n.clone(), show(saved.get(n)), show(current.get(n))))
            .collect();
        if differences.is_empty() {
            Ok(())
        } else {
            Err(StateError::Mismatch {
                path: self.path.clone(),
                differences,
            })
        }
    }
}

/// The SHA-256 of a file's bytes as hex (what `sha256sum` prints), to tie a state to the data
/// it was trained on.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Adam, AdamOptions};
    use rand::{Rng, SeedableRng};

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("recur-{name}-{}.safetensors", std::process::id()))
    }

    #[test]
    fn params_optimizer_and_values_round_trip_bit_for_bit() {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let mut store = ParamStore::new();
        let w = store.add("w", Tensor::<f32>::uniform(&[3, 4], -1.0, 1.0, &mut rng));
        let mut grads = crate::params::ParamGrads::empty(1);
        grads.set(w, Tensor::uniform(&[3, 4], -1.0, 1.0, &mut rng));
        let mut adam = Adam::new(AdamOptions::adam(0.01));
        adam.step(&mut store, &grads);
        adam.set_lr(0.003);
        let mut state = TrainState::new();
        state.put_params(&store, &adam);
        state.put_f64s("sums", &[0.1 + 0.2, f64::MIN_POSITIVE, -0.0]);
        state.put_u64s("counters", &[0, u64::MAX, 17]);
        state.put_points("curve", &[(1.0, 0.1 + 0.2), (2.0, -0.0)]);
        let path = temp("state-round-trip");
        state.save(&path).unwrap();
        let back = TrainState::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        let mut store2 = ParamStore::new();
        store2.add("w", Tensor::<f32>::zeros(&[3, 4]));
        let mut adam2 = Adam::new(AdamOptions::adam(0.5));
        back.restore_params(&mut store2, &mut adam2).unwrap();
        assert_eq!(store2.get(w), store.get(w));
        assert_eq!(adam2.lr(), 0.003);
        // The same next step from both optimizers.
        adam.step(&mut store, &grads);
        adam2.step(&mut store2, &grads);
        assert_eq!(store2.get(w), store.get(w));
        let bits = |v: Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(back.f64s("sums").unwrap()),
            bits(vec![0.1 + 0.2, f64::MIN_POSITIVE, -0.0])
        );
        assert_eq!(back.u64s("counters").unwrap(), [0, u64::MAX, 17]);
        let curve = back.points("curve").unwrap();
        assert_eq!(curve[0].1.to_bits(), (0.1f64 + 0.2).to_bits());
        assert_eq!(curve[1].1.to_bits(), (-0.0f64).to_bits());
        assert!(back.points("sums").is_err(), "three values are not points");
        assert!(back.indices("counters", 100).is_err());
        assert!(matches!(
            back.f64s("counters"),
            Err(StateError::Invalid { .. })
        ));
        assert!(matches!(back.f64s("nope"), Err(StateError::Invalid { .. })));
    }

    #[test]
    fn a_restored_rng_continues_its_sequence_like_std_rng() {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let mut std_rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..37 {
            assert_eq!(rng.gen::<u32>(), std_rng.gen::<u32>());
        }
        let mut state = TrainState::new();
        state.put_rng("data", &rng);
        let mut back = state.rng("data").unwrap();
        let want: Vec<f64> = (0..100).map(|_| rng.gen()).collect();
        let got: Vec<f64> = (0..100).map(|_| back.gen()).collect();
        assert_eq!(want, got);
    }

    #[test]
    fn a_weights_checkpoint_is_not_a_state_but_a_state_loads_as_weights() {
        let mut store = ParamStore::new();
        let w = store.add("w", Tensor::from_vec(vec![1.5f32, -2.0], &[2]));
        let weights = temp("weights-only");
        checkpoint::save(&weights, &store, None, Default::default()).unwrap();
        let err = TrainState::load(&weights).unwrap_err();
        assert!(matches!(err, StateError::NotAState { .. }), "{err}");
        assert!(err.to_string().contains("weights-only"), "{err}");

        let mut state = TrainState::new();
        state.put_params(&store, &Adam::new(AdamOptions::adam(0.1)));
        state.put_u64s("step", &[5]);
        let path = temp("state-as-weights");
        state.save(&path).unwrap();
        let mut fresh = ParamStore::new();
        fresh.add("w", Tensor::<f32>::zeros(&[2]));
        checkpoint::load(&path, &mut fresh, None).unwrap();
        assert_eq!(fresh.get(w), store.get(w));
        for p in [weights, path] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn a_config_mismatch_names_every_differing_field() {
        let mut state = TrainState::new();
        state.put_json(
            "config",
            &serde_json::json!({"hidden": 256, "lr": 0.002, "cell": "lstm"}),
        );
        state
            .check_config(
                "config",
                &serde_json::json!({"cell": "lstm", "lr": 0.002, "hidden": 256}),
            )
            .unwrap();
        let err = state
            .check_config(
                "config",
                &serde_json::json!({"hidden": 128, "lr": 0.002, "seed": 2}),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hidden: the state has 256, this run has 128"),
            "{err}"
        );
        assert!(
            err.contains("cell: the state has \"lstm\", this run has nothing"),
            "{err}"
        );
        assert!(
            err.contains("seed: the state has nothing, this run has 2"),
            "{err}"
        );
        assert!(!err.contains("lr"), "{err}");
    }

    #[test]
    fn sha256_matches_the_standard_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
