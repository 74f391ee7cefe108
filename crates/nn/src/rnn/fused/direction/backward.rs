//! The backward run of one direction: per step one pass over the saved gates and the
//! recurrent product of their gradient, per chunk the weight gradients as one product each;
//! and the previous states the RNN rebuilds from the outputs instead of saving them.

use super::*;

/// The backward pass of one direction, fed one chunk at a time in the reverse of forward's
/// order; it accumulates the weight gradients and carries ∂/∂state across the chunks.
pub(in crate::rnn::fused) struct BackwardRun<'a, T: Element> {
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
    /// Operands rounded to bf16 (mixed precision): the gate gradients, and x or the
    /// previous states.
    rounded_d: Vec<T>,
    rounded_rows: Vec<T>,
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
            recurrence: Recurrence::backward(weights.w_hh, dims.bf16),
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
            rounded_d: Vec::new(),
            rounded_rows: Vec::new(),
        }
    }

    /// Runs the steps of `chunk` backwards: `x` is the chunk's input rows `[rows, input]`,
    /// `g_out` ∂/∂its outputs `[rows, hidden]`; writes ∂/∂x into `dx` when given.
    pub fn chunk(&mut self, chunk: &Range<usize>, x: &[T], g_out: &[T], dx: Option<&mut [T]>) {
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
        let bf16 = dims.bf16;
        let precision = Precision::bf16_if(bf16);
        let d_xg_operand = operand(d_xg, bf16, &mut self.rounded_d);
        if let Some(dx) = dx {
            let w = self.weights.w_ih;
            if suits_many_rows::<T>(precision) {
                w.packed(false)
                    .mul_into(d_xg_operand, dx, dims.input, false);
            } else {
                let w = MatRef::row_major(w.data(), gates, dims.input);
                gemm(T::one(), d_xg_operand, w, T::zero(), dx, dims.input);
            }
        }
        let grads = &mut self.grads;
        let x = MatRef::row_major(x, rows, dims.input);
        let x = operand(x, bf16, &mut self.rounded_rows);
        product(
            d_xg_operand.t(),
            x,
            &mut grads.w_ih,
            dims.input,
            true,
            precision,
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
            let d = operand(
                MatRef::row_major(d, local.len(), gates),
                bf16,
                &mut self.rounded_d,
            );
            let prev = operand(prev, bf16, &mut self.rounded_rows);
            product(d.t(), prev, &mut grads.w_hh, hidden, true, precision);
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
pub(in crate::rnn::fused) fn backward<T: Element>(
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
    let mut x_grad = needs_x.then(|| vec![T::zero(); len]);
    let mut run = BackwardRun::new(dims, reverse, saved, outputs, weights, g_final);
    for chunk in dims.chunks(reverse).into_iter().rev() {
        let rows = chunk.start * batch..chunk.end * batch;
        run.chunk(
            &chunk,
            &x[rows.start * input..rows.end * input],
            &g_out[rows.start * hidden..rows.end * hidden],
            x_grad
                .as_mut()
                .map(|dx| &mut dx[rows.start * input..rows.end * input]),
        );
    }
    Grads {
        x: x_grad,
        ..run.finish()
    }
}
