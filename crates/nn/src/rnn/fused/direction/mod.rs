//! One direction of one layer on plain buffers, a chunk of steps at a time: the forward run
//! that saves what backward reads, and the backward run that returns every gradient in fresh
//! buffers (so that directions and layers can run on different threads and be summed in a
//! fixed order). The whole-sequence `forward` and `backward` feed them every chunk in turn.
//!
//! This file holds what both runs share: the sizes and layout facts of a direction (`Dims`),
//! its weights, and what forward saves for backward; `forward.rs` and `backward.rs` hold the
//! runs.

mod backward;
mod forward;

pub(super) use backward::{backward, BackwardRun};
pub(super) use forward::{forward, ForwardRun};

use super::pointwise::{backward_row, fill, forward_row, gate_count, saved_width, state_parts};
use super::pointwise::{RowBackward, RowForward};
use super::recurrence::{operand, Recurrence};
use crate::rnn::CellKind;
use recur_tape::kernels::packed::{suits_many_rows, AddTo};
use recur_tape::kernels::simd::widest;
use recur_tape::kernels::{gemm, product, MatRef, Precision};
use recur_tape::{Element, Tensor};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Rows (steps × batch) per chunk of the sequence.
const CHUNK_ROWS: usize = 256;

/// Steps per chunk for a sequence of `steps` steps of `batch` rows: about `CHUNK_ROWS` rows,
/// so that a chunk's input projection and gate gradients stay in cache whatever its length.
pub(super) fn chunk_steps(steps: usize, batch: usize) -> usize {
    CHUNK_ROWS.div_ceil(batch.max(1)).clamp(1, steps.max(1))
}

/// The time indices of `chunk` in processing order.
fn steps_of(chunk: &Range<usize>, reverse: bool) -> impl DoubleEndedIterator<Item = usize> {
    let (start, end) = (chunk.start, chunk.end);
    (0..end - start).map(move |k| if reverse { end - 1 - k } else { start + k })
}

/// The sizes and options of one layer direction.
pub(super) struct Dims {
    pub kind: CellKind,
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub lengths: Option<Vec<usize>>,
    /// Steps per chunk of the sequence.
    pub chunk_steps: usize,
    /// Products take operands rounded to bf16 (the weights come rounded in `Weights`).
    pub bf16: bool,
}

impl Dims {
    pub fn parts(&self) -> usize {
        state_parts(self.kind)
    }

    fn gates(&self) -> usize {
        gate_count(self.kind) * self.hidden
    }

    fn width(&self) -> usize {
        self.parts() * self.hidden
    }

    fn saved_width(&self) -> usize {
        saved_width(self.kind) * self.hidden
    }

    /// The chunks of time indices, in processing order.
    pub fn chunks(&self, reverse: bool) -> Vec<Range<usize>> {
        let ch = self.chunk_steps;
        let starts = (0..self.steps)
            .step_by(ch)
            .map(|t0| t0..(t0 + ch).min(self.steps));
        if reverse {
            starts.rev().collect()
        } else {
            starts.collect()
        }
    }

    /// State parts `[parts, B, H]` (part p is `part(p)`, `[B, H]`) as state rows
    /// `[B, parts·H]`.
    fn parts_to_rows<'v, T: Element>(&self, part: impl Fn(usize) -> &'v [T]) -> Vec<T> {
        let (batch, hidden, width) = (self.batch, self.hidden, self.width());
        let mut rows = vec![T::zero(); batch * width];
        for p in 0..self.parts() {
            for (b, values) in part(p).chunks_exact(hidden).enumerate() {
                rows[b * width + p * hidden..][..hidden].copy_from_slice(values);
            }
        }
        rows
    }

    /// State rows `[B, parts·H]` as state parts `[parts, B, H]`.
    fn rows_to_parts<T: Element>(&self, rows: &[T]) -> Vec<T> {
        let (hidden, width) = (self.hidden, self.width());
        let mut parts = Vec::with_capacity(self.parts() * self.batch * hidden);
        for p in 0..self.parts() {
            for row in rows.chunks_exact(width) {
                parts.extend_from_slice(&row[p * hidden..(p + 1) * hidden]);
            }
        }
        parts
    }

    fn active(&self, t: usize, b: usize) -> bool {
        self.lengths.as_ref().is_none_or(|l| t < l[b])
    }

    /// Whether the new state is just the output (the RNN): forward then saves nothing per
    /// step, and backward reads the activations and the previous states from the outputs.
    fn state_is_output(&self) -> bool {
        matches!(self.kind, CellKind::Rnn(_))
    }

    /// Whether the recurrent bias stays out of the input projection (GRU: it sits inside r·(…)).
    fn separate_hidden_bias(&self) -> bool {
        self.kind == CellKind::Gru
    }
}

/// One direction's initial state parts (`[B, H]` each) and weights.
pub(super) struct Weights<'a, T> {
    pub init: Vec<&'a Tensor<T>>,
    pub w_ih: &'a Tensor<T>,
    pub w_hh: &'a Tensor<T>,
    pub bias: Option<(&'a Tensor<T>, &'a Tensor<T>)>,
}

/// What the forward pass keeps for backward, per chunk of steps and per row of the chunk
/// (time-major); empty when the state is the output (see `Dims::state_is_output`).
pub(super) struct Saved<T> {
    /// Per chunk, in time order; each chunk's buffers are allocated when forward reaches it
    /// and written at once, so they are not zero-filled long before.
    chunks: Vec<SavedChunk<T>>,
}

/// What one chunk's steps saved, by row of the chunk (rows past their length are zero).
struct SavedChunk<T> {
    /// What the kind's backward reads (activated gates and so on), `[rows, saved width]`.
    activations: Vec<T>,
    /// The state before the step, `[rows, h | c]`.
    prev: Vec<T>,
}

impl<T> Saved<T> {
    /// Room for the chunks of `dims`, none of them allocated yet.
    fn new(dims: &Dims) -> Self {
        let chunks = dims.steps.div_ceil(dims.chunk_steps);
        Saved {
            chunks: std::iter::repeat_with(|| SavedChunk {
                activations: Vec::new(),
                prev: Vec::new(),
            })
            .take(chunks)
            .collect(),
        }
    }

    fn chunk(&self, dims: &Dims, chunk: &Range<usize>) -> &SavedChunk<T> {
        &self.chunks[chunk.start / dims.chunk_steps]
    }

    fn chunk_mut(&mut self, dims: &Dims, chunk: &Range<usize>) -> &mut SavedChunk<T> {
        &mut self.chunks[chunk.start / dims.chunk_steps]
    }
}

/// Where backward finds a direction's outputs `[T·B, H]`.
pub(super) enum Outputs<'a, T> {
    /// Row r at `data[r · stride + offset..]`.
    Rows {
        data: &'a [T],
        stride: usize,
        offset: usize,
    },
    /// In forward's chunks (time order) of `rows` rows each.
    Chunks { chunks: &'a [Vec<T>], rows: usize },
}

impl<T> Outputs<'_, T> {
    fn row(&self, r: usize, hidden: usize) -> &[T] {
        match self {
            Outputs::Rows {
                data,
                stride,
                offset,
            } => &data[r * stride + offset..][..hidden],
            Outputs::Chunks { chunks, rows } => &chunks[r / rows][(r % rows) * hidden..][..hidden],
        }
    }

    /// Which piece of storage holds row r: rows in one piece can be viewed as one matrix.
    fn piece(&self, r: usize) -> usize {
        match self {
            Outputs::Rows { .. } => 0,
            Outputs::Chunks { rows, .. } => r / rows,
        }
    }

    /// Rows `range`, all in one piece, as a `[len, hidden]` matrix.
    fn matrix(&self, range: Range<usize>, hidden: usize) -> MatRef<'_, T> {
        let len = range.len();
        match self {
            Outputs::Rows {
                data,
                stride,
                offset,
            } => MatRef {
                data: &data[range.start * stride + offset..],
                rows: len,
                cols: hidden,
                row_stride: *stride,
                col_stride: 1,
            },
            Outputs::Chunks { chunks, rows } => {
                let at = (range.start % rows) * hidden;
                MatRef::row_major(
                    &chunks[range.start / rows][at..at + len * hidden],
                    len,
                    hidden,
                )
            }
        }
    }
}

/// Every step's output `[T·B, H]` and the final state parts `[parts, B, H]`.
pub(super) struct Forward<T> {
    pub saved: Saved<T>,
    pub outputs: Vec<T>,
    pub finals: Vec<T>,
}

/// The gradients of one direction's inputs (`x` only when asked for).
pub(super) struct Grads<T> {
    pub x: Option<Vec<T>>,
    /// `[parts, B, H]`.
    pub init: Vec<T>,
    pub w_ih: Vec<T>,
    pub w_hh: Vec<T>,
    pub bias: Option<(Vec<T>, Vec<T>)>,
}
