//! The forward run of one direction: each chunk's input part as one product, then per step
//! the recurrent product and one pass over the gates, saving what backward reads (nothing when
//! backward will not run).

use super::*;

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

/// The input part `xg` ← x·W_ihᵀ + `bias` of the `rows` rows of `x` (in mixed precision
/// rounded into `rounded` first); the kernel adds the bias as it stores the product.
fn input_part<T: Element>(
    dims: &Dims,
    x: &[T],
    rows: usize,
    weights: &Weights<'_, T>,
    bias: Option<&[T]>,
    xg: &mut [T],
    rounded: &mut Vec<T>,
) {
    let gates = dims.gates();
    let x = operand(MatRef::row_major(x, rows, dims.input), dims.bf16, rounded);
    let xg = &mut xg[..rows * gates];
    if suits_many_rows::<T>(Precision::bf16_if(dims.bf16)) {
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
pub(in crate::rnn::fused) struct ForwardRun<'a, T: Element> {
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
    /// go to `scratch` `[B, saved width]` (as they do for an RNN, whose outputs are what its
    /// backward reads).
    keep: bool,
    scratch: Vec<MaybeUninit<T>>,
    /// The chunk's input rounded to bf16 (mixed precision).
    rounded: Vec<T>,
}

impl<'a, T: Element> ForwardRun<'a, T> {
    /// `keep`: whether to save what backward reads.
    pub fn new(dims: &'a Dims, reverse: bool, weights: Weights<'a, T>, keep: bool) -> Self {
        let state = dims.parts_to_rows(|p| weights.init[p].data());
        let scratch_len = if keep && !dims.state_is_output() {
            0
        } else {
            dims.batch * dims.saved_width()
        };
        ForwardRun {
            dims,
            reverse,
            recurrence: Recurrence::forward(weights.w_hh, dims.bf16),
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
            rounded: Vec::new(),
        }
    }

    /// Runs the steps of `chunk` on its input rows `x` `[rows, input]`, writing their outputs
    /// into `out` `[rows, hidden]` (rows past their length get zeros).
    pub fn chunk(&mut self, chunk: &Range<usize>, x: &[T], out: &mut [T]) {
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
        input_part(
            dims,
            x,
            rows,
            &self.weights,
            bias,
            &mut self.xg,
            &mut self.rounded,
        );
        let save = self.keep && !dims.state_is_output();
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
                            out_row.fill(T::zero());
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
                                } else {
                                    &mut scratch[b * saved_w..(b + 1) * saved_w]
                                },
                            },
                        );
                        out_row.copy_from_slice(&state_row[..hidden]);
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
pub(in crate::rnn::fused) fn forward<T: Element>(
    dims: &Dims,
    reverse: bool,
    x: &[T],
    weights: Weights<'_, T>,
    keep: bool,
) -> Forward<T> {
    let (batch, hidden, input) = (dims.batch, dims.hidden, dims.input);
    let len = dims.steps * batch * hidden;
    let mut outputs = vec![T::zero(); len];
    let mut run = ForwardRun::new(dims, reverse, weights, keep);
    for chunk in dims.chunks(reverse) {
        let rows = chunk.start * batch..chunk.end * batch;
        run.chunk(
            &chunk,
            &x[rows.start * input..rows.end * input],
            &mut outputs[rows.start * hidden..rows.end * hidden],
        );
    }
    let (saved, finals) = run.finish();
    Forward {
        saved,
        outputs,
        finals,
    }
}
