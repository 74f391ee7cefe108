//! Checkpointing through time: one direction of one layer as a single op that keeps the state
//! only at segment boundaries (~√T of them) and recomputes each segment during backward.
//!
//! The cell's input projection is made a segment at a time, inside the op, so that no per-step
//! value beyond the output is kept for the whole sequence. The outputs and final states are bit-
//! for-bit those of the plain path, and the gradients are too up to the order in which the
//! projection's weight gradients are summed: the recomputation records the same steps
//! (`run_steps`), and every scratch tape continues the outer tape's accumulators in the order the
//! plain tape would have used: leaves start from the outer gradient slots (and write back into
//! them), and a segment's start state starts from the cotangent the plain tape would already have
//! added (the boundary step's output).

use super::cell::{Cell, State};
use super::noise::StateNoise;
use super::steps::{masked, run_steps, StepRows};
use crate::params::{ParamId, ParamStore};
use crate::session::{Mode, Session};
use recur_tape::kernels::Precision;
use recur_tape::{BackwardCtx, Element, MultiOp, Tape, Tensor, Var};
use smallvec::SmallVec;

/// Runs `cell` over every step of `x` `[T, B, input]` from `state` as one checkpointed op.
/// Returns the outputs `[T, B, H]` and the final state, like the plain loop.
pub(crate) fn checkpointed<'t, T, C>(
    cell: &C,
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    state: State<'t, T>,
    lengths: Option<&[usize]>,
    reverse: bool,
    noise: StateNoise<T>,
) -> (Var<'t, T>, State<'t, T>)
where
    T: Element,
    C: Cell<T> + Clone + 'static,
{
    let shape = x.shape();
    let (steps, batch, input_width) = (shape[0], shape[1], shape[2]);
    let widths = cell.state_sizes();
    // Which parameters the cell reads: one probe step on a scratch tape.
    let params = {
        let tape = Tape::new();
        let probe = Session::new(&tape, s.store(), Mode::Eval, 0);
        tape.no_grad(|| {
            let st: State<T> = state.iter().map(|v| tape.constant(v.to_tensor())).collect();
            let x0 = x.value().data()[..batch * input_width].to_vec();
            cell.step(
                &probe,
                tape.constant(Tensor::from_vec(x0, &[batch, input_width])),
                &st,
            );
        });
        probe.bound_params()
    };
    let op = Checkpointed {
        cell: cell.clone(),
        params: params.clone(),
        store_len: s.store().len(),
        steps,
        batch,
        input_width,
        widths: widths.clone(),
        lengths: lengths.map(<[usize]>::to_vec),
        reverse,
        noise,
        segment: ((steps as f64).sqrt().ceil() as usize).max(1),
        boundaries: Vec::new(),
        products: s.tape().product_precision(),
    };
    let mut all: Vec<Var<'t, T>> = vec![x];
    all.extend(state.iter().copied());
    all.extend(params.iter().map(|&id| s.param(id)));
    let y = s.tape().apply_multi(op, &all);
    (y[0], State::from(&y[1..]))
}

/// Inputs: the whole input sequence `[T, B, input]`, the initial state parts, then the
/// parameters the cell uses. Outputs: every step's output `[T, B, H]`, then the final state
/// parts `[B, width]`.
struct Checkpointed<C, T: Element> {
    cell: C,
    params: Vec<ParamId>,
    store_len: usize,
    steps: usize,
    batch: usize,
    input_width: usize,
    widths: SmallVec<[usize; 2]>,
    lengths: Option<Vec<usize>>,
    reverse: bool,
    /// The steps' noise on the state, drawn once so that recomputation repeats it.
    noise: StateNoise<T>,
    segment: usize,
    /// The state at the start of each segment, in processing order.
    boundaries: Vec<Vec<Tensor<T>>>,
    /// The recording tape's product precision, which the recomputation repeats.
    products: Precision,
}

impl<C, T: Element> Checkpointed<C, T> {
    /// Time indices in processing order.
    fn order(&self) -> Vec<usize> {
        if self.reverse {
            (0..self.steps).rev().collect()
        } else {
            (0..self.steps).collect()
        }
    }

    fn store(&self, values: &[&Tensor<T>]) -> ParamStore<T> {
        ParamStore::at_ids(
            self.store_len,
            self.params
                .iter()
                .zip(values)
                .map(|(&id, v)| (id, (*v).clone()))
                .collect(),
        )
    }

    fn out_len(&self) -> usize {
        self.batch * self.widths[0]
    }

    /// The first time index of segment `seg` and its steps' inputs, `[len·B, input]`.
    fn segment_input(&self, xs: &Tensor<T>, seg: &[usize]) -> (usize, Tensor<T>) {
        let first = seg[0].min(seg[seg.len() - 1]);
        let n = self.batch * self.input_width;
        let rows = &xs.data()[first * n..(first + seg.len()) * n];
        let x = Tensor::from_vec(rows.to_vec(), &[seg.len() * self.batch, self.input_width]);
        (first, x)
    }

    /// Runs segment `seg` from `start` on the tape of `s`, its input projection made for the
    /// whole segment at once (`x` from [`segment_input`](Self::segment_input), whose
    /// steps begin at time `first`).
    fn run_segment<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        first: usize,
        seg: &[usize],
        start: State<'t, T>,
    ) -> (Vec<(usize, Var<'t, T>)>, State<'t, T>)
    where
        C: Cell<T>,
    {
        let rows = StepRows::new(&self.cell, s, x, self.batch);
        let input = |t: usize| rows.at(t - first);
        let lengths = self.lengths.as_deref();
        let order = seg.iter().copied();
        run_steps(&self.cell, s, input, start, lengths, order, &self.noise)
    }
}

/// A copy of (a block of) an outer gradient slot, as the seed that continues it on a
/// scratch tape. `block` is (start, shape) within the slot; `None` takes the whole slot.
fn slot_seed<T: Element>(
    ctx: &mut BackwardCtx<'_, T>,
    k: usize,
    block: Option<(usize, &[usize])>,
) -> Option<Tensor<T>> {
    let whole = ctx.input(k).shape().to_vec();
    let (start, shape) = block.unwrap_or((0, &whole));
    let n: usize = shape.iter().product();
    ctx.grad_input(k)
        .map(|g| Tensor::from_vec(g[start..start + n].to_vec(), shape))
}

/// Overwrites (a block of) an outer gradient slot with the scratch tape's continuation of it.
fn write_back<T: Element>(
    ctx: &mut BackwardCtx<'_, T>,
    k: usize,
    start: usize,
    grad: Option<&Tensor<T>>,
) {
    if let (Some(slot), Some(g)) = (ctx.grad_input(k), grad) {
        slot[start..start + g.numel()].copy_from_slice(g.data());
    }
}

impl<C: Cell<T> + Clone + 'static, T: Element> MultiOp<T> for Checkpointed<C, T> {
    fn name(&self) -> &'static str {
        "checkpointed_rnn"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Vec<Tensor<T>> {
        let xs = inputs[0];
        let (init, params) = inputs[1..].split_at(self.widths.len());
        let store = self.store(params);
        let out_len = self.out_len();
        let mut out = vec![T::zero(); self.steps * out_len];
        let mut state: Vec<Tensor<T>> = init.iter().map(|t| (*t).clone()).collect();
        self.boundaries.clear();
        for seg in self.order().chunks(self.segment) {
            self.boundaries.push(state.clone());
            let tape = Tape::new();
            tape.set_product_precision(self.products);
            let s = Session::new(&tape, &store, Mode::Eval, 0);
            tape.no_grad(|| {
                let st: State<T> = state.iter().map(|t| tape.constant(t.clone())).collect();
                let (first, x) = self.segment_input(xs, seg);
                let (outs, fin) = self.run_segment(&s, tape.constant(x), first, seg, st);
                for (t, v) in outs {
                    out[t * out_len..(t + 1) * out_len].copy_from_slice(v.value().data());
                }
                state = fin.iter().map(|v| v.to_tensor()).collect();
            });
        }
        let mut outputs = vec![Tensor::from_vec(
            out,
            &[self.steps, self.batch, self.widths[0]],
        )];
        outputs.extend(state);
        outputs
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let parts = self.widths.len();
        let (init_at, params_at) = (1, 1 + parts);
        let xs = ctx.input(0);
        let x_block = self.batch * self.input_width;
        let param_values: Vec<&Tensor<T>> = (0..self.params.len())
            .map(|k| ctx.input(params_at + k))
            .collect();
        let store = self.store(&param_values);
        // Zeros for an output the loss does not reach.
        let out_len = self.out_len();
        let g = ctx.grad_output_at(0).map(Tensor::data);
        let g_out = |t: usize| match g {
            Some(g) => Tensor::from_vec(
                g[t * out_len..(t + 1) * out_len].to_vec(),
                &[self.batch, self.widths[0]],
            ),
            None => Tensor::zeros(&[self.batch, self.widths[0]]),
        };
        let g_final: Vec<Tensor<T>> = (0..parts)
            .map(|p| match ctx.grad_output_at(1 + p) {
                Some(g) => g.clone(),
                None => Tensor::zeros(&[self.batch, self.widths[p]]),
            })
            .collect();
        let lengths = self.lengths.as_deref();
        let order = self.order();
        let segs: Vec<&[usize]> = order.chunks(self.segment).collect();
        let mut carry: Option<Vec<Tensor<T>>> = None;
        for k in (0..segs.len()).rev() {
            let seg = segs[k];
            let tape = Tape::new();
            tape.set_product_precision(self.products);
            let s = Session::new(&tape, &store, Mode::Eval, 0);
            let start: State<T> = self.boundaries[k]
                .iter()
                .map(|t| tape.var(t.clone()))
                .collect();
            let (first, x) = self.segment_input(xs, seg);
            let x_shape = x.shape().to_vec();
            let x_leaf = tape.var(x);
            let p_leaves: Vec<Var<T>> = self
                .params
                .iter()
                .zip(&param_values)
                .map(|(&id, v)| {
                    let leaf = tape.var((*v).clone());
                    s.bind_param(id, leaf);
                    leaf
                })
                .collect();
            let (outs, end) = self.run_segment(&s, x_leaf, first, seg, start.clone());

            let last = k + 1 == segs.len();
            let seg_end = seg[seg.len() - 1];
            let mut seeds = Vec::new();
            for &(t, v) in &outs {
                // An unmasked boundary output is the next segment's start state; its cotangent
                // already started that accumulator there.
                if last || t != seg_end || masked(lengths, t) {
                    seeds.push((v, g_out(t)));
                }
            }
            let end_cotangent = if last {
                g_final.clone()
            } else {
                carry.take().expect("later segment ran")
            };
            seeds.extend(end.iter().copied().zip(end_cotangent));
            for (i, &leaf) in p_leaves.iter().enumerate() {
                seeds.extend(slot_seed(ctx, params_at + i, None).map(|g| (leaf, g)));
            }
            seeds.extend(slot_seed(ctx, 0, Some((first * x_block, &x_shape))).map(|g| (x_leaf, g)));
            if k == 0 {
                for (p, &leaf) in start.iter().enumerate() {
                    seeds.extend(slot_seed(ctx, init_at + p, None).map(|g| (leaf, g)));
                }
            } else {
                let before = segs[k - 1][segs[k - 1].len() - 1];
                if !masked(lengths, before) {
                    seeds.push((start[0], g_out(before)));
                }
            }

            // The weights' products go on to the outer gradients, to be summed in the same
            // blocks as without checkpointing.
            let mut grads = tape.backward_keeping_products(seeds, &p_leaves);
            for (i, &leaf) in p_leaves.iter().enumerate() {
                write_back(ctx, params_at + i, 0, grads.get(leaf));
                for (a, b) in grads.take_products(leaf) {
                    ctx.add_transposed_product(params_at + i, &a, &b);
                }
            }
            write_back(ctx, 0, first * x_block, grads.get(x_leaf));
            if k == 0 {
                for (p, &leaf) in start.iter().enumerate() {
                    write_back(ctx, init_at + p, 0, grads.get(leaf));
                }
            } else {
                carry = Some(start.iter().map(|&v| grads.wrt(v)).collect());
            }
        }
    }
}
