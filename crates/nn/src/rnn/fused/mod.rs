//! Fused sequence kernels for the built-in cells: all directions of one layer as a single tape
//! op with a hand-written backward. The input projection of all steps is one GEMM; each step
//! is one GEMM for the recurrence and one pass over the gates; backward accumulates the weight
//! gradients with one GEMM each after its loop. The directions of a bidirectional layer run on
//! separate threads when [`parallel::set_threads`](crate::parallel::set_threads) allows, with
//! the same results. `Recurrent` layers pick this path whenever their cells provide a
//! [`FusedSpec`]; it computes what the composed cell steps compute (tested against them and
//! against PyTorch).

mod direction;
mod pointwise;
mod recurrence;
#[cfg(test)]
mod tests;

use super::cell::State;
use super::CellKind;
use crate::parallel::{map_shards, threads};
use crate::params::ParamId;
use crate::session::Session;
use direction::{Dims, Saved, Weights};
use pointwise::state_parts;
use recur_tape::{BackwardCtx, Element, Op, Tensor, Var};

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

/// Runs all directions of one layer (`specs[d]` for direction d; d = 1 runs in reverse) over
/// `x` `[T, B, input]` from `states[d]` as one fused op. Returns the outputs `[T, B, D·H]`
/// (zero past each row's length) and each direction's final state, exactly like the composed
/// loop.
pub(crate) fn fused_layer<'t, T: Element>(
    specs: &[FusedSpec],
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    states: &[State<'t, T>],
    lengths: Option<&[usize]>,
) -> (Var<'t, T>, Vec<State<'t, T>>) {
    let shape = x.shape();
    let (steps, batch) = (shape[0], shape[1]);
    let spec = &specs[0];
    let (hidden, dirs, parts) = (spec.hidden_size, specs.len(), state_parts(spec.kind));
    let bias = spec.b_ih.is_some() && spec.b_hh.is_some();
    let mut inputs: Vec<Var<'t, T>> = vec![x];
    for (spec, state) in specs.iter().zip(states) {
        inputs.extend(state.iter().copied());
        inputs.push(s.param(spec.w_ih));
        inputs.push(s.param(spec.w_hh));
        if let (Some(b_ih), Some(b_hh)) = (spec.b_ih, spec.b_hh) {
            inputs.push(s.param(b_ih));
            inputs.push(s.param(b_hh));
        }
    }
    let op = FusedLayer {
        dims: Dims {
            kind: spec.kind,
            steps,
            batch,
            input: spec.input_size,
            hidden,
            lengths: lengths.map(<[usize]>::to_vec),
        },
        dirs,
        bias,
        saved: Vec::new(),
    };
    let y = s.tape().apply(op, &inputs);
    let outputs_len = steps * batch * dirs * hidden;
    let outputs = y
        .slice(0, 0..outputs_len)
        .reshape(&[steps, batch, dirs * hidden]);
    let block = batch * hidden;
    let finals = (0..dirs)
        .map(|d| {
            (0..parts)
                .map(|p| {
                    let start = outputs_len + (d * parts + p) * block;
                    y.slice(0, start..start + block).reshape(&[batch, hidden])
                })
                .collect()
        })
        .collect();
    (outputs, finals)
}

/// Inputs: `x`, then per direction its initial state parts, `weight_ih`, `weight_hh` and, if
/// the cells have biases, `bias_ih`, `bias_hh`. Output, flattened: the outputs `[T, B, D·H]`,
/// then each direction's final state parts.
struct FusedLayer<T> {
    dims: Dims,
    dirs: usize,
    bias: bool,
    /// Per direction, from forward.
    saved: Vec<Saved<T>>,
}

impl<T: Element> FusedLayer<T> {
    fn inputs_per_direction(&self) -> usize {
        self.dims.parts() + 2 + if self.bias { 2 } else { 0 }
    }

    /// Where direction d's inputs start.
    fn first_input(&self, d: usize) -> usize {
        1 + d * self.inputs_per_direction()
    }

    fn weights<'a>(&self, inputs: &[&'a Tensor<T>], d: usize) -> Weights<'a, T> {
        let (at, parts) = (self.first_input(d), self.dims.parts());
        Weights {
            init: inputs[at..at + parts].to_vec(),
            w_ih: inputs[at + parts],
            w_hh: inputs[at + parts + 1],
            bias: self
                .bias
                .then(|| (inputs[at + parts + 2], inputs[at + parts + 3])),
        }
    }

    fn outputs_len(&self) -> usize {
        self.dims.steps * self.dims.batch * self.dirs * self.dims.hidden
    }
}

impl<T: Element> Op<T> for FusedLayer<T> {
    fn name(&self) -> &'static str {
        "fused_rnn"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0].data();
        let this = &*self;
        let results = map_shards(self.dirs, threads(), |d| {
            direction::forward(&this.dims, d == 1, x, &this.weights(inputs, d))
        });
        let (hidden, dirs) = (self.dims.hidden, self.dirs);
        let mut out = vec![T::zero(); self.outputs_len()];
        for (d, r) in results.iter().enumerate() {
            for (row, o) in r.outputs.chunks_exact(hidden).enumerate() {
                out[(row * dirs + d) * hidden..(row * dirs + d + 1) * hidden].copy_from_slice(o);
            }
        }
        for r in &results {
            out.extend_from_slice(&r.finals);
        }
        self.saved = results.into_iter().map(|r| r.saved).collect();
        let len = out.len();
        Tensor::from_vec(out, &[len])
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (hidden, dirs) = (self.dims.hidden, self.dirs);
        let g = ctx.grad_output().data();
        let finals_len = self.dims.parts() * self.dims.batch * hidden;
        let inputs: Vec<&Tensor<T>> = (0..ctx.num_inputs()).map(|k| ctx.input(k)).collect();
        let needs_x = ctx.needs_grad(0);
        let x = inputs[0].data();
        let results = map_shards(dirs, threads(), |d| {
            let g_out: Vec<T> = g[..self.outputs_len()]
                .chunks_exact(hidden)
                .skip(d)
                .step_by(dirs)
                .flatten()
                .copied()
                .collect();
            let g_final = &g[self.outputs_len() + d * finals_len..][..finals_len];
            let weights = self.weights(&inputs, d);
            direction::backward(
                &self.dims,
                d == 1,
                &self.saved[d],
                x,
                &weights,
                &g_out,
                g_final,
                needs_x,
            )
        });
        // Summed into the slots in direction order, whatever ran where.
        let add = |slot: Option<&mut [T]>, values: &[T]| {
            if let Some(slot) = slot {
                slot.iter_mut().zip(values).for_each(|(s, &v)| *s += v);
            }
        };
        let block = self.dims.batch * hidden;
        for (d, grads) in results.iter().enumerate() {
            let at = self.first_input(d);
            if let Some(dx) = &grads.x {
                add(ctx.grad_input(0), dx);
            }
            for p in 0..self.dims.parts() {
                add(
                    ctx.grad_input(at + p),
                    &grads.init[p * block..(p + 1) * block],
                );
            }
            let parts = self.dims.parts();
            add(ctx.grad_input(at + parts), &grads.w_ih);
            add(ctx.grad_input(at + parts + 1), &grads.w_hh);
            if let Some((b_ih, b_hh)) = &grads.bias {
                add(ctx.grad_input(at + parts + 2), b_ih);
                add(ctx.grad_input(at + parts + 3), b_hh);
            }
        }
    }
}
