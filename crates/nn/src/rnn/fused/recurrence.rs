//! The recurrent product of the fused kernels, h·W_hhᵀ forward and ∂g·W_hh backward, for one
//! direction over a whole sequence: over several steps the weights are packed once and every
//! step streams the packed panels; a single step (generation) uses them as they are.

use recur_tape::kernels::{gemm, MatRef, PackedMatrix};
use recur_tape::Element;

/// The right-hand matrix of the per-step product.
pub(super) enum Recurrence<'a, T> {
    Packed(PackedMatrix<T>),
    Direct(MatRef<'a, T>),
}

impl<'a, T: Element> Recurrence<'a, T> {
    /// For forward steps: B = W_hhᵀ `[hidden, gates]`.
    pub fn forward(w_hh: &'a [T], gates: usize, hidden: usize, steps: usize) -> Self {
        Self::of(MatRef::row_major(w_hh, gates, hidden).t(), steps)
    }

    /// For backward steps: B = W_hh `[gates, hidden]`.
    pub fn backward(w_hh: &'a [T], gates: usize, hidden: usize, steps: usize) -> Self {
        Self::of(MatRef::row_major(w_hh, gates, hidden), steps)
    }

    fn of(b: MatRef<'a, T>, steps: usize) -> Self {
        if steps > 1 {
            Recurrence::Packed(PackedMatrix::new(b))
        } else {
            Recurrence::Direct(b)
        }
    }

    /// `out` `[batch, cols]` ← `input`·B (+ `out` if `accumulate`), reading the first
    /// `rows(B)` columns of the `[batch, in_stride]` rows of `input`, writing the first
    /// `cols(B)` columns of the `[batch, out_stride]` rows of `out`.
    pub fn step(
        &self,
        input: &[T],
        in_stride: usize,
        batch: usize,
        out: &mut [T],
        out_stride: usize,
        accumulate: bool,
    ) {
        let rows = match self {
            Recurrence::Packed(p) => p.rows(),
            Recurrence::Direct(b) => b.rows,
        };
        let a = MatRef {
            data: input,
            rows: batch,
            cols: rows,
            row_stride: in_stride,
            col_stride: 1,
        };
        match self {
            Recurrence::Packed(p) => p.mul_into(a, out, out_stride, accumulate),
            Recurrence::Direct(b) => {
                let beta = if accumulate { T::one() } else { T::zero() };
                gemm(T::one(), a, *b, beta, out, out_stride)
            }
        }
    }
}
