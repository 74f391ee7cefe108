//! Reductions: sum and mean of all elements, or along one axis (which is removed).

use crate::kernels::simd::widest;
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

/// The sum of a contiguous run, in 16 lanes (each summing every 16th element, in order)
/// added pairwise at the end: a fixed order, whatever the machine's vector width.
fn sum_run<T: Element>(xs: &[T]) -> T {
    const LANES: usize = 16;
    widest(
        #[inline(always)]
        || {
            let mut lanes = [T::zero(); LANES];
            let mut chunks = xs.chunks_exact(LANES);
            for c in &mut chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += v;
                }
            }
            let mut width = LANES;
            while width > 1 {
                width /= 2;
                for i in 0..width {
                    lanes[i] += lanes[i + width];
                }
            }
            chunks.remainder().iter().fold(lanes[0], |s, &v| s + v)
        },
    )
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
