//! The recurrent product of the fused kernels, h·W_hhᵀ forward and ∂g·W_hh backward, for one
//! direction over a whole sequence: the weights are set up once and reused by every step.

use recur_tape::kernels::{gemm, MatRef};
use recur_tape::Element;

/// `weight_hh` `[gates, hidden]` for the T steps of one sequence.
pub(super) struct Recurrence<'a, T> {
    w_hh: &'a [T],
    gates: usize,
    hidden: usize,
}

impl<'a, T: Element> Recurrence<'a, T> {
    pub fn new(w_hh: &'a [T], gates: usize, hidden: usize) -> Self {
        Recurrence {
            w_hh,
            gates,
            hidden,
        }
    }

    /// `out` `[batch, gates]` ← h·W_hhᵀ, where h is the first `hidden` columns of the
    /// `[batch, stride]` rows of `state`.
    pub fn forward(&self, state: &[T], stride: usize, batch: usize, out: &mut [T]) {
        let h = MatRef {
            data: state,
            rows: batch,
            cols: self.hidden,
            row_stride: stride,
            col_stride: 1,
        };
        let w_t = MatRef::row_major(self.w_hh, self.gates, self.hidden).t();
        gemm(T::one(), h, w_t, T::zero(), out, self.gates);
    }

    /// The first `hidden` columns of the `[batch, stride]` rows of `d_state` += d_g·W_hh,
    /// for d_g `[batch, gates]`.
    pub fn backward(&self, d_g: &[T], batch: usize, d_state: &mut [T], stride: usize) {
        let w = MatRef::row_major(self.w_hh, self.gates, self.hidden);
        gemm(
            T::one(),
            MatRef::row_major(d_g, batch, self.gates),
            w,
            T::one(),
            d_state,
            stride,
        );
    }
}
