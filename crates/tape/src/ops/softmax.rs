//! softmax and log_softmax along the last axis, numerically stable (max subtracted).

use crate::kernels::simd::widest;
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// Folds `xs` with `f` in 8 independent lanes (which vectorize), then folds the lanes.
/// Inlined, as `shifted_exp`, into the passes that run for the widest vectors.
#[inline(always)]
fn lanes<T: Element>(xs: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, v);
        }
    }
    let folded = tail.iter().fold(init, |a, &v| f(a, v));
    acc.iter().fold(folded, |a, &v| f(a, v))
}

/// Appends exp(row − max) to `out`; returns max and Σ exp(row − max).
#[inline(always)]
fn shifted_exp<T: Element>(row: &[T], out: &mut Vec<T>) -> (T, T) {
    let max = lanes(row, T::neg_infinity(), T::max);
    let start = out.len();
    out.extend(row.iter().map(|&v| v - max));
    let shifted = &mut out[start..];
    T::exp_slice(shifted);
    (max, lanes(shifted, T::zero(), |a, b| a + b))
}

/// Softmax of each row of `x` (rows of `width`), written once into a new vector (no zero
/// fill first: for a large vocabulary this is the step's largest tensor), and each row's
/// log normaliser, max + ln Σ exp(x − max), so that log p = x − normaliser.
/// Like every pass here it runs compiled for the CPU's widest vectors (the same arithmetic in
/// the same order: the same bits on every path).
pub(crate) fn softmax_rows<T: Element>(x: &[T], width: usize) -> (Vec<T>, Vec<T>) {
    widest(
        #[inline(always)]
        || {
            let mut probs = Vec::with_capacity(x.len());
            let mut norms = Vec::with_capacity(x.len() / width.max(1));
            // A plain loop: an iterator's fold might not be inlined, and would then run
            // compiled for the baseline target.
            for row in x.chunks_exact(width) {
                let start = probs.len();
                let (max, sum) = shifted_exp(row, &mut probs);
                let inv = T::one() / sum;
                probs[start..].iter_mut().for_each(|v| *v *= inv);
                norms.push(max + sum.ln());
            }
            (probs, norms)
        },
    )
}

/// log_softmax of each row of `x` (rows of `width`), as a new vector.
fn log_softmax_rows<T: Element>(x: &[T], width: usize) -> Vec<T> {
    widest(
        #[inline(always)]
        || {
            let mut out = Vec::with_capacity(x.len());
            let mut e = Vec::with_capacity(width);
            for row in x.chunks_exact(width) {
                e.clear();
                let (max, sum) = shifted_exp(row, &mut e);
                let lse = sum.ln();
                out.extend(row.iter().map(|&v| v - max - lse));
            }
            out
        },
    )
}

fn last_dim<T: Element>(op: &str, x: &Tensor<T>) -> usize {
    assert!(
        x.ndim() >= 1 && x.numel() > 0,
        "{op}: needs a non-empty tensor, got shape {:?}",
        x.shape()
    );
    x.shape()[x.ndim() - 1]
}

struct LogSoftmax;

impl<T: Element> Op<T> for LogSoftmax {
    fn name(&self) -> &'static str {
        "log_softmax"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let out = log_softmax_rows(x.data(), last_dim("log_softmax", x));
        Tensor::from_vec(out, x.shape())
    }

    /// gx = g − softmax · Σg, per row.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let mut probs = Vec::new();
        backward_rows(
            ctx,
            #[inline(always)]
            |yr, gr, xr| {
                let total = gr.iter().fold(T::zero(), |s, &v| s + v);
                probs.clear();
                probs.extend_from_slice(yr);
                T::exp_slice(&mut probs);
                for ((x, &p), &gv) in xr.iter_mut().zip(&probs).zip(gr) {
                    *x += gv - p * total;
                }
            },
        )
    }
}

/// Calls `f(y, g, gx)` on each row of an op's output, its gradient and the input's gradient
/// accumulator, compiled for the CPU's widest vectors (`f` is inlined there).
#[inline(always)]
fn backward_rows<T: Element>(
    ctx: &mut BackwardCtx<'_, T>,
    mut f: impl FnMut(&[T], &[T], &mut [T]),
) {
    let width = ctx.output().shape()[ctx.output().ndim() - 1];
    let (y, g) = (ctx.output().data(), ctx.grad_output().data());
    let Some(gx) = ctx.grad_input(0) else { return };
    widest(
        #[inline(always)]
        || {
            for ((yr, gr), xr) in y
                .chunks_exact(width)
                .zip(g.chunks_exact(width))
                .zip(gx.chunks_exact_mut(width))
            {
                f(yr, gr, xr);
            }
        },
    )
}

struct Softmax;

impl<T: Element> Op<T> for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (probs, _) = softmax_rows(x.data(), last_dim("softmax", x));
        Tensor::from_vec(probs, x.shape())
    }

    /// gx = y · (g − Σ g·y), per row.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        backward_rows(
            ctx,
            #[inline(always)]
            |yr, gr, xr| {
                let dot = yr.iter().zip(gr).fold(T::zero(), |s, (&a, &b)| s + a * b);
                for ((x, &yv), &gv) in xr.iter_mut().zip(yr).zip(gr) {
                    *x += yv * (gv - dot);
                }
            },
        )
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Softmax along the last axis.
    pub fn softmax(self) -> Var<'t, T> {
        self.tape().apply(Softmax, &[self])
    }

    /// log(softmax(x)) along the last axis, computed stably.
    pub fn log_softmax(self) -> Var<'t, T> {
        self.tape().apply(LogSoftmax, &[self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn softmaxes_pass_gradcheck() {
        for shape in [&[5][..], &[3, 4], &[2, 3, 4]] {
            check_grad(&[shape], |_, v| (v[0] * 3.0).softmax());
            check_grad(&[shape], |_, v| (v[0] * 3.0).log_softmax());
        }
    }

    #[test]
    fn stable_for_large_inputs() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f32>::from_vec(vec![1000.0, 1000.0, -1000.0], &[3]));
        let s = x.softmax().to_tensor();
        assert_eq!(s.data(), &[0.5, 0.5, 0.0]);
        let l = x.log_softmax().to_tensor();
        approx::assert_relative_eq!(l.data()[0], -std::f32::consts::LN_2);
    }
}
