//! Where a translate run stands, saved and restored with its weights and Adam's state as one
//! training state, so that a resumed run trains on the same batches in the same order and
//! prints what the uninterrupted run would have.

use rand_chacha::ChaCha12Rng;
use recur::nn::optim::Optimizer;
use recur::nn::train_state::{StateError, TrainState};
use recur::nn::ParamStore;
use serde_json::Value;
use std::path::Path;

pub struct Progress {
    /// The epoch in progress, from 1.
    pub epoch: usize,
    /// This epoch's batches (indices into the training pairs, in their shuffled order);
    /// empty until the epoch draws them.
    pub batches: Vec<Vec<usize>>,
    /// Batches of it already trained on.
    pub next_batch: usize,
    /// Updates so far (the dropout seeds and the teacher-forcing schedule follow it).
    pub step: usize,
    /// This epoch's summed loss, target tokens and pairs.
    pub epoch_loss: f64,
    pub epoch_tokens: usize,
    pub pairs_seen: usize,
    pub history_train: Vec<(f64, f64)>,
    pub history_valid: Vec<(f64, f64)>,
    pub best_valid: f64,
    /// Seconds of training before this process started.
    pub elapsed: f64,
    /// Shuffles the batches of each epoch.
    pub rng: ChaCha12Rng,
}

impl Progress {
    pub fn new(rng: ChaCha12Rng) -> Self {
        Progress {
            epoch: 1,
            batches: Vec::new(),
            next_batch: 0,
            step: 0,
            epoch_loss: 0.0,
            epoch_tokens: 0,
            pairs_seen: 0,
            history_train: Vec::new(),
            history_valid: Vec::new(),
            best_valid: f64::INFINITY,
            elapsed: 0.0,
            rng,
        }
    }

    /// Starts the next epoch: its batches are drawn when it begins.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.batches.clear();
        self.next_batch = 0;
        (self.epoch_loss, self.epoch_tokens, self.pairs_seen) = (0.0, 0, 0);
    }
}

/// Writes the whole state atomically under `config`, the settings a resume must share.
pub fn save(
    path: &Path,
    config: &Value,
    store: &ParamStore<f32>,
    opt: &dyn Optimizer<f32>,
    p: &Progress,
    elapsed: f64,
) -> Result<(), String> {
    let mut state = TrainState::new();
    state.put_json("config", config);
    state.put_params(store, opt);
    let counts = [p.epoch, p.next_batch, p.step, p.epoch_tokens, p.pairs_seen];
    state.put_u64s("progress.counts", &counts.map(|c| c as u64));
    state.put_f64s("progress.sums", &[p.epoch_loss, p.best_valid, elapsed]);
    state.put_points("progress.history_train", &p.history_train);
    state.put_points("progress.history_valid", &p.history_valid);
    let order: Vec<u64> = p.batches.iter().flatten().map(|&i| i as u64).collect();
    let sizes: Vec<u64> = p.batches.iter().map(|b| b.len() as u64).collect();
    state.put_u64s("progress.batch_order", &order);
    state.put_u64s("progress.batch_sizes", &sizes);
    state.put_rng("data", &p.rng);
    state
        .save(path)
        .map_err(|e| format!("{e}; training stopped (the previous state file is intact)"))
}

/// Restores the state at `path` into `store` and `opt`, refused unless it was saved with
/// `config`; `pairs` is the number of training pairs (every saved index must fall below it).
pub fn restore(
    path: &Path,
    config: &Value,
    store: &mut ParamStore<f32>,
    opt: &mut dyn Optimizer<f32>,
    pairs: usize,
) -> Result<Progress, String> {
    let state = TrainState::load(path).map_err(|e| e.to_string())?;
    let mut restore = || -> Result<Progress, StateError> {
        state.check_config("config", config)?;
        let invalid = |entry: &str, reason: &str| StateError::Invalid {
            path: path.to_path_buf(),
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let counts = state.u64s("progress.counts")?;
        let [epoch, next_batch, step, epoch_tokens, pairs_seen] = counts[..] else {
            return Err(invalid("progress.counts", "expected 5 values"));
        };
        let sums = state.f64s("progress.sums")?;
        let [epoch_loss, best_valid, elapsed] = sums[..] else {
            return Err(invalid("progress.sums", "expected 3 values"));
        };
        let mut order = state.indices("progress.batch_order", pairs)?.into_iter();
        let mut batches = Vec::new();
        for size in state.u64s("progress.batch_sizes")? {
            let batch: Vec<usize> = order.by_ref().take(size as usize).collect();
            if batch.len() as u64 != size {
                return Err(invalid("progress.batch_sizes", "more than the saved order"));
            }
            batches.push(batch);
        }
        if order.next().is_some() || next_batch as usize > batches.len() {
            return Err(invalid(
                "progress.batch_order",
                "does not fit the batch sizes",
            ));
        }
        let progress = Progress {
            epoch: epoch as usize,
            batches,
            next_batch: next_batch as usize,
            step: step as usize,
            epoch_loss,
            epoch_tokens: epoch_tokens as usize,
            pairs_seen: pairs_seen as usize,
            history_train: state.points("progress.history_train")?,
            history_valid: state.points("progress.history_valid")?,
            best_valid,
            elapsed,
            rng: state.rng("data")?,
        };
        state.restore_params(store, opt)?;
        Ok(progress)
    };
    restore().map_err(|e| e.to_string())
}
