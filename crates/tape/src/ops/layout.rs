//! Ops that move elements without arithmetic: transpose of two axes, and reshape (which
//! shares its input's storage and passes its gradient through).

use crate::shape::{numel, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// Copies `src` (of `shape`) with axes `d0 < d1` swapped into `dst`, adding if `accumulate`.
/// The tensor is viewed as [pre, A, mid, B, post] → [pre, B, mid, A, post].
fn swap_axes<T: Element>(
    src: &[T],
    shape: &[usize],
    d0: usize,
    d1: usize,
    dst: &mut [T],
    accumulate: bool,
) {
    let pre = numel(&shape[..d0]);
    let (a, b) = (shape[d0], shape[d1]);
    let mid = numel(&shape[d0 + 1..d1]);
    let post = numel(&shape[d1 + 1..]);
    let mut i = 0;
    for p in 0..pre {
        for j in 0..b {
            for m in 0..mid {
                for q in 0..a {
                    let s = (((p * a + q) * mid + m) * b + j) * post;
                    let run = &src[s..s + post];
                    let out = &mut dst[i..i + post];
                    if accumulate {
                        out.iter_mut().zip(run).for_each(|(o, &v)| *o += v);
                    } else {
                        out.copy_from_slice(run);
                    }
                    i += post;
                }
            }
        }
    }
}

struct Transpose {
    d0: usize,
    d1: usize,
}

impl<T: Element> Op<T> for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let mut shape = Shape::from_slice(x.shape());
        shape.swap(self.d0, self.d1);
        let mut out = Tensor::zeros(&shape);
        swap_axes(x.data(), x.shape(), self.d0, self.d1, out.data_mut(), false);
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (g, y) = (ctx.grad_output().data(), ctx.output().shape());
        if let Some(gx) = ctx.grad_input(0) {
            swap_axes(g, y, self.d0, self.d1, gx, true);
        }
    }
}

/// The same elements under a new shape.
struct Reshape(Shape);

impl<T: Element> Op<T> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        assert_eq!(
            numel(&self.0),
            x.numel(),
            "reshape: cannot view shape {:?} as {:?}",
            x.shape(),
            self.0.as_slice()
        );
        // Shares the input's storage: no copy.
        x.clone().reshape(&self.0)
    }

    /// The tape passes the gradient through without calling this (see `is_view`); the
    /// same sum for anything that does call it.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let g = ctx.grad_output().data();
        if let Some(gx) = ctx.grad_input(0) {
            gx.iter_mut().zip(g).for_each(|(a, &b)| *a += b);
        }
    }

    fn is_view(&self) -> bool {
        true
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Swaps two axes (a copy in memory).
    pub fn transpose(self, d0: usize, d1: usize) -> Var<'t, T> {
        let shape = self.shape();
        assert!(
            d0 < shape.len() && d1 < shape.len(),
            "transpose: axes ({d0}, {d1}) out of range for shape {:?}",
            shape.as_slice()
        );
        if d0 == d1 {
            return self.reshape(&shape);
        }
        let (d0, d1) = (d0.min(d1), d0.max(d1));
        self.tape().apply(Transpose { d0, d1 }, &[self])
    }

    /// Transpose of the last two axes.
    pub fn t(self) -> Var<'t, T> {
        let n = self.shape().len();
        assert!(
            n >= 2,
            "t: needs at least 2 dimensions, got shape {:?}",
            self.shape().as_slice()
        );
        self.transpose(n - 2, n - 1)
    }

    /// The same elements under a new shape.
    pub fn reshape(self, shape: &[usize]) -> Var<'t, T> {
        self.tape()
            .apply(Reshape(Shape::from_slice(shape)), &[self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn transpose_and_reshape_pass_gradcheck() {
        check_grad(&[&[3, 4]], |_, v| v[0].t());
        check_grad(&[&[2, 3, 4]], |_, v| v[0].transpose(0, 2));
        check_grad(&[&[2, 3, 4, 2]], |_, v| v[0].transpose(1, 3));
        check_grad(&[&[2, 3, 4]], |_, v| v[0].reshape(&[4, 6]));
    }

    #[test]
    fn transpose_values() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f32>::from_vec(
            (0..6).map(|v| v as f32).collect(),
            &[2, 3],
        ));
        let y = x.t().to_tensor();
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    #[should_panic(expected = "reshape: cannot view shape [2, 3] as [5]")]
    fn bad_reshape_panics_with_shapes() {
        let tape = Tape::<f32>::new();
        let _ = tape.constant(Tensor::zeros(&[2, 3])).reshape(&[5]);
    }
}
