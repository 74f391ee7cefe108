//! Decoding without a graph: batched greedy search, beam search with length normalisation,
//! and scoring of a given output. All return log-probabilities (natural log).

use crate::attention::Attention;
use crate::batch::{Batch, BOS, EOS};
use crate::decoder::Context;
use crate::model::{argmax_rows, Seq2Seq};
use recur_nn::{Cell, Mode, ParamStore, Session, State};
use recur_tape::{Element, Tape, Var};

/// A decoded sequence (without `<eos>`) and its total log-probability (including `<eos>`
/// when it was produced).
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The target ids, without `<bos>` and `<eos>`.
    pub tokens: Vec<usize>,
    /// Σ log p of every token produced.
    pub score: f64,
    /// Whether the sequence ended with `<eos>` (rather than at the length limit).
    pub finished: bool,
}

impl Hypothesis {
    /// score / length^α, the length counting `<eos>` (α = 0: the raw score).
    pub fn normalized(&self, alpha: f64) -> f64 {
        let len = self.tokens.len() + usize::from(self.finished);
        self.score / (len.max(1) as f64).powf(alpha)
    }
}

/// How [`beam_search`] searches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeamOptions {
    /// Hypotheses kept per step.
    pub width: usize,
    /// Length-normalisation exponent (0 = none, 1 = average log-probability).
    pub alpha: f64,
    /// Most tokens per hypothesis.
    pub max_len: usize,
}

/// Log-softmax of one row of logits, in f64.
fn log_probs<T: Element>(row: &[T]) -> Vec<f64> {
    let row: Vec<f64> = row.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect();
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

fn source_batch(sources: &[&[usize]]) -> Batch {
    let pairs: Vec<(&[usize], &[usize])> = sources.iter().map(|s| (*s, &[][..])).collect();
    Batch::new(&pairs)
}

/// Greedy decoding of a batch of sources, up to `max_len` tokens each.
pub fn greedy<T: Element, E: Cell<T> + Clone + 'static, D: Cell<T>>(
    model: &Seq2Seq<E, D>,
    store: &ParamStore<T>,
    sources: &[&[usize]],
    max_len: usize,
) -> Vec<Hypothesis> {
    let tape = Tape::new();
    tape.no_grad(|| {
        let s = Session::new(&tape, store, Mode::Eval, 0);
        let batch = source_batch(sources);
        let rows = batch.rows;
        let (ctx, mut state) = model.start(&s, &batch);
        let mut hyps = vec![
            Hypothesis {
                tokens: Vec::new(),
                score: 0.0,
                finished: false
            };
            rows
        ];
        let mut inputs = vec![BOS; rows];
        for _ in 0..max_len {
            let (logits, next) = model.decoder.step(&s, &inputs, &state, &ctx);
            state = next;
            let values = logits.value();
            let best = argmax_rows(values.data(), rows);
            let width = values.numel() / rows;
            for (b, h) in hyps.iter_mut().enumerate().filter(|(_, h)| !h.finished) {
                h.score += log_probs(&values.data()[b * width..(b + 1) * width])[best[b]];
                if best[b] == EOS {
                    h.finished = true;
                } else {
                    h.tokens.push(best[b]);
                }
            }
            inputs = best;
            if hyps.iter().all(|h| h.finished) {
                break;
            }
        }
        hyps
    })
}

/// Rows `rows` of a decoder context (beam search reorders and repeats rows).
fn select_context<'t, T: Element>(
    s: &Session<'t, '_, T>,
    attention: Option<&Attention>,
    ctx: &Context<'t, T>,
    rows: &[usize],
) -> Context<'t, T> {
    let memory = ctx.memory.as_ref().map(|m| {
        let lengths: Vec<usize> = rows.iter().map(|&r| m.lengths()[r]).collect();
        attention.expect("a memory implies attention").memory(
            s,
            m.outputs.index_select(rows),
            &lengths,
        )
    });
    Context {
        memory,
        summary: ctx.summary.index_select(rows),
    }
}

fn select_state<'t, T: Element>(state: &[State<'t, T>], rows: &[usize]) -> Vec<State<'t, T>> {
    state
        .iter()
        .map(|parts| {
            parts
                .iter()
                .map(|p: &Var<'t, T>| p.index_select(rows))
                .collect()
        })
        .collect()
}

/// Beam search for one source. Returns every hypothesis it completed (and, if the length
/// limit was hit, the unfinished beams), best first by `score / length^alpha`.
pub fn beam_search<T: Element, E: Cell<T> + Clone + 'static, D: Cell<T>>(
    model: &Seq2Seq<E, D>,
    store: &ParamStore<T>,
    source: &[usize],
    opts: BeamOptions,
) -> Vec<Hypothesis> {
    assert!(opts.width > 0, "beam_search: width must be positive");
    let tape = Tape::new();
    let mut results = tape.no_grad(|| {
        let s = Session::new(&tape, store, Mode::Eval, 0);
        let attention = model.decoder.attention.as_ref();
        let (base, mut state) = model.start(&s, &source_batch(&[source]));
        let mut ctx = select_context(&s, attention, &base, &[0]);
        let mut beams = vec![Hypothesis {
            tokens: Vec::new(),
            score: 0.0,
            finished: false,
        }];
        let mut finished = Vec::new();
        for _ in 0..opts.max_len {
            let inputs: Vec<usize> = beams
                .iter()
                .map(|b| b.tokens.last().copied().unwrap_or(BOS))
                .collect();
            let (logits, next) = model.decoder.step(&s, &inputs, &state, &ctx);
            let values = logits.value();
            let width = values.numel() / beams.len();
            let mut candidates: Vec<(f64, usize, usize)> = Vec::with_capacity(beams.len() * width);
            for (i, beam) in beams.iter().enumerate() {
                for (v, lp) in log_probs(&values.data()[i * width..(i + 1) * width])
                    .into_iter()
                    .enumerate()
                {
                    candidates.push((beam.score + lp, i, v));
                }
            }
            drop(values);
            // Best first; ties keep (beam, token) order, so width 1 picks what greedy picks.
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut parents = Vec::new();
            let mut next_beams = Vec::new();
            for (rank, &(score, i, v)) in candidates.iter().enumerate() {
                if next_beams.len() == opts.width {
                    break;
                }
                if v == EOS {
                    if rank < opts.width {
                        finished.push(Hypothesis {
                            tokens: beams[i].tokens.clone(),
                            score,
                            finished: true,
                        });
                    }
                } else {
                    let mut tokens = beams[i].tokens.clone();
                    tokens.push(v);
                    next_beams.push(Hypothesis {
                        tokens,
                        score,
                        finished: false,
                    });
                    parents.push(i);
                }
            }
            if finished.len() >= opts.width || next_beams.is_empty() {
                beams.clear();
                break;
            }
            state = select_state(&next, &parents);
            ctx = select_context(&s, attention, &base, &vec![0; parents.len()]);
            beams = next_beams;
        }
        finished.extend(beams);
        finished
    });
    results.sort_by(|a, b| {
        b.normalized(opts.alpha)
            .total_cmp(&a.normalized(opts.alpha))
    });
    results
}

/// The log-probability the model gives `target` (then `<eos>`) for `source`.
pub fn score<T: Element, E: Cell<T> + Clone + 'static, D: Cell<T>>(
    model: &Seq2Seq<E, D>,
    store: &ParamStore<T>,
    source: &[usize],
    target: &[usize],
    with_eos: bool,
) -> f64 {
    let tape = Tape::new();
    tape.no_grad(|| {
        let s = Session::new(&tape, store, Mode::Eval, 0);
        let (ctx, mut state) = model.start(&s, &source_batch(&[source]));
        let mut total = 0.0;
        let mut input = BOS;
        let ends: Vec<usize> = target
            .iter()
            .copied()
            .chain(with_eos.then_some(EOS))
            .collect();
        for &y in &ends {
            let (logits, next) = model.decoder.step(&s, &[input], &state, &ctx);
            state = next;
            total += log_probs(logits.value().data())[y];
            input = y;
        }
        total
    })
}
