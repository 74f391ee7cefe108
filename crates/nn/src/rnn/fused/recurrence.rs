//! The recurrent product of the fused kernels, h·W_hhᵀ forward and ∂g·W_hh backward. The
//! weights come packed from the tensor (packed on first use, kept until the optimizer changes
//! them), so every step streams the packed panels.

use recur_tape::kernels::{MatRef, PackedMatrix};
use recur_tape::{Element, Tensor};
use std::borrow::Cow;

/// `weight_hh` `[gates, hidden]` as the right-hand side of the per-step product.
pub(super) struct Recurrence<'a, T: Element> {
    packed: Cow<'a, PackedMatrix<T>>,
}

impl<'a, T: Element> Recurrence<'a, T> {
    /// For forward steps: B = W_hhᵀ `[hidden, gates]`.
    pub fn forward(w_hh: &'a Tensor<T>) -> Self {
        Recurrence {
            packed: w_hh.packed(true),
        }
    }

    /// For backward steps: B = W_hh `[gates, hidden]`.
    pub fn backward(w_hh: &'a Tensor<T>) -> Self {
        Recurrence {
            packed: w_hh.packed(false),
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
        let a = MatRef {
            data: input,
            rows: batch,
            cols: self.packed.rows(),
            row_stride: in_stride,
            col_stride: 1,
        };
        self.packed.mul_into(a, out, out_stride, accumulate);
    }
}
