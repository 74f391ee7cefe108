//! The recurrent product of the fused kernels, h·W_hhᵀ forward and ∂g·W_hh backward. The
//! weights come packed from the tensor (packed on first use, kept until the optimizer changes
//! them), so every step streams the packed panels. In mixed precision (bf16 weights, rounded
//! by the caller) each step's input rows are rounded to bf16 first, by `operand`, which the
//! direction runs use for the operands of their other products too (in f64: f32's bf16
//! kernels round their operands themselves).

use recur_tape::kernels::bf16::{extend_rounded_bf16, round_bf16};
use recur_tape::kernels::packed::runs_bf16_kernels;
use recur_tape::kernels::{MatRef, PackedMatrix, Precision};
use recur_tape::{Element, Tensor};
use std::borrow::Cow;

/// `weight_hh` `[gates, hidden]` as the right-hand side of the per-step product.
pub(super) struct Recurrence<'a, T: Element> {
    packed: Cow<'a, PackedMatrix<T>>,
    /// Round each step's input to bf16 (into `rounded`) before the product.
    bf16: bool,
    rounded: Vec<T>,
}

impl<'a, T: Element> Recurrence<'a, T> {
    /// For forward steps: B = W_hhᵀ `[hidden, gates]`.
    pub fn forward(w_hh: &'a Tensor<T>, bf16: bool) -> Self {
        Recurrence {
            packed: w_hh.packed(true),
            bf16,
            rounded: Vec::new(),
        }
    }

    /// For backward steps: B = W_hh `[gates, hidden]`.
    pub fn backward(w_hh: &'a Tensor<T>, bf16: bool) -> Self {
        Recurrence {
            packed: w_hh.packed(false),
            bf16,
            rounded: Vec::new(),
        }
    }

    /// `out` `[batch, cols]` ← `input`·B (+ `out` if `accumulate`), reading the first
    /// `rows(B)` columns of the `[batch, in_stride]` rows of `input`, writing the first
    /// `cols(B)` columns of the `[batch, out_stride]` rows of `out`.
    pub fn step(
        &mut self,
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
        let a = operand(a, self.bf16, &mut self.rounded);
        self.packed.mul_into(a, out, out_stride, accumulate);
    }
}

/// `a`, or (if `bf16`) its values rounded to bf16, row-major in `scratch`: an activation
/// operand of a product in mixed precision. An f32 operand is left as it is: the bf16
/// kernels its products run round their operands themselves.
pub(super) fn operand<'b, T: Element>(
    a: MatRef<'b, T>,
    bf16: bool,
    scratch: &'b mut Vec<T>,
) -> MatRef<'b, T> {
    if !bf16 || runs_bf16_kernels::<T>(Precision::Bf16) {
        return a;
    }
    scratch.clear();
    for i in 0..a.rows {
        if a.col_stride == 1 {
            extend_rounded_bf16(scratch, &a.data[i * a.row_stride..][..a.cols]);
        } else {
            let row = (0..a.cols).map(|j| a.data[i * a.row_stride + j * a.col_stride]);
            scratch.extend(row.map(round_bf16));
        }
    }
    MatRef::row_major(scratch, a.rows, a.cols)
}
