//! Reductions: sum and mean of all elements, or along one axis (removed, or kept as a 1 with
//! `keepdim`, as PyTorch's `dim`/`keepdim` arguments); max and variance along an axis.

use crate::kernels::simd::{lane_sum, widest};
use crate::shape::{split_at_axis, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// Sum over all elements (axis `None`) or over one axis, scaled by `scale` (1/n for a mean).
struct Reduce<T> {
    axis: Option<usize>,
    scale: T,
    name: &'static str,
}

impl<T: Element> Reduce<T> {
    /// The input viewed as [outer, n, inner], reduced over n.
    fn view(&self, shape: &[usize]) -> (usize, usize, usize) {
        match self.axis {
            None => (1, shape.iter().product(), 1),
            Some(axis) => split_at_axis(self.name, shape, axis),
        }
    }
}

impl<T: Element> Op<T> for Reduce<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (outer, n, inner) = self.view(x.shape());
        let shape: Shape = match self.axis {
            None => Shape::new(),
            Some(axis) => x
                .shape()
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != axis)
                .map(|(_, &d)| d)
                .collect(),
        };
        let mut out = Tensor::zeros(&shape);
        let (xd, o) = (x.data(), out.data_mut());
        if inner == 1 {
            // Contiguous runs: summed in vector lanes, not one element at a time.
            for (d, run) in o.iter_mut().zip(xd.chunks_exact(n.max(1))) {
                *d = sum_run(run) * self.scale;
            }
            return out;
        }
        for p in 0..outer {
            let dst = &mut o[p * inner..(p + 1) * inner];
            for j in 0..n {
                let src = &xd[(p * n + j) * inner..(p * n + j + 1) * inner];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
            }
            dst.iter_mut().for_each(|d| *d *= self.scale);
        }
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (outer, n, inner) = self.view(ctx.input(0).shape());
        let g = ctx.grad_output().data();
        if inner == 1 {
            let scale = self.scale;
            let values = g.iter().flat_map(|&g| std::iter::repeat_n(g * scale, n));
            ctx.accumulate_grad_input(0, values);
            return;
        }
        let Some(gx) = ctx.grad_input(0) else { return };
        for p in 0..outer {
            let src = &g[p * inner..(p + 1) * inner];
            for j in 0..n {
                let dst = &mut gx[(p * n + j) * inner..(p * n + j + 1) * inner];
                dst.iter_mut()
                    .zip(src)
                    .for_each(|(d, &s)| *d += s * self.scale);
            }
        }
    }
}

/// The sum of a contiguous run in a fixed order (see [`lane_sum`]).
fn sum_run<T: Element>(xs: &[T]) -> T {
    widest(
        #[inline(always)]
        || lane_sum(xs, xs, |x, _| x),
    )
}

/// The largest value along an axis; backward sends the gradient to the first largest
/// element of each run (the index `torch.max(x, dim)` returns).
struct MaxAxis {
    axis: usize,
    /// Per output element, the input element it took.
    taken: Vec<usize>,
}

impl<T: Element> Op<T> for MaxAxis {
    fn name(&self) -> &'static str {
        "max_dim"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (outer, n, inner) = split_at_axis("max_dim", x.shape(), self.axis);
        assert!(
            n > 0,
            "max_dim: axis {} of {:?} is empty",
            self.axis,
            x.shape()
        );
        let mut shape = Shape::from_slice(x.shape());
        shape.remove(self.axis);
        let xd = x.data();
        let (mut values, mut taken) = (
            Vec::with_capacity(outer * inner),
            Vec::with_capacity(outer * inner),
        );
        for p in 0..outer {
            for q in 0..inner {
                let at = |j: usize| (p * n + j) * inner + q;
                let best = (1..n).fold(
                    at(0),
                    |best, j| if xd[at(j)] > xd[best] { at(j) } else { best },
                );
                values.push(xd[best]);
                taken.push(best);
            }
        }
        self.taken = taken;
        Tensor::from_vec(values, &shape)
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let g = ctx.grad_output().data();
        if let Some(gx) = ctx.grad_input(0) {
            for (&i, &g) in self.taken.iter().zip(g) {
                gx[i] += g;
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Sum of all elements, as a scalar.
    pub fn sum(self) -> Var<'t, T> {
        self.tape().apply(
            Reduce {
                axis: None,
                scale: T::one(),
                name: "sum",
            },
            &[self],
        )
    }

    /// Mean of all elements, as a scalar.
    pub fn mean(self) -> Var<'t, T> {
        let n = self.value().numel();
        self.tape().apply(
            Reduce {
                axis: None,
                scale: T::one() / T::of(n as f64),
                name: "mean",
            },
            &[self],
        )
    }

    /// Sum along `axis`, which is removed from the shape.
    pub fn sum_axis(self, axis: usize) -> Var<'t, T> {
        self.tape().apply(
            Reduce {
                axis: Some(axis),
                scale: T::one(),
                name: "sum_axis",
            },
            &[self],
        )
    }

    /// Mean along `axis`, which is removed from the shape.
    pub fn mean_axis(self, axis: usize) -> Var<'t, T> {
        let shape = self.shape();
        let (_, n, _) = split_at_axis("mean_axis", &shape, axis);
        let scale = T::one() / T::of(n as f64);
        self.tape().apply(
            Reduce {
                axis: Some(axis),
                scale,
                name: "mean_axis",
            },
            &[self],
        )
    }

    /// `self` with `axis` put back as a 1 when `keepdim`, after a reduction removed it.
    fn keep_axis(self, axis: usize, keepdim: bool, input: &[usize]) -> Var<'t, T> {
        if !keepdim {
            return self;
        }
        let mut shape = Shape::from_slice(input);
        shape[axis] = 1;
        self.reshape(&shape)
    }

    /// Sum along `axis`, kept as a 1 if `keepdim` (PyTorch's `sum(dim, keepdim)`).
    pub fn sum_dim(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        self.sum_axis(axis).keep_axis(axis, keepdim, &shape)
    }

    /// Mean along `axis`, kept as a 1 if `keepdim`.
    pub fn mean_dim(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        self.mean_axis(axis).keep_axis(axis, keepdim, &shape)
    }

    /// The largest value along `axis`, kept as a 1 if `keepdim` (the values of PyTorch's
    /// `max(dim, keepdim)`; the gradient goes to the first largest element).
    pub fn max_dim(self, axis: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        let max = self.tape().apply(
            MaxAxis {
                axis,
                taken: Vec::new(),
            },
            &[self],
        );
        max.keep_axis(axis, keepdim, &shape)
    }

    /// Variance along `axis`: Σ(x − mean)² / (n − correction), kept as a 1 if `keepdim`
    /// (PyTorch's `var(dim, correction, keepdim)`; correction 1 is the unbiased estimate).
    pub fn var_dim(self, axis: usize, correction: usize, keepdim: bool) -> Var<'t, T> {
        let shape = self.shape();
        let (_, n, _) = split_at_axis("var_dim", &shape, axis);
        assert!(
            n > correction,
            "var_dim: axis {axis} of {:?} has {n} values, not more than the correction {correction}",
            shape.as_slice()
        );
        let centred = self - self.mean_dim(axis, true);
        (centred * centred).sum_dim(axis, keepdim) * (T::one() / T::of((n - correction) as f64))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn reductions_pass_gradcheck() {
        check_grad(&[&[3, 4]], |_, v| v[0].sum());
        check_grad(&[&[3, 4]], |_, v| v[0].mean());
        // Runs longer than the 16 lanes, with a remainder.
        check_grad(&[&[2, 37]], |_, v| v[0].sum());
        check_grad(&[&[2, 37]], |_, v| v[0].mean_axis(1));
        for axis in 0..3 {
            check_grad(&[&[2, 3, 4]], move |_, v| v[0].sum_axis(axis));
            check_grad(&[&[2, 3, 4]], move |_, v| v[0].mean_axis(axis));
        }
    }

    #[test]
    fn keepdim_max_and_var_pass_gradcheck() {
        for axis in 0..3 {
            for keepdim in [false, true] {
                check_grad(&[&[2, 3, 4]], move |_, v| v[0].sum_dim(axis, keepdim));
                check_grad(&[&[2, 3, 4]], move |_, v| v[0].mean_dim(axis, keepdim));
                check_grad(&[&[2, 3, 4]], move |_, v| v[0].max_dim(axis, keepdim));
                check_grad(&[&[2, 3, 4]], move |_, v| v[0].var_dim(axis, 1, keepdim));
                check_grad(&[&[2, 3, 4]], move |_, v| v[0].var_dim(axis, 0, keepdim));
            }
        }
    }

    #[test]
    fn keepdim_max_and_var_values() {
        let tape = Tape::new();
        let x = tape.var(Tensor::<f64>::from_vec(
            vec![1.0, 5.0, 5.0, 2.0, 0.0, 4.0],
            &[2, 3],
        ));
        assert_eq!(x.sum_dim(1, true).shape().as_slice(), &[2, 1]);
        assert_eq!(x.mean_dim(0, true).to_tensor().data(), &[1.5, 2.5, 4.5]);
        let m = x.max_dim(1, true);
        assert_eq!(
            (m.shape().as_slice(), m.to_tensor().data()),
            (&[2, 1][..], &[5.0, 4.0][..])
        );
        // Ties: the gradient goes to the first largest, as torch.max(x, dim) picks it.
        assert_eq!(
            tape.backward(m.sum()).wrt(x).data(),
            &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        let v = x.var_dim(1, 1, false).to_tensor();
        approx::assert_relative_eq!(v.data()[0], 16.0 / 3.0, max_relative = 1e-15);
        assert_eq!(v.data()[1], 4.0);
        let biased = x.var_dim(1, 0, false).to_tensor();
        approx::assert_relative_eq!(biased.data()[1], 8.0 / 3.0, max_relative = 1e-15);
    }

    #[test]
    fn reduction_values() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f64>::from_vec(
            (0..6).map(f64::from).collect(),
            &[2, 3],
        ));
        assert_eq!(x.sum().item(), 15.0);
        assert_eq!(x.mean().item(), 2.5);
        assert_eq!(x.sum_axis(0).to_tensor().data(), &[3.0, 5.0, 7.0]);
        assert_eq!(x.mean_axis(1).to_tensor().data(), &[1.0, 4.0]);
        assert_eq!(x.sum_axis(1).shape().as_slice(), &[2]);
        let long = tape.constant(Tensor::<f64>::from_vec(
            (0..1003).map(f64::from).collect(),
            &[1003],
        ));
        assert_eq!(long.sum().item(), 1002.0 * 1003.0 / 2.0);
    }

    #[test]
    #[should_panic(expected = "sum_axis: axis 2 out of range for shape [2, 3]")]
    fn bad_axis_names_op_and_shape() {
        let tape = Tape::<f32>::new();
        let _ = tape.constant(Tensor::zeros(&[2, 3])).sum_axis(2);
    }
}
