//! One direction of one layer on plain buffers, a chunk of steps at a time: the forward run
//! that saves what backward reads, and the backward run that returns every gradient in fresh
//! buffers (so that directions and layers can run on different threads and be summed in a
//! fixed order). The whole-sequence `forward` and `backward` feed them every chunk in turn.

use super::pointwise::{backward_row, fill, forward_row, gate_count, saved_width, state_parts};
use super::pointwise::{RowBackward, RowForward};
use super::recurrence::Recurrence;
use crate::rnn::CellKind;
use recur_tape::kernels::packed::{suits_many_rows, AddTo};
use recur_tape::kernels::simd::widest;
use recur_tape::kernels::{gemm, MatRef};
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

/// The bias of the input part: b_ih, plus b_hh unless the kind keeps it apart (GRU).
fn input_bias<T: Element>(dims: &Dims, weights: &Weights<'_, T>) -> Option<Vec<T>> {
    let (b_ih, b_hh) = weights.bias?;
    Some(if dims.separate_hidden_bias() {
        b_ih.data().to_vec()
    } else {
        b_ih.data()
            .iter()
            .zip(b_hh.data())
            .map(|(&i, &h)| i + h)
            .collect()
    })
}

/// The input part `xg` ← x·W_ihᵀ + `bias` of the `rows` rows of `x`; the kernel adds the
/// bias as it stores the product.
fn input_part<T: Element>(
    dims: &Dims,
    x: &[T],
    rows: usize,
    weights: &Weights<'_, T>,
    bias: Option<&[T]>,
    xg: &mut [T],
) {
    let gates = dims.gates();
    let x = MatRef::row_major(x, rows, dims.input);
    let xg = &mut xg[..rows * gates];
    if suits_many_rows() {
        let add = bias.map_or(AddTo::Nothing, AddTo::Row);
        return weights.w_ih.packed(true).product(x, xg, gates, add);
    }
    // gemm adds to C: C starts as the bias rows (or zeros).
    match bias {
        Some(b) => xg
            .chunks_exact_mut(gates)
            .for_each(|r| r.copy_from_slice(b)),
        None => xg.fill(T::zero()),
    }
    let w = weights.w_ih;
    let w_t = MatRef::row_major(w.data(), w.shape()[0], w.shape()[1]).t();
    gemm(T::one(), x, w_t, T::one(), xg, gates);
}

/// The forward pass of one direction, fed one chunk at a time in `dims.chunks(reverse)`
/// order; its buffers live across the chunks.
pub(super) struct ForwardRun<'a, T: Element> {
    dims: &'a Dims,
    reverse: bool,
    weights: Weights<'a, T>,
    recurrence: Recurrence<'a, T>,
    /// The state as `[h, c]` rows; h is also the recurrent product's input.
    state: Vec<T>,
    saved: Saved<T>,
    /// The recurrent product of one step, `[B, gates]`.
    hg: Vec<T>,
    /// The input part of one chunk, `[rows, gates]`.
    xg: Vec<T>,
    /// What the input part adds to x·W_ihᵀ (see `input_bias`).
    bias: Option<Vec<T>>,
    /// Whether backward will run: else nothing is saved, and the gate values of one step
    /// go to `scratch` `[B, saved width]`.
    keep: bool,
    scratch: Vec<MaybeUninit<T>>,
}

impl<'a, T: Element> ForwardRun<'a, T> {
    /// `keep`: whether to save what backward reads.
    pub fn new(dims: &'a Dims, reverse: bool, weights: Weights<'a, T>, keep: bool) -> Self {
        let state = dims.parts_to_rows(|p| weights.init[p].data());
        let scratch_len = if keep || dims.state_is_output() {
            0
        } else {
            dims.batch * dims.saved_width()
        };
        ForwardRun {
            dims,
            reverse,
            recurrence: Recurrence::forward(weights.w_hh),
            bias: input_bias(dims, &weights),
            weights,
            state,
            saved: Saved::new(dims),
            hg: vec![T::zero(); dims.batch * dims.gates()],
            xg: vec![T::zero(); dims.chunk_steps * dims.batch * dims.gates()],
            keep,
            scratch: std::iter::repeat_with(MaybeUninit::uninit)
                .take(scratch_len)
                .collect(),
        }
    }

    /// Runs the steps of `chunk` on its input rows `x` `[rows, input]`, writing their outputs
    /// into every slot of `out` `[rows, hidden]` (rows past their length get zeros).
    pub fn chunk(&mut self, chunk: &Range<usize>, x: &[T], out: &mut [MaybeUninit<T>]) {
        let dims = self.dims;
        let (batch, hidden) = (dims.batch, dims.hidden);
        let (gates, width, saved_w) = (dims.gates(), dims.width(), dims.saved_width());
        let b_hh = self
            .weights
            .bias
            .filter(|_| dims.separate_hidden_bias())
            .map(|(_, b)| b.data());
        let first = chunk.start * batch;
        let (rows, bias) = (chunk.len() * batch, self.bias.as_deref());
        input_part(dims, x, rows, &self.weights, bias, &mut self.xg);
        let keep_apart = !dims.state_is_output();
        let save = keep_apart && self.keep;
        let saved = self.saved.chunk_mut(dims, chunk);
        // The chunk's saved values are written by its steps into fresh capacity, not
        // zero-filled first (that fill was a pass of its own over the chunk's buffers).
        let (mut activations, mut prev) = (Vec::new(), Vec::new());
        if save {
            activations.reserve_exact(rows * saved_w);
            prev.reserve_exact(rows * width);
        }
        let (activations_slots, prev_slots) =
            (activations.spare_capacity_mut(), prev.spare_capacity_mut());
        for t in steps_of(chunk, self.reverse) {
            let at = t * batch;
            if save {
                let local = at - first;
                let state = &self.state;
                fill(
                    &mut prev_slots[local * width..(local + batch) * width],
                    |j| state[j],
                );
            }
            self.recurrence
                .step(&self.state, width, batch, &mut self.hg, gates, false);
            let (state, xg, hg) = (&mut self.state, &self.xg, &self.hg);
            let scratch = &mut self.scratch;
            widest(
                #[inline(always)]
                || {
                    for b in 0..batch {
                        let local = at + b - first;
                        let saved_row = local * saved_w..(local + 1) * saved_w;
                        let out_row = &mut out[local * hidden..(local + 1) * hidden];
                        if !dims.active(t, b) {
                            fill(out_row, |_| T::zero());
                            if save {
                                fill(&mut activations_slots[saved_row], |_| T::zero());
                            }
                            continue;
                        }
                        let state_row = &mut state[b * width..(b + 1) * width];
                        forward_row(
                            dims.kind,
                            hidden,
                            RowForward {
                                xg: &xg[local * gates..(local + 1) * gates],
                                hg: &hg[b * gates..(b + 1) * gates],
                                b_hh,
                                state: state_row,
                                saved: if save {
                                    &mut activations_slots[saved_row]
                                } else if keep_apart {
                                    &mut scratch[b * saved_w..(b + 1) * saved_w]
                                } else {
                                    &mut *out_row
                                },
                            },
                        );
                        if keep_apart {
                            fill(out_row, |j| state_row[j]);
                        }
                    }
                },
            );
        }
        if save {
            // SAFETY: each step of the chunk wrote its `batch` rows of both: the previous
            // states above, and every row's saved values (forward_row writes all of them,
            // rows past their length got zeros); the chunk's steps cover its `rows` rows.
            unsafe {
                activations.set_len(rows * saved_w);
                prev.set_len(rows * width);
            }
            *saved = SavedChunk { activations, prev };
        }
    }

    /// What backward needs, and the final state parts `[parts, B, H]`.
    pub fn finish(self) -> (Saved<T>, Vec<T>) {
        let finals = self.dims.rows_to_parts(&self.state);
        (self.saved, finals)
    }
}

/// One direction over the whole sequence `x` `[T·B, input]`. `keep`: whether to save what
/// backward reads.
pub(super) fn forward<T: Element>(
    dims: &Dims,
    reverse: bool,
    x: &[T],
    weights: Weights<'_, T>,
    keep: bool,
) -> Forward<T> {
    let (batch, hidden, input) = (dims.batch, dims.hidden, dims.input);
    let len = dims.steps * batch * hidden;
    let mut outputs = Vec::with_capacity(len);
    let slots = outputs.spare_capacity_mut();
    let mut run = ForwardRun::new(dims, reverse, weights, keep);
    for chunk in dims.chunks(reverse) {
        let rows = chunk.start * batch..chunk.end * batch;
        run.chunk(
            &chunk,
            &x[rows.start * input..rows.end * input],
            &mut slots[rows.start * hidden..rows.end * hidden],
        );
    }
    // SAFETY: the chunks cover every step, and a chunk writes all of its rows' outputs.
    unsafe { outputs.set_len(len) };
    let (saved, finals) = run.finish();
    Forward {
        saved,
        outputs,
        finals,
    }
}

/// The backward pass of one direction, fed one chunk at a time in the reverse of forward's
/// order; it accumulates the weight gradients and carries ∂/∂state across the chunks.
pub(super) struct BackwardRun<'a, T: Element> {
    dims: &'a Dims,
    reverse: bool,
    saved: &'a Saved<T>,
    weights: Weights<'a, T>,
    recurrence: Recurrence<'a, T>,
    /// ∂/∂state as `[h, c]` rows.
    d_state: Vec<T>,
    /// Gate pre-activation gradients of one chunk, `[rows, gates]`.
    d_xg: Vec<T>,
    /// The recurrent part's gradients where they differ from `d_xg` (GRU).
    d_hg: Vec<T>,
    /// The chunk's previous states `[rows, H]` when forward did not keep them and they are
    /// not all outputs (RNN with lengths).
    prev_h: Vec<T>,
    outputs: Outputs<'a, T>,
    grads: Grads<T>,
}

impl<'a, T: Element> BackwardRun<'a, T> {
    /// `g_final` is ∂/∂final state `[parts, B, H]`; `outputs` are forward's.
    pub fn new(
        dims: &'a Dims,
        reverse: bool,
        saved: &'a Saved<T>,
        outputs: Outputs<'a, T>,
        weights: Weights<'a, T>,
        g_final: &[T],
    ) -> Self {
        let (batch, hidden, gates) = (dims.batch, dims.hidden, dims.gates());
        let block = batch * hidden;
        let d_state = dims.parts_to_rows(|p| &g_final[p * block..(p + 1) * block]);
        let chunk_len = dims.chunk_steps * batch * gates;
        BackwardRun {
            dims,
            reverse,
            saved,
            recurrence: Recurrence::backward(weights.w_hh),
            grads: Grads {
                x: None,
                init: Vec::new(),
                w_ih: vec![T::zero(); gates * dims.input],
                w_hh: vec![T::zero(); gates * hidden],
                bias: weights
                    .bias
                    .map(|_| (vec![T::zero(); gates], vec![T::zero(); gates])),
            },
            weights,
            outputs,
            d_state,
            d_xg: vec![T::zero(); chunk_len],
            d_hg: if dims.separate_hidden_bias() {
                vec![T::zero(); chunk_len]
            } else {
                Vec::new()
            },
            prev_h: if dims.state_is_output() && dims.lengths.is_some() {
                vec![T::zero(); dims.chunk_steps * batch * hidden]
            } else {
                Vec::new()
            },
        }
    }

    /// Runs the steps of `chunk` backwards: `x` is the chunk's input rows `[rows, input]`,
    /// `g_out` ∂/∂its outputs `[rows, hidden]`; writes ∂/∂x into every slot of `dx` when
    /// given.
    pub fn chunk(
        &mut self,
        chunk: &Range<usize>,
        x: &[T],
        g_out: &[T],
        dx: Option<&mut [MaybeUninit<T>]>,
    ) {
        let dims = self.dims;
        let (batch, hidden) = (dims.batch, dims.hidden);
        let (gates, width, saved_w) = (dims.gates(), dims.width(), dims.saved_width());
        let separate = dims.separate_hidden_bias();
        let first = chunk.start * batch;
        let rows = chunk.len() * batch;
        // Rows past their length keep zero gate gradients; without lengths every row is
        // written below.
        if dims.lengths.is_some() {
            self.d_xg[..rows * gates].fill(T::zero());
            self.d_hg.fill(T::zero());
        }
        let saved = self.saved.chunk(dims, chunk);
        for t in steps_of(chunk, self.reverse).rev() {
            let at = t * batch;
            let (d_state, d_xg, d_hg, outputs) = (
                &mut self.d_state,
                &mut self.d_xg,
                &mut self.d_hg,
                &self.outputs,
            );
            widest(
                #[inline(always)]
                || {
                    for b in 0..batch {
                        if !dims.active(t, b) {
                            continue;
                        }
                        let (row, local) = (at + b, at + b - first);
                        let d_row = &mut d_state[b * width..(b + 1) * width];
                        for (d, &gy) in d_row[..hidden]
                            .iter_mut()
                            .zip(&g_out[local * hidden..(local + 1) * hidden])
                        {
                            *d += gy;
                        }
                        backward_row(
                            dims.kind,
                            hidden,
                            RowBackward {
                                saved: if dims.state_is_output() {
                                    outputs.row(row, hidden)
                                } else {
                                    &saved.activations[local * saved_w..(local + 1) * saved_w]
                                },
                                prev: saved
                                    .prev
                                    .get(local * width..(local + 1) * width)
                                    .unwrap_or(&[]),
                                d_state: d_row,
                                d_xg: &mut d_xg[local * gates..(local + 1) * gates],
                                d_hg: separate
                                    .then(|| &mut d_hg[local * gates..(local + 1) * gates]),
                            },
                        );
                    }
                },
            );
            let d_hg = if separate { &self.d_hg } else { &self.d_xg };
            let local = at - first;
            self.recurrence.step(
                &d_hg[local * gates..(local + batch) * gates],
                gates,
                batch,
                &mut self.d_state,
                width,
                true,
            );
        }
        // The chunk's share of the input and weight gradients, while its rows are in cache.
        let d_xg = MatRef::row_major(&self.d_xg[..rows * gates], rows, gates);
        let d_hg = MatRef::row_major(
            &(if separate { &self.d_hg } else { &self.d_xg })[..rows * gates],
            rows,
            gates,
        );
        if let Some(dx) = dx {
            let w = self.weights.w_ih;
            if suits_many_rows() {
                w.packed(false).product_into_slots(d_xg, dx, AddTo::Nothing);
            } else {
                let dx = fill(dx, |_| T::zero());
                let w = MatRef::row_major(w.data(), gates, dims.input);
                gemm(T::one(), d_xg, w, T::zero(), dx, dims.input);
            }
        }
        let grads = &mut self.grads;
        gemm(
            T::one(),
            d_xg.t(),
            MatRef::row_major(x, rows, dims.input),
            T::one(),
            &mut grads.w_ih,
            dims.input,
        );
        // The states before the chunk's steps, as runs of its rows with their matrix.
        let runs = if !dims.state_is_output() {
            let prev = MatRef {
                data: &saved.prev,
                rows,
                cols: hidden,
                row_stride: width,
                col_stride: 1,
            };
            vec![(0..rows, prev)]
        } else if dims.lengths.is_some() {
            previous_outputs(
                dims,
                self.reverse,
                chunk,
                &self.outputs,
                &self.weights,
                &mut self.prev_h,
            );
            vec![(
                0..rows,
                MatRef::row_major(&self.prev_h[..rows * hidden], rows, hidden),
            )]
        } else {
            let init = MatRef::row_major(self.weights.init[0].data(), batch, hidden);
            previous_output_runs(dims, self.reverse, chunk, &self.outputs, init)
        };
        for (local, prev) in runs {
            let d = &d_hg.data[local.start * gates..local.end * gates];
            let d = MatRef::row_major(d, local.len(), gates);
            gemm(T::one(), d.t(), prev, T::one(), &mut grads.w_hh, hidden);
        }
        // The biases' gradients are the gate gradients' column sums; b_hh's are b_ih's
        // unless the kind keeps the recurrent part apart (made once, in `finish`).
        if let Some((b_ih, b_hh)) = grads.bias.as_mut() {
            widest(
                #[inline(always)]
                || {
                    add_column_sums(b_ih, d_xg.data);
                    if separate {
                        add_column_sums(b_hh, d_hg.data);
                    }
                },
            );
        }
    }

    /// Every gradient but the input's (`x` is `None`).
    pub fn finish(mut self) -> Grads<T> {
        let init = self.dims.rows_to_parts(&self.d_state);
        if let Some((b_ih, b_hh)) = self.grads.bias.as_mut() {
            if !self.dims.separate_hidden_bias() {
                b_hh.copy_from_slice(b_ih);
            }
        }
        Grads { init, ..self.grads }
    }
}

/// Adds the column sums of the rows of `matrix` (each `sums.len()` wide) to `sums`.
#[inline(always)]
fn add_column_sums<T: Element>(sums: &mut [T], matrix: &[T]) {
    for row in matrix.chunks_exact(sums.len()) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// The step processed just before step t in this direction (none before the first).
fn step_before(dims: &Dims, reverse: bool, t: usize) -> Option<usize> {
    if reverse {
        (t + 1 < dims.steps).then_some(t + 1)
    } else {
        t.checked_sub(1)
    }
}

/// The states before the steps of `chunk` for a kind whose state is its output (the RNN),
/// without lengths, read where they lie: runs of the chunk's rows (local, in time order), each
/// with the matrix of its previous states: the outputs of the steps processed just before,
/// one run while those lie in one piece of storage, or the initial state alone.
fn previous_output_runs<'o, T: Element>(
    dims: &Dims,
    reverse: bool,
    chunk: &Range<usize>,
    outputs: &'o Outputs<'_, T>,
    init: MatRef<'o, T>,
) -> Vec<(Range<usize>, MatRef<'o, T>)> {
    let batch = dims.batch;
    let before = |t| step_before(dims, reverse, t);
    let mut runs = Vec::new();
    let mut t = chunk.start;
    while t < chunk.end {
        let (end, prev) = match before(t) {
            None => (t + 1, init),
            Some(b) => {
                let piece = outputs.piece(b * batch);
                let mut end = t + 1;
                while end < chunk.end
                    && before(end).is_some_and(|b| outputs.piece(b * batch) == piece)
                {
                    end += 1;
                }
                let rows = b * batch..(b + end - t) * batch;
                (end, outputs.matrix(rows, dims.hidden))
            }
        };
        runs.push(((t - chunk.start) * batch..(end - chunk.start) * batch, prev));
        t = end;
    }
    runs
}

/// Fills `prev_h` with the state before each step of `chunk` `[rows, H]` for a kind whose
/// state is its output (the RNN): the output of the step processed just before, or the
/// initial state where there was none. Rows past their length get zeros (their gate gradients
/// are zero).
fn previous_outputs<T: Element>(
    dims: &Dims,
    reverse: bool,
    chunk: &Range<usize>,
    outputs: &Outputs<'_, T>,
    weights: &Weights<'_, T>,
    prev_h: &mut [T],
) {
    let (batch, hidden) = (dims.batch, dims.hidden);
    let init = weights.init[0].data();
    for t in chunk.clone() {
        let before = step_before(dims, reverse, t);
        for b in 0..batch {
            let local = (t - chunk.start) * batch + b;
            let row = &mut prev_h[local * hidden..(local + 1) * hidden];
            if !dims.active(t, b) {
                row.fill(T::zero());
            } else if let Some(before) = before.filter(|&s| dims.active(s, b)) {
                row.copy_from_slice(outputs.row(before * batch + b, hidden));
            } else {
                row.copy_from_slice(&init[b * hidden..(b + 1) * hidden]);
            }
        }
    }
}

/// One direction over the whole sequence backwards: `g_out` is ∂/∂outputs `[T·B, H]`,
/// `g_final` ∂/∂final state `[parts, B, H]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Element>(
    dims: &Dims,
    reverse: bool,
    saved: &Saved<T>,
    outputs: Outputs<'_, T>,
    x: &[T],
    weights: Weights<'_, T>,
    g_out: &[T],
    g_final: &[T],
    needs_x: bool,
) -> Grads<T> {
    let (batch, hidden, input) = (dims.batch, dims.hidden, dims.input);
    let len = dims.steps * batch * input;
    let mut x_grad = needs_x.then(|| Vec::with_capacity(len));
    let mut run = BackwardRun::new(dims, reverse, saved, outputs, weights, g_final);
    for chunk in dims.chunks(reverse).into_iter().rev() {
        let rows = chunk.start * batch..chunk.end * batch;
        run.chunk(
            &chunk,
            &x[rows.start * input..rows.end * input],
            &g_out[rows.start * hidden..rows.end * hidden],
            x_grad
                .as_mut()
                .map(|dx| &mut dx.spare_capacity_mut()[rows.start * input..rows.end * input]),
        );
    }
    if let Some(dx) = x_grad.as_mut() {
        // SAFETY: the chunks cover every step, and each wrote ∂/∂x of all its rows.
        unsafe { dx.set_len(len) };
    }
    Grads {
        x: x_grad,
        ..run.finish()
    }
}
