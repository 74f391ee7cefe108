//! Fused sequence kernels for the built-in cells: a layer's directions, or a unidirectional
//! stack of layers, as a single tape op with a hand-written backward. The input projection of
//! a chunk of steps is one GEMM; each step is one GEMM for the recurrence and one pass over
//! the gates; backward accumulates the weight gradients with one GEMM per chunk. With
//! [`parallel::set_threads`](crate::parallel::set_threads) above 1, the directions of a
//! bidirectional layer run on separate threads and a stack runs as a wavefront, with the same
//! results. `Recurrent` layers pick this path whenever their cells provide a [`FusedSpec`];
//! it computes what the composed cell steps compute (tested against them and against
//! PyTorch).

mod direction;
pub(crate) mod pointwise;
mod recurrence;
#[cfg(test)]
mod tests;
mod wavefront;

use super::cell::State;
use super::CellKind;
use crate::parallel::{map_shards, threads};
use crate::params::ParamId;
use crate::session::Session;
use direction::{chunk_steps, Dims, Grads, Outputs, Weights};
use pointwise::state_parts;
use recur_tape::kernels::Precision;
use recur_tape::{BackwardCtx, Element, MultiOp, Tensor, Var};
use wavefront::StackForward;

/// What a built-in cell tells a layer so it can run the fused kernel: its kind, sizes and
/// PyTorch-layout weights (`weight_ih` `[G·H, input]`, `weight_hh` `[G·H, H]`, biases `[G·H]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedSpec {
    /// Which cell.
    pub kind: CellKind,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
    /// `weight_ih`.
    pub w_ih: ParamId,
    /// `weight_hh`.
    pub w_hh: ParamId,
    /// `bias_ih`, if the cell has biases.
    pub b_ih: Option<ParamId>,
    /// `bias_hh`, if the cell has biases.
    pub b_hh: Option<ParamId>,
}

/// How the units (cells) of one fused op relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrangement {
    /// The directions of one layer over the same input; unit 1 runs in reverse, and the
    /// outputs are concatenated.
    Directions,
    /// The layers of a unidirectional stack, each one's output the next one's input; the
    /// output is the last layer's.
    Stack,
}

/// Runs the units `specs` (arranged as `arrangement` says) over `x` `[T, B, input]` from
/// `states[u]` as one fused op. Returns the outputs `[T, B, D·H]` (zero past each row's
/// length) and each unit's final state, exactly like the composed loop.
pub(crate) fn fused_layers<'t, T: Element>(
    specs: &[FusedSpec],
    arrangement: Arrangement,
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    states: &[State<'t, T>],
    lengths: Option<&[usize]>,
) -> (Var<'t, T>, Vec<State<'t, T>>) {
    let shape = x.shape();
    let (steps, batch) = (shape[0], shape[1]);
    let (kind, hidden) = (specs[0].kind, specs[0].hidden_size);
    let (units, parts) = (specs.len(), state_parts(kind));
    let bias = specs[0].b_ih.is_some() && specs[0].b_hh.is_some();
    let chunk_steps = match arrangement {
        Arrangement::Directions => chunk_steps(steps, batch),
        // Enough chunks for the layers to overlap.
        Arrangement::Stack => chunk_steps(steps, batch).min(steps.div_ceil(4 * units).max(1)),
    };
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
    let op = FusedRnn {
        units: specs
            .iter()
            .map(|spec| Dims {
                kind,
                steps,
                batch,
                input: spec.input_size,
                hidden,
                lengths: lengths.map(<[usize]>::to_vec),
                chunk_steps,
                bf16: s.tape().product_precision() == Precision::Bf16,
            })
            .collect(),
        arrangement,
        bias,
        keep: true,
        kept: Kept::None,
    };
    // The outputs [T, B, D·H], then each unit's final state parts [B, H].
    let y = s.tape().apply_multi(op, &inputs);
    let finals = y[1..].chunks(parts).map(State::from).collect();
    (y[0], finals)
}

/// What forward kept for backward.
enum Kept<T> {
    None,
    Directions(Vec<direction::Saved<T>>),
    Stack(StackForward<T>),
}

/// Inputs: `x`, then per unit its initial state parts, `weight_ih`, `weight_hh` and, if the
/// cells have biases, `bias_ih`, `bias_hh`. Outputs: the outputs `[T, B, D·H]`, then each
/// unit's final state parts `[B, H]`.
struct FusedRnn<T> {
    units: Vec<Dims>,
    arrangement: Arrangement,
    bias: bool,
    /// Whether forward saves what backward reads (not when backward will not run).
    keep: bool,
    kept: Kept<T>,
}

impl<T: Element> FusedRnn<T> {
    fn inputs_per_unit(&self) -> usize {
        self.units[0].parts() + 2 + if self.bias { 2 } else { 0 }
    }

    /// Where unit u's inputs start.
    fn first_input(&self, u: usize) -> usize {
        1 + u * self.inputs_per_unit()
    }

    fn weights<'a>(&self, inputs: &[&'a Tensor<T>], u: usize) -> Weights<'a, T> {
        let (at, parts) = (self.first_input(u), self.units[u].parts());
        Weights {
            init: inputs[at..at + parts].to_vec(),
            w_ih: inputs[at + parts],
            w_hh: inputs[at + parts + 1],
            bias: self
                .bias
                .then(|| (inputs[at + parts + 2], inputs[at + parts + 3])),
        }
    }

    /// Width of an output row: D·H for directions, H for a stack.
    fn output_width(&self) -> usize {
        match self.arrangement {
            Arrangement::Directions => self.units.len() * self.units[0].hidden,
            Arrangement::Stack => self.units[0].hidden,
        }
    }

    fn outputs_len(&self) -> usize {
        let dims = &self.units[0];
        dims.steps * dims.batch * self.output_width()
    }

    /// Unit u's part of the outputs' gradients: ∂/∂(its final state) `[parts, B, H]`
    /// (zeros for parts the loss does not reach).
    fn g_final(&self, ctx: &BackwardCtx<'_, T>, u: usize) -> Vec<T> {
        let (dims, parts) = (&self.units[0], self.units[0].parts());
        let block = dims.batch * dims.hidden;
        let mut g = Vec::with_capacity(parts * block);
        for p in 0..parts {
            match ctx.grad_output_at(1 + u * parts + p) {
                Some(part) => g.extend_from_slice(part.data()),
                None => g.resize(g.len() + block, T::zero()),
            }
        }
        g
    }

    /// Every unit's `weight_ih` and `weight_hh` rounded to bf16 (each cached on its
    /// parameter until the values change), by input index, when the products are mixed
    /// precision; nothing otherwise.
    fn rounded_weights(&self, inputs: &[&Tensor<T>]) -> Vec<(usize, Tensor<T>)> {
        if !self.units[0].bf16 {
            return Vec::new();
        }
        let parts = self.units[0].parts();
        (0..self.units.len())
            .flat_map(|u| {
                let at = self.first_input(u) + parts;
                [at, at + 1]
            })
            .map(|k| (k, inputs[k].bf16_rounded()))
            .collect()
    }

    /// `inputs` with the weights of [`rounded_weights`](Self::rounded_weights) in place of
    /// their parameters: the tensors the products read.
    fn operands<'a>(
        inputs: &[&'a Tensor<T>],
        rounded: &'a [(usize, Tensor<T>)],
    ) -> Vec<&'a Tensor<T>> {
        let mut operands = inputs.to_vec();
        for (k, w) in rounded {
            operands[*k] = w;
        }
        operands
    }

    /// Directions: each direction forward over `x` (on its own thread if allowed); the
    /// outputs interleaved per row.
    fn forward_directions(&mut self, inputs: &[&Tensor<T>]) -> (Vec<T>, Vec<Vec<T>>) {
        let x = inputs[0].data();
        let this = &*self;
        let results = map_shards(self.units.len(), threads(), |d| {
            let weights = this.weights(inputs, d);
            direction::forward(&this.units[d], d == 1, x, weights, this.keep)
        });
        let (hidden, dirs) = (self.units[0].hidden, self.units.len());
        let mut out = Vec::new();
        let mut finals = Vec::with_capacity(dirs);
        let mut saved = Vec::with_capacity(dirs);
        for (d, r) in results.into_iter().enumerate() {
            if dirs == 1 {
                out = r.outputs;
            } else {
                out.resize(self.outputs_len(), T::zero());
                for (row, o) in r.outputs.chunks_exact(hidden).enumerate() {
                    out[(row * dirs + d) * hidden..][..hidden].copy_from_slice(o);
                }
            }
            finals.push(r.finals);
            saved.push(r.saved);
        }
        self.kept = Kept::Directions(saved);
        (out, finals)
    }

    fn backward_directions(
        &self,
        saved: &[direction::Saved<T>],
        inputs: &[&Tensor<T>],
        y: &[T],
        g_out: &[T],
        g_finals: &[Vec<T>],
        needs_x: bool,
    ) -> Vec<Grads<T>> {
        let (hidden, dirs) = (self.units[0].hidden, self.units.len());
        let x = inputs[0].data();
        map_shards(dirs, threads(), |d| {
            // This direction's share of the output gradient (all of it when alone).
            let own: Vec<T> = if dirs == 1 {
                Vec::new()
            } else {
                g_out
                    .chunks_exact(hidden)
                    .skip(d)
                    .step_by(dirs)
                    .flatten()
                    .copied()
                    .collect()
            };
            direction::backward(
                &self.units[d],
                d == 1,
                &saved[d],
                Outputs::Rows {
                    data: y,
                    stride: dirs * hidden,
                    offset: d * hidden,
                },
                x,
                self.weights(inputs, d),
                if dirs == 1 { g_out } else { &own },
                &g_finals[d],
                needs_x,
            )
        })
    }
}

impl<T: Element> MultiOp<T> for FusedRnn<T> {
    fn name(&self) -> &'static str {
        "fused_rnn"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Vec<Tensor<T>> {
        let rounded = self.rounded_weights(inputs);
        let inputs = &Self::operands(inputs, &rounded)[..];
        let (out, finals) = match self.arrangement {
            Arrangement::Directions => self.forward_directions(inputs),
            Arrangement::Stack => {
                let weights = (0..self.units.len())
                    .map(|l| self.weights(inputs, l))
                    .collect();
                let mut result = wavefront::forward(
                    &self.units,
                    inputs[0].data(),
                    weights,
                    threads(),
                    self.keep,
                );
                let out = std::mem::take(&mut result.outputs);
                let finals = std::mem::take(&mut result.finals);
                self.kept = Kept::Stack(result);
                (out, finals)
            }
        };
        let dims = &self.units[0];
        let (steps, batch, hidden) = (dims.steps, dims.batch, dims.hidden);
        let mut outputs = vec![Tensor::from_vec(out, &[steps, batch, self.output_width()])];
        for unit in finals {
            let block = batch * hidden;
            outputs.extend((0..dims.parts()).map(|p| {
                Tensor::from_vec(unit[p * block..(p + 1) * block].to_vec(), &[batch, hidden])
            }));
        }
        outputs
    }

    fn forward_no_grad(&mut self, inputs: &[&Tensor<T>]) -> Vec<Tensor<T>> {
        self.keep = false;
        self.forward(inputs)
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let y = ctx.output_at(0).data();
        // The outputs' gradient (zeros when only final states reach the loss).
        let zeros: Vec<T>;
        let g_out = match ctx.grad_output_at(0) {
            Some(g) => g.data(),
            None => {
                zeros = vec![T::zero(); self.outputs_len()];
                &zeros
            }
        };
        let g_finals: Vec<Vec<T>> = (0..self.units.len())
            .map(|u| self.g_final(ctx, u))
            .collect();
        let inputs: Vec<&Tensor<T>> = (0..ctx.num_inputs()).map(|k| ctx.input(k)).collect();
        let rounded = self.rounded_weights(&inputs);
        let inputs = Self::operands(&inputs, &rounded);
        let needs_x = ctx.needs_grad(0);
        let results = match &self.kept {
            Kept::None => unreachable!("backward runs after forward"),
            Kept::Directions(saved) => {
                self.backward_directions(saved, &inputs, y, g_out, &g_finals, needs_x)
            }
            Kept::Stack(forward) => {
                let weights = (0..self.units.len())
                    .map(|l| self.weights(&inputs, l))
                    .collect();
                let g_finals: Vec<&[T]> = g_finals.iter().map(Vec::as_slice).collect();
                wavefront::backward(
                    &self.units,
                    forward,
                    y,
                    inputs[0].data(),
                    weights,
                    g_out,
                    &g_finals,
                    needs_x,
                    threads(),
                )
            }
        };
        // Summed into the slots in unit order, whatever ran where; a fresh buffer becomes
        // the gradient when its input has none yet.
        let block = self.units[0].batch * self.units[0].hidden;
        let parts = self.units[0].parts();
        for (u, grads) in results.into_iter().enumerate() {
            let at = self.first_input(u);
            if let Some(dx) = grads.x {
                ctx.add_grad_input(0, dx);
            }
            for p in 0..parts {
                if let Some(slot) = ctx.grad_input(at + p) {
                    let init = &grads.init[p * block..(p + 1) * block];
                    slot.iter_mut().zip(init).for_each(|(s, &v)| *s += v);
                }
            }
            ctx.add_grad_input(at + parts, grads.w_ih);
            ctx.add_grad_input(at + parts + 1, grads.w_hh);
            if let Some((b_ih, b_hh)) = grads.bias {
                ctx.add_grad_input(at + parts + 2, b_ih);
                ctx.add_grad_input(at + parts + 3, b_hh);
            }
        }
    }
}
