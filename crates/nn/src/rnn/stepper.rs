//! `Stepper`: a stacked unidirectional RNN, LSTM or GRU run one input at a time for a single
//! sequence, without a tape: text generation and greedy decoding, where each step's input
//! depends on the last step's output. It is bound by reading the weights once per step, so
//! it packs them once ([`PackedRows`], in full precision or bf16), allocates nothing per
//! step (at one thread), and can fold an embedding into the first layer's input projection:
//! a table of W_ih·e + b per token, read as one row. The gate arithmetic is the fused
//! layer's. With `parallel::set_threads(n)` the rows of each large product are shared out
//! over n threads, each core reading its share of the weights; results do not change.

use super::fused::pointwise::{forward_row, gate_count, saved_width, state_parts, RowForward};
use super::{Cell, CellKind, Recurrent};
use crate::embedding::Embedding;
use crate::parallel::{map_parts, threads};
use crate::params::ParamStore;
use recur_tape::kernels::matvec::PANEL_ROWS;
use recur_tape::kernels::packed::AddTo;
use recur_tape::kernels::{MatRef, PackedRows, Precision};
use recur_tape::{Element, Tensor};

/// Embedding tables larger than this many values are not built: the stepper keeps the
/// embedding and projects its row instead (a 10k-word vocabulary with 4·650 gate rows would
/// take 100 MB).
const MAX_TABLE_VALUES: usize = 1 << 23;

/// y ← W·x (+ `bias`), its rows shared out in whole panels over the library's threads
/// (`parallel::set_threads`) when W is large enough to pay for handing work over
/// (`parallel::map_parts` decides); each row's sum is the same whichever thread makes it.
fn product<T: Element>(w: &PackedRows<T>, x: &[T], y: &mut [T], bias: Option<&[T]>) {
    let (threads, panels) = (threads(), w.rows().div_ceil(PANEL_ROWS));
    if threads < 2 || panels < 2 {
        return w.mul_vec(x, y, bias.map_or(AddTo::Nothing, AddTo::Row));
    }
    let per = panels.div_ceil(threads) * PANEL_ROWS;
    let parts: Vec<(usize, &mut [T])> = y
        .chunks_mut(per)
        .enumerate()
        .map(|(k, out)| (k * per, out))
        .collect();
    map_parts(
        parts,
        |(_, out)| out.len() * w.cols(),
        |(start, out)| {
            let rows = start..start + out.len();
            let add = bias.map_or(AddTo::Nothing, |b| AddTo::Row(&b[rows.clone()]));
            w.mul_vec_rows(x, rows, out, add)
        },
    );
}

/// A stacked recurrent layer, packed for stepping a single sequence.
pub struct Stepper<T: Element> {
    kind: CellKind,
    hidden: usize,
    layers: Vec<StepLayer<T>>,
    /// The token input of layer 0 once an embedding is folded in.
    tokens: Option<TokenInput<T>>,
    /// Every layer's state parts, `[h, c]` per layer, `hidden` values each.
    state: Vec<T>,
    /// One layer's input part, recurrent product and gate values.
    xg: Vec<T>,
    hg: Vec<T>,
    saved: Vec<std::mem::MaybeUninit<T>>,
}

struct StepLayer<T> {
    w_ih: PackedRows<T>,
    w_hh: PackedRows<T>,
    /// b_ih, plus b_hh unless the cell keeps it apart (GRU); zeros without biases.
    input_bias: Vec<T>,
    /// The GRU's b_hh.
    hidden_bias: Option<Vec<T>>,
}

enum TokenInput<T> {
    /// Row v holds W_ih·e_v + input bias: layer 0's whole input part.
    Table { rows: Vec<T>, vocab: usize },
    /// The embedding's rows, projected at each step.
    Rows { rows: Vec<T>, vocab: usize },
}

impl<T: Element> Stepper<T> {
    /// Packs `layer` (its weights read from `store`) in `precision`. Bidirectional layers,
    /// LSTM projections, zoneout and cells without the fused kernel are refused: they step
    /// through the tape.
    pub fn new<C: Cell<T>>(
        store: &ParamStore<T>,
        layer: &Recurrent<C>,
        precision: Precision,
    ) -> Result<Self, String> {
        let options = &layer.options;
        if options.bidirectional {
            return Err("a bidirectional layer cannot run one step at a time".into());
        }
        if options.zoneout > 0.0 {
            return Err("the stepper has no zoneout".into());
        }
        let specs = layer
            .cells
            .iter()
            .map(|c| {
                c.fused()
                    .ok_or("only RNN, LSTM and GRU cells without projections step")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (kind, hidden) = (specs[0].kind, specs[0].hidden_size);
        let pack = |id, rows, cols| {
            let w: &Tensor<T> = store.get(id);
            PackedRows::new(MatRef::row_major(w.data(), rows, cols), precision)
        };
        let rows = gate_count(kind) * hidden;
        let layers = specs
            .iter()
            .map(|spec| {
                let bias = |id: Option<_>| id.map(|b| store.get(b).data().to_vec());
                let (b_ih, b_hh) = (bias(spec.b_ih), bias(spec.b_hh));
                let keeps_hidden_bias = kind == CellKind::Gru;
                let input_bias = match (&b_ih, &b_hh) {
                    (Some(i), Some(h)) if !keeps_hidden_bias => {
                        i.iter().zip(h).map(|(&a, &b)| a + b).collect()
                    }
                    (Some(i), _) => i.clone(),
                    (None, _) => vec![T::zero(); rows],
                };
                StepLayer {
                    w_ih: pack(spec.w_ih, rows, spec.input_size),
                    w_hh: pack(spec.w_hh, rows, hidden),
                    input_bias,
                    hidden_bias: if keeps_hidden_bias { b_hh } else { None },
                }
            })
            .collect::<Vec<_>>();
        let parts = state_parts(kind);
        Ok(Stepper {
            kind,
            hidden,
            state: vec![T::zero(); layers.len() * parts * hidden],
            layers,
            tokens: None,
            xg: vec![T::zero(); rows],
            hg: vec![T::zero(); rows],
            saved: vec![std::mem::MaybeUninit::new(T::zero()); saved_width(kind) * hidden],
        })
    }

    /// Lets [`step_token`](Self::step_token) feed `embedding`'s rows to layer 0, folded into
    /// a table of its input part per token where the table is not too large.
    pub fn with_embedding(self, store: &ParamStore<T>, embedding: &Embedding) -> Self {
        self.with_embedding_within(store, embedding, MAX_TABLE_VALUES)
    }

    /// [`with_embedding`](Self::with_embedding), folding the embedding into a table only if
    /// it holds at most `max_table_values` values.
    fn with_embedding_within(
        mut self,
        store: &ParamStore<T>,
        embedding: &Embedding,
        max_table_values: usize,
    ) -> Self {
        let (vocab, width) = (embedding.num_embeddings, embedding.embedding_dim);
        let first = &self.layers[0];
        assert_eq!(
            width,
            first.w_ih.cols(),
            "Stepper::with_embedding: embeddings of width {width} into a layer reading {}",
            first.w_ih.cols()
        );
        let table = store.get(embedding.weight).data();
        let gates = first.w_ih.rows();
        self.tokens = Some(if vocab * gates <= max_table_values {
            let mut rows = vec![T::zero(); vocab * gates];
            for (v, row) in rows.chunks_exact_mut(gates.max(1)).enumerate() {
                let e = &table[v * width..(v + 1) * width];
                first.w_ih.mul_vec(e, row, AddTo::Row(&first.input_bias));
            }
            TokenInput::Table { rows, vocab }
        } else {
            TokenInput::Rows {
                rows: table.to_vec(),
                vocab,
            }
        });
        self
    }

    /// Width of h.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Bytes of weights a step reads (by token where an embedding table is folded in).
    pub fn bytes_per_step(&self) -> usize {
        let first = match &self.tokens {
            Some(TokenInput::Table { .. }) => self.xg.len() * std::mem::size_of::<T>(),
            _ => self.layers[0].w_ih.bytes(),
        };
        let rest: usize = self.layers[1..].iter().map(|l| l.w_ih.bytes()).sum();
        first + rest + self.layers.iter().map(|l| l.w_hh.bytes()).sum::<usize>()
    }

    /// Sets every state to zero (a new sequence).
    pub fn reset(&mut self) {
        self.state.fill(T::zero());
    }

    /// The state as the layer returns it: one `[num_layers, 1, hidden]` tensor per part
    /// (h, then c for the LSTM).
    pub fn state(&self) -> Vec<Tensor<T>> {
        let (parts, h, layers) = (state_parts(self.kind), self.hidden, self.layers.len());
        (0..parts)
            .map(|p| {
                let data = (0..layers)
                    .flat_map(|l| {
                        let at = (l * parts + p) * h;
                        self.state[at..at + h].iter().copied()
                    })
                    .collect();
                Tensor::from_vec(data, &[layers, 1, h])
            })
            .collect()
    }

    /// Sets the state from the layer's layout (see [`state`](Self::state)).
    pub fn set_state(&mut self, parts: &[Tensor<T>]) -> Result<(), String> {
        let (count, h, layers) = (state_parts(self.kind), self.hidden, self.layers.len());
        if parts.len() != count {
            return Err(format!(
                "Stepper::set_state: {} state parts, the {} has {count}",
                parts.len(),
                self.kind
            ));
        }
        for (p, part) in parts.iter().enumerate() {
            if part.shape() != [layers, 1, h] {
                return Err(format!(
                    "Stepper::set_state: state part {p} has shape {:?}, expected [{layers}, 1, {h}]",
                    part.shape()
                ));
            }
            for l in 0..layers {
                let at = (l * count + p) * h;
                self.state[at..at + h].copy_from_slice(&part.data()[l * h..(l + 1) * h]);
            }
        }
        Ok(())
    }

    /// One step with input `x` (layer 0's input width); returns the top layer's h.
    pub fn step(&mut self, x: &[T]) -> &[T] {
        let first = &self.layers[0];
        assert_eq!(
            x.len(),
            first.w_ih.cols(),
            "Stepper::step: an input of {} values into a layer reading {}",
            x.len(),
            first.w_ih.cols()
        );
        product(&first.w_ih, x, &mut self.xg, Some(&first.input_bias));
        self.run_layers()
    }

    /// One step with token `token`'s embedding as input (see
    /// [`with_embedding`](Self::with_embedding)); returns the top layer's h.
    pub fn step_token(&mut self, token: usize) -> &[T] {
        let tokens = self
            .tokens
            .as_ref()
            .expect("Stepper::step_token needs with_embedding first");
        match tokens {
            TokenInput::Table { rows, vocab } => {
                assert!(token < *vocab, "Stepper: token {token} of {vocab}");
                let g = self.xg.len();
                self.xg.copy_from_slice(&rows[token * g..(token + 1) * g]);
            }
            TokenInput::Rows { rows, vocab } => {
                assert!(token < *vocab, "Stepper: token {token} of {vocab}");
                let (first, w) = (&self.layers[0], self.layers[0].w_ih.cols());
                let e = &rows[token * w..(token + 1) * w];
                product(&first.w_ih, e, &mut self.xg, Some(&first.input_bias));
            }
        }
        self.run_layers()
    }

    /// Layer 0's input part is in `xg`: runs every layer's step.
    fn run_layers(&mut self) -> &[T] {
        let (kind, h) = (self.kind, self.hidden);
        let width = state_parts(kind) * h;
        for l in 0..self.layers.len() {
            if l > 0 {
                // The layer below's new h.
                let input = &self.state[(l - 1) * width..(l - 1) * width + h];
                let layer = &self.layers[l];
                product(&layer.w_ih, input, &mut self.xg, Some(&layer.input_bias));
            }
            let layer = &self.layers[l];
            let state = &mut self.state[l * width..(l + 1) * width];
            product(&layer.w_hh, &state[..h], &mut self.hg, None);
            forward_row(
                kind,
                h,
                RowForward {
                    xg: &self.xg,
                    hg: &self.hg,
                    b_hh: layer.hidden_bias.as_deref(),
                    state,
                    saved: &mut self.saved,
                },
            );
        }
        let top = (self.layers.len() - 1) * width;
        &self.state[top..top + h]
    }
}

#[cfg(test)]
#[path = "stepper_tests.rs"]
mod tests;
