//! One direction of one layer over a whole sequence, on plain buffers: the forward loop that
//! saves what backward reads, and the backward loop that returns every gradient in fresh
//! buffers (so that directions can run on different threads and be summed in a fixed order).

use super::pointwise::{backward_row, forward_row, gate_count, saved_width, state_parts};
use super::pointwise::{RowBackward, RowForward};
use super::recurrence::Recurrence;
use crate::rnn::CellKind;
use recur_tape::kernels::{gemm, MatRef};
use recur_tape::{Element, Tensor};
use std::ops::Range;

/// Rows (steps × batch) per chunk of the sequence.
const CHUNK_ROWS: usize = 256;

/// The time indices of `chunk` in processing order.
fn steps_of(chunk: &Range<usize>, reverse: bool) -> impl DoubleEndedIterator<Item = usize> {
    let (start, end) = (chunk.start, chunk.end);
    (0..end - start).map(move |k| if reverse { end - 1 - k } else { start + k })
}

/// The sizes and options shared by the directions of a layer.
pub(super) struct Dims {
    pub kind: CellKind,
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub lengths: Option<Vec<usize>>,
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

    /// Steps per chunk: about `CHUNK_ROWS` rows, so that a chunk's input projection and
    /// gate gradients stay in cache whatever the sequence length.
    fn chunk_steps(&self) -> usize {
        CHUNK_ROWS
            .div_ceil(self.batch.max(1))
            .clamp(1, self.steps.max(1))
    }

    /// The chunks of time indices, in processing order.
    fn chunks(&self, reverse: bool) -> Vec<Range<usize>> {
        let ch = self.chunk_steps();
        let starts = (0..self.steps)
            .step_by(ch)
            .map(|t0| t0..(t0 + ch).min(self.steps));
        if reverse {
            starts.rev().collect()
        } else {
            starts.collect()
        }
    }

    fn active(&self, t: usize, b: usize) -> bool {
        self.lengths.as_ref().is_none_or(|l| t < l[b])
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

/// What the forward pass keeps for backward, per step and row (time-major).
pub(super) struct Saved<T> {
    /// What the kind's backward reads (activated gates and so on).
    activations: Vec<T>,
    /// The state before the step, `[h, c]`.
    prev: Vec<T>,
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

/// `xg` ← x·W_ihᵀ + b_ih (+ b_hh unless the kind keeps it apart) for the `count` rows of x
/// from row `first`.
fn input_part<T: Element>(
    dims: &Dims,
    x: &[T],
    first: usize,
    count: usize,
    weights: &Weights<'_, T>,
    xg: &mut [T],
) {
    let gates = dims.gates();
    let xg = &mut xg[..count * gates];
    gemm(
        T::one(),
        MatRef::row_major(&x[first * dims.input..], count, dims.input),
        MatRef::row_major(weights.w_ih.data(), gates, dims.input).t(),
        T::zero(),
        xg,
        gates,
    );
    if let Some((b_ih, b_hh)) = weights.bias {
        let fold_hidden = !dims.separate_hidden_bias();
        let (b_ih, b_hh) = (b_ih.data(), b_hh.data());
        for row in xg.chunks_exact_mut(gates) {
            for j in 0..gates {
                row[j] += b_ih[j];
                if fold_hidden {
                    row[j] += b_hh[j];
                }
            }
        }
    }
}

pub(super) fn forward<T: Element>(
    dims: &Dims,
    reverse: bool,
    x: &[T],
    weights: &Weights<'_, T>,
) -> Forward<T> {
    let (batch, hidden, parts) = (dims.batch, dims.hidden, dims.parts());
    let (gates, width, saved_w) = (dims.gates(), dims.width(), dims.saved_width());
    let rows = dims.steps * batch;

    let b_hh = weights
        .bias
        .filter(|_| dims.separate_hidden_bias())
        .map(|(_, b)| b.data());

    // The state as [h, c] rows; h is also the recurrent product's input.
    let mut state = vec![T::zero(); batch * width];
    for (p, init) in weights.init.iter().enumerate() {
        for b in 0..batch {
            state[b * width + p * hidden..b * width + (p + 1) * hidden]
                .copy_from_slice(&init.data()[b * hidden..(b + 1) * hidden]);
        }
    }
    let mut saved = Saved {
        activations: vec![T::zero(); rows * saved_w],
        prev: vec![T::zero(); rows * width],
    };
    let mut outputs = vec![T::zero(); rows * hidden];
    let recurrence = Recurrence::forward(weights.w_hh);
    let mut hg = vec![T::zero(); batch * gates];
    let mut xg = vec![T::zero(); dims.chunk_steps() * batch * gates];
    for chunk in dims.chunks(reverse) {
        // The input part of the chunk's steps at once: x·W_ihᵀ + b_ih (+ b_hh).
        let first = chunk.start * batch;
        let chunk_rows = chunk.len() * batch;
        input_part(dims, x, first, chunk_rows, weights, &mut xg);
        for t in steps_of(&chunk, reverse) {
            let at = t * batch;
            saved.prev[at * width..(at + batch) * width].copy_from_slice(&state);
            recurrence.step(&state, width, batch, &mut hg, gates, false);
            for b in 0..batch {
                if !dims.active(t, b) {
                    continue;
                }
                let row = at + b;
                let local = row - first;
                let state_row = &mut state[b * width..(b + 1) * width];
                forward_row(
                    dims.kind,
                    hidden,
                    RowForward {
                        xg: &xg[local * gates..(local + 1) * gates],
                        hg: &hg[b * gates..(b + 1) * gates],
                        b_hh,
                        state: state_row,
                        saved: &mut saved.activations[row * saved_w..(row + 1) * saved_w],
                    },
                );
                outputs[row * hidden..(row + 1) * hidden].copy_from_slice(&state_row[..hidden]);
            }
        }
    }
    let mut finals = vec![T::zero(); parts * batch * hidden];
    for p in 0..parts {
        for b in 0..batch {
            finals[(p * batch + b) * hidden..(p * batch + b + 1) * hidden]
                .copy_from_slice(&state[b * width + p * hidden..b * width + (p + 1) * hidden]);
        }
    }
    Forward {
        saved,
        outputs,
        finals,
    }
}

/// `g_out` is ∂/∂outputs `[T·B, H]`, `g_final` ∂/∂final state `[parts, B, H]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Element>(
    dims: &Dims,
    reverse: bool,
    saved: &Saved<T>,
    x: &[T],
    weights: &Weights<'_, T>,
    g_out: &[T],
    g_final: &[T],
    needs_x: bool,
) -> Grads<T> {
    let (batch, hidden, parts) = (dims.batch, dims.hidden, dims.parts());
    let (gates, width, saved_w) = (dims.gates(), dims.width(), dims.saved_width());
    let rows = dims.steps * batch;

    // ∂/∂state, [h, c] rows, starting from the final state's gradient.
    let mut d_state = vec![T::zero(); batch * width];
    for p in 0..parts {
        for b in 0..batch {
            d_state[b * width + p * hidden..b * width + (p + 1) * hidden]
                .copy_from_slice(&g_final[(p * batch + b) * hidden..(p * batch + b + 1) * hidden]);
        }
    }
    let separate = dims.separate_hidden_bias();
    let chunk_len = dims.chunk_steps() * batch * gates;
    let mut d_xg = vec![T::zero(); chunk_len];
    let mut d_hg_chunk = if separate {
        vec![T::zero(); chunk_len]
    } else {
        Vec::new()
    };
    let mut x_grad = needs_x.then(|| vec![T::zero(); rows * dims.input]);
    let mut w_ih = vec![T::zero(); gates * dims.input];
    let mut w_hh = vec![T::zero(); gates * hidden];
    let mut bias = weights
        .bias
        .map(|_| (vec![T::zero(); gates], vec![T::zero(); gates]));
    let recurrence = Recurrence::backward(weights.w_hh);
    for chunk in dims.chunks(reverse).into_iter().rev() {
        let first = chunk.start * batch;
        let chunk_rows = chunk.len() * batch;
        // Rows past their length keep zero gate gradients.
        d_xg[..chunk_rows * gates].fill(T::zero());
        d_hg_chunk.fill(T::zero());
        for t in steps_of(&chunk, reverse).rev() {
            let at = t * batch;
            for b in 0..batch {
                if !dims.active(t, b) {
                    continue;
                }
                let row = at + b;
                let local = row - first;
                let d_row = &mut d_state[b * width..(b + 1) * width];
                for (d, &gy) in d_row[..hidden]
                    .iter_mut()
                    .zip(&g_out[row * hidden..(row + 1) * hidden])
                {
                    *d += gy;
                }
                backward_row(
                    dims.kind,
                    hidden,
                    RowBackward {
                        saved: &saved.activations[row * saved_w..(row + 1) * saved_w],
                        prev: &saved.prev[row * width..(row + 1) * width],
                        d_state: d_row,
                        d_xg: &mut d_xg[local * gates..(local + 1) * gates],
                        d_hg: separate.then(|| &mut d_hg_chunk[local * gates..(local + 1) * gates]),
                    },
                );
            }
            let d_hg = if separate { &d_hg_chunk } else { &d_xg };
            let local = at - first;
            recurrence.step(
                &d_hg[local * gates..(local + batch) * gates],
                gates,
                batch,
                &mut d_state,
                width,
                true,
            );
        }
        // The chunk's share of the input and weight gradients, while its rows are in cache.
        let d_xg_c = MatRef::row_major(&d_xg[..chunk_rows * gates], chunk_rows, gates);
        let d_hg: &[T] = if separate { &d_hg_chunk } else { &d_xg };
        let d_hg_c = MatRef::row_major(&d_hg[..chunk_rows * gates], chunk_rows, gates);
        if let Some(dx) = x_grad.as_mut() {
            gemm(
                T::one(),
                d_xg_c,
                MatRef::row_major(weights.w_ih.data(), gates, dims.input),
                T::zero(),
                &mut dx[first * dims.input..(first + chunk_rows) * dims.input],
                dims.input,
            );
        }
        gemm(
            T::one(),
            d_xg_c.t(),
            MatRef::row_major(&x[first * dims.input..], chunk_rows, dims.input),
            T::one(),
            &mut w_ih,
            dims.input,
        );
        let prev_h = MatRef {
            data: &saved.prev[first * width..],
            rows: chunk_rows,
            cols: hidden,
            row_stride: width,
            col_stride: 1,
        };
        gemm(T::one(), d_hg_c.t(), prev_h, T::one(), &mut w_hh, hidden);
        if let Some((b_ih, b_hh)) = bias.as_mut() {
            for (sums, d) in [(b_ih, d_xg_c), (b_hh, d_hg_c)] {
                for row in d.data[..chunk_rows * gates].chunks_exact(gates) {
                    for (s, &v) in sums.iter_mut().zip(row) {
                        *s += v;
                    }
                }
            }
        }
    }

    let mut init = vec![T::zero(); parts * batch * hidden];
    for p in 0..parts {
        for b in 0..batch {
            init[(p * batch + b) * hidden..(p * batch + b + 1) * hidden]
                .copy_from_slice(&d_state[b * width + p * hidden..b * width + (p + 1) * hidden]);
        }
    }
    Grads {
        x: x_grad,
        init,
        w_ih,
        w_hh,
        bias,
    }
}
