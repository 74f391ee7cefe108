//! One direction of one layer over a whole sequence, on plain buffers: the forward loop that
//! saves what backward reads, and the backward loop that returns every gradient in fresh
//! buffers (so that directions can run on different threads and be summed in a fixed order).

use super::pointwise::{backward_row, forward_row, gate_count, saved_width, state_parts};
use super::pointwise::{RowBackward, RowForward};
use super::recurrence::Recurrence;
use crate::rnn::CellKind;
use recur_tape::kernels::{gemm, MatRef};
use recur_tape::{Element, Tensor};

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

    /// Time indices in processing order.
    fn order(&self, reverse: bool) -> impl DoubleEndedIterator<Item = usize> {
        let steps = self.steps;
        (0..steps).map(move |k| if reverse { steps - 1 - k } else { k })
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

pub(super) fn forward<T: Element>(
    dims: &Dims,
    reverse: bool,
    x: &[T],
    weights: &Weights<'_, T>,
) -> Forward<T> {
    let (batch, hidden, parts) = (dims.batch, dims.hidden, dims.parts());
    let (gates, width, saved_w) = (dims.gates(), dims.width(), dims.saved_width());
    let rows = dims.steps * batch;

    // The input part of every step at once: x·W_ihᵀ + b_ih (+ b_hh).
    let mut xg = vec![T::zero(); rows * gates];
    gemm(
        T::one(),
        MatRef::row_major(x, rows, dims.input),
        MatRef::row_major(weights.w_ih.data(), gates, dims.input).t(),
        T::zero(),
        &mut xg,
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
    for t in dims.order(reverse) {
        let at = t * batch;
        saved.prev[at * width..(at + batch) * width].copy_from_slice(&state);
        recurrence.step(&state, width, batch, &mut hg, gates, false);
        for b in 0..batch {
            if !dims.active(t, b) {
                continue;
            }
            let row = at + b;
            let state_row = &mut state[b * width..(b + 1) * width];
            forward_row(
                dims.kind,
                hidden,
                RowForward {
                    xg: &xg[row * gates..(row + 1) * gates],
                    hg: &hg[b * gates..(b + 1) * gates],
                    b_hh,
                    state: state_row,
                    saved: &mut saved.activations[row * saved_w..(row + 1) * saved_w],
                },
            );
            outputs[row * hidden..(row + 1) * hidden].copy_from_slice(&state_row[..hidden]);
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
    let mut d_xg = vec![T::zero(); rows * gates];
    let mut d_hg_all = if separate {
        vec![T::zero(); rows * gates]
    } else {
        Vec::new()
    };
    let recurrence = Recurrence::backward(weights.w_hh);
    for t in dims.order(reverse).rev() {
        let at = t * batch;
        for b in 0..batch {
            if !dims.active(t, b) {
                continue;
            }
            let row = at + b;
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
                    d_xg: &mut d_xg[row * gates..(row + 1) * gates],
                    d_hg: separate.then(|| &mut d_hg_all[row * gates..(row + 1) * gates]),
                },
            );
        }
        let d_hg = if separate { &d_hg_all } else { &d_xg };
        recurrence.step(
            &d_hg[at * gates..(at + batch) * gates],
            gates,
            batch,
            &mut d_state,
            width,
            true,
        );
    }
    let d_hg: &[T] = if separate { &d_hg_all } else { &d_xg };

    let mut init = vec![T::zero(); parts * batch * hidden];
    for p in 0..parts {
        for b in 0..batch {
            init[(p * batch + b) * hidden..(p * batch + b + 1) * hidden]
                .copy_from_slice(&d_state[b * width + p * hidden..b * width + (p + 1) * hidden]);
        }
    }
    let x_grad = needs_x.then(|| {
        let mut dx = vec![T::zero(); rows * dims.input];
        gemm(
            T::one(),
            MatRef::row_major(&d_xg, rows, gates),
            MatRef::row_major(weights.w_ih.data(), gates, dims.input),
            T::zero(),
            &mut dx,
            dims.input,
        );
        dx
    });
    let mut w_ih = vec![T::zero(); gates * dims.input];
    gemm(
        T::one(),
        MatRef::row_major(&d_xg, rows, gates).t(),
        MatRef::row_major(x, rows, dims.input),
        T::zero(),
        &mut w_ih,
        dims.input,
    );
    let mut w_hh = vec![T::zero(); gates * hidden];
    let prev_h = MatRef {
        data: &saved.prev,
        rows,
        cols: hidden,
        row_stride: width,
        col_stride: 1,
    };
    gemm(
        T::one(),
        MatRef::row_major(d_hg, rows, gates).t(),
        prev_h,
        T::zero(),
        &mut w_hh,
        hidden,
    );
    let column_sums = |d: &[T]| {
        let mut sums = vec![T::zero(); gates];
        for row in d.chunks_exact(gates) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += v;
            }
        }
        sums
    };
    let bias = weights
        .bias
        .map(|_| (column_sums(&d_xg), column_sums(d_hg)));
    Grads {
        x: x_grad,
        init,
        w_ih,
        w_hh,
        bias,
    }
}
