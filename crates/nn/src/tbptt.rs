//! Truncated backpropagation through time over a long stream: an update every `k1` tokens
//! with gradients through the last `k2` (k2 = m·k1), the hidden state carried across updates
//! as a detached value. Rows are split into fixed data-parallel shards, so the result does not
//! depend on the thread count.

use crate::data::LmBatch;
use crate::distributed::DataParallel;
use crate::optim::Optimizer;
use crate::parallel::{map_shards, shard_range};
use crate::params::{ParamGrads, ParamStore};
use crate::session::{Mode, Session};
use crate::train_state::{StateError, TrainState};
use recur_tape::kernels::Precision;
use recur_tape::{Element, Reduction, Tape, Tensor, Var};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

/// A model that reads a token stream in chunks and carries a state between them.
pub trait StreamModel<T: Element>: Sync {
    /// Logits `[steps·batch, vocab]` for time-major `inputs` (`[steps·batch]`), starting from
    /// `state` (zeros if `None`), and the state after the last step (any number of parts).
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, T>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, T>]>,
    ) -> (Var<'t, T>, Vec<Var<'t, T>>);
}

/// How the truncated-BPTT driver trains. `TbpttOptions::default()` is PyTorch's
/// word_language_model example (35 tokens per update, clipping at 0.25) on one thread:
///
/// ```
/// use recur_nn::tbptt::TbpttOptions;
///
/// let options = TbpttOptions { k1: 64, k2: 64, clip: Some(1.0), ..TbpttOptions::default() };
/// assert_eq!((options.shards, options.threads), (1, 1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TbpttOptions {
    /// Tokens per row between parameter updates.
    pub k1: usize,
    /// Tokens per row that gradients flow through; a multiple of k1.
    pub k2: usize,
    /// Global gradient-norm clipping threshold (`None`: no clipping).
    pub clip: Option<f64>,
    /// Data-parallel shards of the batch rows (fixed: results do not depend on `threads`).
    pub shards: usize,
    /// Threads the shards run on.
    pub threads: usize,
    /// Seed of the dropout masks (each update's sessions derive theirs from it).
    pub seed: u64,
    /// Checkpoint through time in every sequence layer (O(√k2) memory, same gradients).
    pub checkpoint: bool,
    /// The operands' precision of every product (`Precision::Bf16`: mixed precision, see
    /// `Tape::set_product_precision`).
    pub products: Precision,
}

impl Default for TbpttOptions {
    fn default() -> Self {
        TbpttOptions {
            k1: 35,
            k2: 35,
            clip: Some(0.25),
            shards: 1,
            threads: 1,
            seed: 0,
            checkpoint: false,
            products: Precision::Full,
        }
    }
}

/// What one update did.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// The update's number, from 1.
    pub step: usize,
    /// Mean cross-entropy per token of the last k1 steps.
    pub loss: f64,
    /// e^loss.
    pub perplexity: f64,
    /// Tokens of the update over its wall time.
    pub tokens_per_s: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// Training stopped because the numbers stopped being numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The update that produced it.
    pub step: usize,
    /// Its loss.
    pub loss: f64,
    /// Its gradient norm.
    pub grad_norm: f64,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "training stopped at step {}: loss {} / gradient norm {} is not finite",
            self.step, self.loss, self.grad_norm
        )
    }
}

impl std::error::Error for NonFinite {}

/// Per shard: the last k2−k1 input tokens of each row, and the detached final states of the
/// last m windows (the oldest is where the next window starts).
struct ShardMemory<T: Element> {
    history: VecDeque<Vec<usize>>,
    states: VecDeque<Vec<Tensor<T>>>,
}

/// The truncated-BPTT driver: [`Tbptt::step`] makes one update from the next k1 tokens of
/// every row, carrying the state across updates.
///
/// ```
/// use recur_nn::data::sequential_batches;
/// use recur_nn::optim::{Sgd, SgdOptions};
/// use recur_nn::tbptt::{StreamModel, Tbptt, TbpttOptions};
/// use recur_nn::{Embedding, Gru, Linear, ParamStore, RnnOptions, Session};
/// use recur_tape::Var;
/// use rand::SeedableRng;
///
/// struct CharLm { emb: Embedding, gru: Gru, out: Linear }
///
/// impl StreamModel<f32> for CharLm {
///     fn forward<'t>(
///         &self,
///         s: &Session<'t, '_, f32>,
///         inputs: &[usize],
///         batch: usize,
///         state: Option<&[Var<'t, f32>]>,
///     ) -> (Var<'t, f32>, Vec<Var<'t, f32>>) {
///         let steps = inputs.len() / batch;
///         let x = self.emb.forward(s, inputs).reshape(&[steps, batch, 8]);
///         let out = self.gru.forward(s, x, state, None);
///         let logits = self.out.forward(s, out.output.reshape(&[steps * batch, 16]));
///         (logits, out.final_state.to_vec())
///     }
/// }
///
/// let mut store = ParamStore::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let model = CharLm {
///     emb: Embedding::new(&mut store, "emb", 4, 8, None, &mut rng),
///     gru: Gru::new(&mut store, "rnn", RnnOptions::new(8, 16), &mut rng),
///     out: Linear::new(&mut store, "out", 16, 4, true, &mut rng),
/// };
/// let stream: Vec<usize> = (0..400).map(|i| i % 4).collect(); // 0 1 2 3 0 1 2 3 ...
/// let mut sgd = Sgd::new(SgdOptions::new(1.0));
/// let mut tbptt = Tbptt::new(TbpttOptions { k1: 10, k2: 20, ..TbpttOptions::default() });
/// let mut last = f64::INFINITY;
/// for _epoch in 0..4 {
///     tbptt.reset();
///     for chunk in sequential_batches(&stream, 4, 10, 0) {
///         last = tbptt.step(&model, &mut store, &mut sgd, &chunk).expect("finite").loss;
///     }
/// }
/// assert!(last < 0.5, "the cycle is learned: loss {last}");
/// ```
pub struct Tbptt<T: Element> {
    /// How it trains.
    pub options: TbpttOptions,
    memory: Vec<ShardMemory<T>>,
    step: usize,
    across: Option<Rc<DataParallel>>,
}

impl<T: Element> Tbptt<T> {
    /// A driver with nothing carried yet; panics unless 0 < k1 ≤ k2 with k2 a multiple of
    /// k1, and shards > 0.
    pub fn new(options: TbpttOptions) -> Self {
        assert!(
            options.k1 > 0 && options.k2 >= options.k1 && options.k2.is_multiple_of(options.k1),
            "TBPTT: need 0 < k1 ≤ k2 with k2 a multiple of k1, got k1 = {}, k2 = {}",
            options.k1,
            options.k2
        );
        assert!(options.shards > 0, "TBPTT: shards must be positive");
        let memory = (0..options.shards)
            .map(|_| ShardMemory {
                history: VecDeque::new(),
                states: VecDeque::new(),
            })
            .collect();
        Tbptt {
            options,
            memory,
            step: 0,
            across: None,
        }
    }

    /// Spreads the shards over the ranks of `across`: this process computes its block of
    /// shards (each rank passes the same whole chunks), and the gradients and losses are
    /// summed over all shards in shard order, so every rank makes the update one process
    /// would, bit for bit. Each rank carries only its own shards' state.
    pub fn distribute(&mut self, across: Rc<DataParallel>) {
        across.local_shards(self.options.shards);
        self.across = Some(across);
    }

    /// Forgets the carried state (the start of a new pass over the stream).
    pub fn reset(&mut self) {
        for m in &mut self.memory {
            m.history.clear();
            m.states.clear();
        }
    }

    /// Updates done so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Stores what the driver carries into `state` under `name`: its update count and each
    /// shard's remembered input tokens and detached states, bit for bit.
    pub fn save_state(&self, state: &mut TrainState, name: &str) {
        state.put_u64s(
            &format!("{name}.step"),
            &[self.step as u64, self.memory.len() as u64],
        );
        for (k, mem) in self.memory.iter().enumerate() {
            let parts = mem.states.front().map_or(0, Vec::len);
            state.put_u64s(
                &format!("{name}.shard{k}.counts"),
                &[
                    mem.history.len() as u64,
                    mem.states.len() as u64,
                    parts as u64,
                ],
            );
            for (j, tokens) in mem.history.iter().enumerate() {
                let tokens: Vec<u64> = tokens.iter().map(|&t| t as u64).collect();
                state.put_u64s(&format!("{name}.shard{k}.history{j}"), &tokens);
            }
            for (j, parts) in mem.states.iter().enumerate() {
                for (p, t) in parts.iter().enumerate() {
                    state.put_tensor(&format!("{name}.shard{k}.state{j}.{p}"), t);
                }
            }
        }
    }

    /// Restores what [`Tbptt::save_state`] stored, so the next [`Tbptt::step`] continues
    /// exactly. The shard count must match the driver's, and every remembered token must be
    /// below `vocab`; on error the driver is unchanged.
    pub fn load_state(
        &mut self,
        state: &TrainState,
        name: &str,
        vocab: usize,
    ) -> Result<(), StateError> {
        let invalid = |entry: String, reason: String| StateError::Invalid {
            path: state.path().to_path_buf(),
            entry,
            reason,
        };
        let head = format!("{name}.step");
        let [step, shards] = state.u64s(&head)?[..] else {
            return Err(invalid(head, "expected 2 values".into()));
        };
        if shards != self.options.shards as u64 {
            return Err(invalid(
                head,
                format!("{shards} shards, the driver has {}", self.options.shards),
            ));
        }
        let windows = self.options.k2 / self.options.k1;
        let mut memory = Vec::with_capacity(self.memory.len());
        for k in 0..self.memory.len() {
            let entry = format!("{name}.shard{k}.counts");
            let [history, states, parts] = state.u64s(&entry)?[..] else {
                return Err(invalid(entry, "expected 3 values".into()));
            };
            if history >= windows as u64 || states > windows as u64 || parts > 64 {
                return Err(invalid(
                    entry,
                    format!(
                        "{history} inputs, {states} states of {parts} parts for {windows} windows"
                    ),
                ));
            }
            let history = (0..history)
                .map(|j| state.indices(&format!("{name}.shard{k}.history{j}"), vocab))
                .collect::<Result<_, _>>()?;
            let states = (0..states)
                .map(|j| {
                    (0..parts)
                        .map(|p| state.tensor::<T>(&format!("{name}.shard{k}.state{j}.{p}")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            memory.push(ShardMemory { history, states });
        }
        self.memory = memory;
        self.step = step as usize;
        Ok(())
    }

    /// One update from the next `k1` tokens of every row (a sequentially partitioned batch).
    pub fn step<M: StreamModel<T>>(
        &mut self,
        model: &M,
        store: &mut ParamStore<T>,
        optimizer: &mut dyn Optimizer<T>,
        chunk: &LmBatch,
    ) -> Result<StepReport, NonFinite> {
        let o = self.options;
        assert_eq!(
            chunk.steps, o.k1,
            "TBPTT: chunks must have k1 = {} steps, got {}",
            o.k1, chunk.steps
        );
        let started = Instant::now();
        let windows = o.k2 / o.k1;
        let store_ref: &ParamStore<T> = store;
        let memory = &self.memory;
        let step = self.step;
        let local = match &self.across {
            Some(across) => across.local_shards(o.shards),
            None => 0..o.shards,
        };
        let results = map_shards(local.len(), o.threads, |i| {
            let k = local.start + i;
            let rows = shard_range(chunk.batch, o.shards, k);
            let b = rows.len();
            if b == 0 {
                return None;
            }
            let mem = &memory[k];
            let column = |src: &[usize]| -> Vec<usize> {
                (0..o.k1)
                    .flat_map(|t| {
                        src[t * chunk.batch + rows.start..t * chunk.batch + rows.end].to_vec()
                    })
                    .collect()
            };
            let history: Vec<usize> = mem.history.iter().flatten().copied().collect();
            let inputs: Vec<usize> = history
                .iter()
                .copied()
                .chain(column(&chunk.inputs))
                .collect();
            let targets = column(&chunk.targets);
            let tape = Tape::new();
            tape.set_product_precision(o.products);
            let s = Session::new(
                &tape,
                store_ref,
                Mode::Train,
                o.seed ^ (step as u64).rotate_left(17) ^ k as u64,
            );
            // The window starts where the oldest remembered state ended (zeros at the stream's start).
            let start: Option<Vec<Var<T>>> = (mem.states.len() == windows).then(|| {
                mem.states[0]
                    .iter()
                    .map(|t| tape.constant(t.clone()))
                    .collect()
            });
            let (logits, state) = model.forward(&s, &inputs, b, start.as_deref());
            let total_steps = inputs.len() / b;
            let last = logits.slice(0, (total_steps - o.k1) * b..total_steps * b);
            let loss = last.cross_entropy(&targets, None, Reduction::Sum);
            let value = loss.item().to_f64().unwrap_or(f64::NAN);
            let grads = s.backward(loss);
            let final_state: Vec<Tensor<T>> = state.iter().map(|v| v.to_tensor()).collect();
            Some((value, grads, final_state, column(&chunk.inputs)))
        });
        let tokens = (chunk.batch * o.k1) as f64;
        let mut values = Vec::with_capacity(results.len());
        let mut shard_grads = Vec::with_capacity(results.len());
        let mut carried = Vec::with_capacity(results.len());
        for r in results {
            let (value, grads, state) = match r {
                Some((value, g, state, new_inputs)) => {
                    (Some(value), Some(g), Some((state, new_inputs)))
                }
                None => (None, None, None),
            };
            values.push(value);
            shard_grads.push(grads);
            carried.push(state);
        }
        let (loss_sum, mut grads) = match &self.across {
            Some(across) => {
                let all = across.gather_values(&values, o.shards);
                let grads = across.sum_grads(shard_grads, store, o.shards);
                (all.into_iter().flatten().fold(0.0, |a, v| a + v), grads)
            }
            None => (
                values.into_iter().flatten().fold(0.0, |a, v| a + v),
                ParamGrads::sum(shard_grads.into_iter().flatten(), store.len()),
            ),
        };
        grads.scale(T::of(1.0 / tokens));
        let loss = loss_sum / tokens;
        let grad_norm = grads.global_norm().to_f64().unwrap_or(f64::NAN);
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(NonFinite {
                step: self.step,
                loss,
                grad_norm,
            });
        }
        if let Some(clip) = o.clip {
            grads.clip_global_norm(T::of(clip));
        }
        optimizer.step(store, &grads);
        for (mem, r) in self.memory[local].iter_mut().zip(carried) {
            let Some((state, new_inputs)) = r else {
                continue;
            };
            mem.states.push_back(state);
            if mem.states.len() > windows {
                mem.states.pop_front();
            }
            if windows > 1 {
                mem.history.push_back(new_inputs);
                if mem.history.len() > windows - 1 {
                    mem.history.pop_front();
                }
            }
        }
        self.step += 1;
        Ok(StepReport {
            step: self.step,
            loss,
            perplexity: loss.exp(),
            tokens_per_s: tokens / started.elapsed().as_secs_f64(),
            grad_norm,
        })
    }
}
