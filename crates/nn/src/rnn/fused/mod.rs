//! Fused sequence kernels for the built-in cells: one direction of one layer as a single tape
//! op with a hand-written backward. The input projection of all steps is one GEMM; each step
//! is one GEMM for the recurrence and one pass over the gates; backward accumulates the weight
//! gradients with one GEMM each after its loop. `Recurrent` layers pick this path whenever
//! their cells provide a [`FusedSpec`]; it computes what the composed cell steps compute
//! (tested against them and against PyTorch).

mod pointwise;
mod recurrence;
#[cfg(test)]
mod tests;

use super::cell::State;
use super::CellKind;
use crate::params::ParamId;
use crate::session::Session;
use pointwise::{backward_row, forward_row, gate_count, saved_width, state_parts};
use pointwise::{RowBackward, RowForward};
use recur_tape::kernels::{gemm, MatRef};
use recur_tape::{BackwardCtx, Element, Op, Tensor, Var};
use recurrence::Recurrence;

/// What a built-in cell tells a layer so it can run the fused kernel: its kind, sizes and
/// PyTorch-layout weights (`weight_ih` `[G·H, input]`, `weight_hh` `[G·H, H]`, biases `[G·H]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedSpec {
    pub kind: CellKind,
    pub input_size: usize,
    pub hidden_size: usize,
    pub w_ih: ParamId,
    pub w_hh: ParamId,
    pub b_ih: Option<ParamId>,
    pub b_hh: Option<ParamId>,
}

/// Runs one direction of one layer over `x` `[T, B, input]` from `state` as one fused op.
/// Returns the outputs `[T, B, H]` (zero past each row's length) and the final state, exactly
/// like the composed loop.
pub(crate) fn fused_sequence<'t, T: Element>(
    spec: &FusedSpec,
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    state: &[Var<'t, T>],
    lengths: Option<&[usize]>,
    reverse: bool,
) -> (Var<'t, T>, State<'t, T>) {
    let shape = x.shape();
    let (steps, batch) = (shape[0], shape[1]);
    let hidden = spec.hidden_size;
    let mut inputs: Vec<Var<'t, T>> = vec![x];
    inputs.extend(state.iter().copied());
    inputs.push(s.param(spec.w_ih));
    inputs.push(s.param(spec.w_hh));
    if let (Some(b_ih), Some(b_hh)) = (spec.b_ih, spec.b_hh) {
        inputs.push(s.param(b_ih));
        inputs.push(s.param(b_hh));
    }
    let op = FusedSequence {
        kind: spec.kind,
        steps,
        batch,
        input: spec.input_size,
        hidden,
        lengths: lengths.map(<[usize]>::to_vec),
        reverse,
        saved: Vec::new(),
        prev: Vec::new(),
    };
    let y = s.tape().apply(op, &inputs);
    let block = batch * hidden;
    let outputs = y
        .slice(0, 0..steps * block)
        .reshape(&[steps, batch, hidden]);
    let final_state = (0..state_parts(spec.kind))
        .map(|p| {
            let start = (steps + p) * block;
            y.slice(0, start..start + block).reshape(&[batch, hidden])
        })
        .collect();
    (outputs, final_state)
}

/// Inputs: `x`, the initial state parts, `weight_ih`, `weight_hh`, then `bias_ih`, `bias_hh`
/// if the cell has biases. Output, flattened: every step's output in time order, then the
/// final state parts.
struct FusedSequence<T> {
    kind: CellKind,
    steps: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    lengths: Option<Vec<usize>>,
    reverse: bool,
    /// Per step and row (time-major): what the kind's backward reads.
    saved: Vec<T>,
    /// Per step and row: the state before the step, `[h, c]`.
    prev: Vec<T>,
}

impl<T: Element> FusedSequence<T> {
    fn gates(&self) -> usize {
        gate_count(self.kind) * self.hidden
    }

    fn state_width(&self) -> usize {
        state_parts(self.kind) * self.hidden
    }

    /// Time indices in processing order.
    fn order(&self) -> impl DoubleEndedIterator<Item = usize> + Clone {
        let (steps, reverse) = (self.steps, self.reverse);
        (0..steps).map(move |k| if reverse { steps - 1 - k } else { k })
    }

    fn active(&self, t: usize, b: usize) -> bool {
        self.lengths.as_ref().is_none_or(|l| t < l[b])
    }

    fn has_bias(inputs: usize, parts: usize) -> bool {
        inputs == 1 + parts + 4
    }

    /// Whether the recurrent bias stays out of the input projection (GRU: it sits inside r·(…)).
    fn separate_hidden_bias(&self) -> bool {
        self.kind == CellKind::Gru
    }
}

impl<T: Element> Op<T> for FusedSequence<T> {
    fn name(&self) -> &'static str {
        "fused_rnn"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (steps, batch, hidden) = (self.steps, self.batch, self.hidden);
        let parts = state_parts(self.kind);
        let (gates, width, saved_w) = (
            self.gates(),
            self.state_width(),
            saved_width(self.kind) * hidden,
        );
        let x = inputs[0].data();
        let w_ih = inputs[1 + parts].data();
        let bias = Self::has_bias(inputs.len(), parts)
            .then(|| (inputs[3 + parts].data(), inputs[4 + parts].data()));

        // The input part of every step at once: x·W_ihᵀ + b_ih (+ b_hh).
        let rows = steps * batch;
        let mut xg = vec![T::zero(); rows * gates];
        gemm(
            T::one(),
            MatRef::row_major(x, rows, self.input),
            MatRef::row_major(w_ih, gates, self.input).t(),
            T::zero(),
            &mut xg,
            gates,
        );
        if let Some((b_ih, b_hh)) = bias {
            let fold_hidden = !self.separate_hidden_bias();
            for row in xg.chunks_exact_mut(gates) {
                for j in 0..gates {
                    row[j] += b_ih[j];
                    if fold_hidden {
                        row[j] += b_hh[j];
                    }
                }
            }
        }
        let b_hh = bias.filter(|_| self.separate_hidden_bias()).map(|(_, b)| b);

        // The state as [h, c] rows; h is also the recurrent GEMM's input.
        let mut state = vec![T::zero(); batch * width];
        for p in 0..parts {
            let init = inputs[1 + p].data();
            for b in 0..batch {
                state[b * width + p * hidden..b * width + (p + 1) * hidden]
                    .copy_from_slice(&init[b * hidden..(b + 1) * hidden]);
            }
        }
        self.saved = vec![T::zero(); rows * saved_w];
        self.prev = vec![T::zero(); rows * width];
        let mut out = vec![T::zero(); (steps + parts) * batch * hidden];
        let recurrence = Recurrence::forward(inputs[2 + parts]);
        let mut hg = vec![T::zero(); batch * gates];
        for t in self.order() {
            let at = t * batch;
            self.prev[at * width..(at + batch) * width].copy_from_slice(&state);
            recurrence.step(&state, width, batch, &mut hg, gates, false);
            for b in 0..batch {
                if !self.active(t, b) {
                    continue;
                }
                let row = at + b;
                let state_row = &mut state[b * width..(b + 1) * width];
                forward_row(
                    self.kind,
                    hidden,
                    RowForward {
                        xg: &xg[row * gates..(row + 1) * gates],
                        hg: &hg[b * gates..(b + 1) * gates],
                        b_hh,
                        state: state_row,
                        saved: &mut self.saved[row * saved_w..(row + 1) * saved_w],
                    },
                );
                out[row * hidden..(row + 1) * hidden].copy_from_slice(&state_row[..hidden]);
            }
        }
        for p in 0..parts {
            let start = (steps + p) * batch * hidden;
            for b in 0..batch {
                out[start + b * hidden..start + (b + 1) * hidden]
                    .copy_from_slice(&state[b * width + p * hidden..b * width + (p + 1) * hidden]);
            }
        }
        let len = out.len();
        Tensor::from_vec(out, &[len])
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (steps, batch, hidden) = (self.steps, self.batch, self.hidden);
        let parts = state_parts(self.kind);
        let (gates, width, saved_w) = (
            self.gates(),
            self.state_width(),
            saved_width(self.kind) * hidden,
        );
        let rows = steps * batch;
        let (w_ih_at, w_hh_at) = (1 + parts, 2 + parts);
        let bias = Self::has_bias(ctx.num_inputs(), parts);
        let g = ctx.grad_output().data();

        // ∂/∂state, [h, c] rows, starting from the final state's gradient.
        let mut d_state = vec![T::zero(); batch * width];
        for p in 0..parts {
            let start = (steps + p) * batch * hidden;
            for b in 0..batch {
                d_state[b * width + p * hidden..b * width + (p + 1) * hidden]
                    .copy_from_slice(&g[start + b * hidden..start + (b + 1) * hidden]);
            }
        }
        let separate = self.separate_hidden_bias();
        let mut d_xg = vec![T::zero(); rows * gates];
        let mut d_hg_all = if separate {
            vec![T::zero(); rows * gates]
        } else {
            Vec::new()
        };
        let recurrence = Recurrence::backward(ctx.input(w_hh_at));
        for t in self.order().rev() {
            let at = t * batch;
            for b in 0..batch {
                if !self.active(t, b) {
                    continue;
                }
                let row = at + b;
                let d_row = &mut d_state[b * width..(b + 1) * width];
                for (d, &gy) in d_row[..hidden]
                    .iter_mut()
                    .zip(&g[row * hidden..(row + 1) * hidden])
                {
                    *d += gy;
                }
                backward_row(
                    self.kind,
                    hidden,
                    RowBackward {
                        saved: &self.saved[row * saved_w..(row + 1) * saved_w],
                        prev: &self.prev[row * width..(row + 1) * width],
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

        for p in 0..parts {
            if let Some(slot) = ctx.grad_input(1 + p) {
                for b in 0..batch {
                    for (s, &d) in slot[b * hidden..(b + 1) * hidden]
                        .iter_mut()
                        .zip(&d_state[b * width + p * hidden..b * width + (p + 1) * hidden])
                    {
                        *s += d;
                    }
                }
            }
        }
        let x = ctx.input(0).data();
        let w_ih = ctx.input(w_ih_at).data();
        if let Some(slot) = ctx.grad_input(0) {
            gemm(
                T::one(),
                MatRef::row_major(&d_xg, rows, gates),
                MatRef::row_major(w_ih, gates, self.input),
                T::one(),
                slot,
                self.input,
            );
        }
        if let Some(slot) = ctx.grad_input(w_ih_at) {
            gemm(
                T::one(),
                MatRef::row_major(&d_xg, rows, gates).t(),
                MatRef::row_major(x, rows, self.input),
                T::one(),
                slot,
                self.input,
            );
        }
        if let Some(slot) = ctx.grad_input(w_hh_at) {
            let prev_h = MatRef {
                data: &self.prev,
                rows,
                cols: hidden,
                row_stride: width,
                col_stride: 1,
            };
            gemm(
                T::one(),
                MatRef::row_major(d_hg, rows, gates).t(),
                prev_h,
                T::one(),
                slot,
                hidden,
            );
        }
        if bias {
            for (k, d) in [(3 + parts, &d_xg[..]), (4 + parts, d_hg)] {
                if let Some(slot) = ctx.grad_input(k) {
                    for row in d.chunks_exact(gates) {
                        for (s, &v) in slot.iter_mut().zip(row) {
                            *s += v;
                        }
                    }
                }
            }
        }
    }
}
