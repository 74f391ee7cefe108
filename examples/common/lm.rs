//! The language model shared by char_lm and word_lm: embedding → recurrent stack → linear
//! to the vocabulary, read as a stream by the truncated-BPTT driver, and its evaluation.

use crate::run::RunDir;
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use recur::nn::checkpoint;
use recur::nn::data::sequential_batches;
use recur::nn::distributed::DataParallel;
use recur::nn::optim::Optimizer;
use recur::nn::tbptt::{StreamModel, Tbptt};
use recur::nn::train_state::{StateError, TrainState};
use recur::nn::{AnyLayer, Embedding, LayerKind, Linear, Mode, ParamStore, RnnOptions, Session};
use recur::tape::{Reduction, Tape, Tensor, Var};
use serde_json::Value;
use std::path::Path;
use std::rc::Rc;

#[derive(Clone, Debug)]
pub struct LmConfig {
    pub cell: LayerKind,
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dropout: f64,
}

pub struct RnnLm {
    pub emb: Embedding,
    pub rnn: AnyLayer,
    pub out: Linear,
}

impl RnnLm {
    pub fn new(store: &mut ParamStore<f32>, c: &LmConfig, rng: &mut impl Rng) -> Self {
        let emb = Embedding::new(store, "embedding", c.vocab, c.embed, None, rng);
        let options = RnnOptions::new(c.embed, c.hidden)
            .num_layers(c.layers)
            .dropout(c.dropout);
        let rnn = AnyLayer::new(store, "rnn", c.cell, options, rng);
        let out = Linear::new(store, "decoder", c.hidden, c.vocab, true, rng);
        RnnLm { emb, rnn, out }
    }

    /// The logits of `inputs` (no dropout in evaluation) from the state a previous tape left
    /// in `state` (none: zeros); leaves this run's final state there.
    pub fn forward_carrying<'t>(
        &self,
        s: &Session<'t, '_, f32>,
        inputs: &[usize],
        batch: usize,
        state: &mut Option<Vec<Tensor<f32>>>,
    ) -> Var<'t, f32> {
        let init: Option<Vec<Var<f32>>> = state
            .as_ref()
            .map(|st| st.iter().map(|t| s.constant(t.clone())).collect());
        let (logits, next) = self.forward(s, inputs, batch, init.as_deref());
        *state = Some(next.iter().map(|v| v.to_tensor()).collect());
        logits
    }
}

impl StreamModel<f32> for RnnLm {
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f32>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, f32>]>,
    ) -> (Var<'t, f32>, Vec<Var<'t, f32>>) {
        let steps = inputs.len() / batch;
        let x = self
            .emb
            .forward(s, inputs)
            .reshape(&[steps, batch, self.emb.embedding_dim]);
        let x = recur::nn::Dropout::new(self.rnn.options().dropout).forward(s, x);
        let out = self.rnn.forward(s, x, state, None);
        let hidden = out.output.shape()[2];
        let y = recur::nn::Dropout::new(self.rnn.options().dropout)
            .forward(s, out.output.reshape(&[steps * batch, hidden]));
        (self.out.forward(s, y), out.final_state.to_vec())
    }
}

/// Mean cross-entropy per token over `stream`, read as `batch` sequential rows with the
/// state carried (no graph).
pub fn evaluate(
    model: &RnnLm,
    store: &ParamStore<f32>,
    stream: &[usize],
    batch: usize,
    steps: usize,
) -> f64 {
    let (mut total, mut count) = (0.0, 0usize);
    let mut state: Option<Vec<Tensor<f32>>> = None;
    for chunk in sequential_batches(stream, batch, steps, 0) {
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Eval, 0);
        tape.no_grad(|| {
            let logits = model.forward_carrying(&s, &chunk.inputs, batch, &mut state);
            total += logits
                .cross_entropy(&chunk.targets, None, Reduction::Sum)
                .item() as f64;
            count += chunk.targets.len();
        });
    }
    total / count.max(1) as f64
}

/// Prints above the progress bar, or plainly when there is no terminal to draw it on.
pub fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Where a language-model run stands, besides its model, optimizer and driver: what a
/// training state must hold for a resumed run to print and plot what the uninterrupted one
/// would have.
pub struct LmProgress {
    /// The epoch in progress, from 1.
    pub epoch: usize,
    /// Chunks of it already trained on.
    pub next_chunk: usize,
    /// Loss summed over this epoch's updates, and their count.
    pub loss_sum: f64,
    pub n: usize,
    /// Loss summed since the last evaluation, and the count (char_lm's plot).
    pub window_sum: f64,
    pub window_n: usize,
    pub train_curve: Vec<(f64, f64)>,
    pub valid_curve: Vec<(f64, f64)>,
    /// The best validation perplexity so far.
    pub best_valid: f64,
    /// Seconds of training before this process started (a resumed run's time budget).
    pub elapsed: f64,
}

impl Default for LmProgress {
    fn default() -> Self {
        LmProgress {
            epoch: 1,
            next_chunk: 0,
            loss_sum: 0.0,
            n: 0,
            window_sum: 0.0,
            window_n: 0,
            train_curve: Vec::new(),
            valid_curve: Vec::new(),
            best_valid: f64::INFINITY,
            elapsed: 0.0,
        }
    }
}

impl LmProgress {
    /// Starts the next epoch's counts.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.next_chunk = 0;
        (self.loss_sum, self.n) = (0.0, 0);
    }

    pub fn save(&self, state: &mut TrainState, elapsed: f64) {
        let counts = [self.epoch, self.next_chunk, self.n, self.window_n];
        state.put_u64s("progress.counts", &counts.map(|c| c as u64));
        state.put_f64s(
            "progress.sums",
            &[self.loss_sum, self.window_sum, self.best_valid, elapsed],
        );
        state.put_points("progress.train_curve", &self.train_curve);
        state.put_points("progress.valid_curve", &self.valid_curve);
    }

    pub fn load(state: &TrainState) -> Result<Self, StateError> {
        let invalid = |entry: &str| StateError::Invalid {
            path: state.path().to_path_buf(),
            entry: entry.to_string(),
            reason: "wrong number of values".into(),
        };
        let counts = state.u64s("progress.counts")?;
        let [epoch, next_chunk, n, window_n] = counts[..] else {
            return Err(invalid("progress.counts"));
        };
        let sums = state.f64s("progress.sums")?;
        let [loss_sum, window_sum, best_valid, elapsed] = sums[..] else {
            return Err(invalid("progress.sums"));
        };
        Ok(LmProgress {
            epoch: epoch as usize,
            next_chunk: next_chunk as usize,
            loss_sum,
            n: n as usize,
            window_sum,
            window_n: window_n as usize,
            train_curve: state.points("progress.train_curve")?,
            valid_curve: state.points("progress.valid_curve")?,
            best_valid,
            elapsed,
        })
    }
}

/// Everything a language-model run changes as it trains, saved and restored as one
/// training state.
pub struct LmRun {
    pub store: ParamStore<f32>,
    pub opt: Box<dyn Optimizer<f32>>,
    pub driver: Tbptt<f32>,
    pub progress: LmProgress,
    /// The generator a sample draws from after training.
    pub rng: ChaCha12Rng,
}

impl LmRun {
    /// Writes the whole state (atomically) under `config`, the settings a resume must share.
    pub fn save(&self, path: &Path, config: &Value, elapsed: f64) -> Result<(), String> {
        let mut state = TrainState::new();
        state.put_json("config", config);
        state.put_params(&self.store, self.opt.as_ref());
        self.driver.save_state(&mut state, "tbptt");
        self.progress.save(&mut state, elapsed);
        state.put_rng("sample", &self.rng);
        state
            .save(path)
            .map_err(|e| format!("{e}; training stopped (the previous state file is intact)"))
    }

    /// Where this run starts and writes: from the state at `resume` (refused unless it was
    /// saved with `config`; the run goes on writing in its folder), or afresh from `weights`
    /// if given (fine-tuning), with rank 0's weights on every rank, in a new folder under
    /// `out` that rank 0 makes.
    pub fn begin(
        &mut self,
        resume: Option<&Path>,
        weights: Option<&Path>,
        config: &Value,
        vocab: usize,
        across: &Rc<DataParallel>,
        out: &Path,
    ) -> Result<RunDir, String> {
        if let Some(state) = resume {
            self.restore(state, config, vocab)?;
            report!(
                "resuming {} after step {} (epoch {})",
                state.display(),
                self.driver.steps(),
                self.progress.epoch
            );
            return Ok(RunDir::of_state(state));
        }
        if let Some(weights) = weights {
            checkpoint::load(weights, &mut self.store, None).map_err(|e| e.to_string())?;
            report!("starting from the weights of {}", weights.display());
        }
        across.broadcast_params(&mut self.store);
        if across.size() > 1 {
            self.driver.distribute(Rc::clone(across));
        }
        if across.is_root() {
            RunDir::create(out)
        } else {
            Ok(RunDir::of_state(&out.join("rank-0-writes-here")))
        }
    }

    /// Continues from the state at `path`, refused unless it was saved with `config`.
    pub fn restore(&mut self, path: &Path, config: &Value, vocab: usize) -> Result<(), String> {
        let state = TrainState::load(path).map_err(|e| e.to_string())?;
        let mut restore = || -> Result<LmProgress, StateError> {
            state.check_config("config", config)?;
            state.restore_params(&mut self.store, self.opt.as_mut())?;
            self.driver.load_state(&state, "tbptt", vocab)?;
            self.rng = state.rng("sample")?;
            LmProgress::load(&state)
        };
        self.progress = restore().map_err(|e| e.to_string())?;
        Ok(())
    }
}
