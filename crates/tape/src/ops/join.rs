//! Joining and cutting along an axis: concat, stack, slice, and chunk/split built on slice.

use crate::shape::{numel, split_at_axis, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};
use std::ops::Range;

/// Concatenation along an axis; inputs viewed as [outer, n_k, inner]. `stack` is the same
/// op with n_k = 1 and a new axis in the output shape.
struct Concat {
    name: &'static str,
    axis: usize,
    /// When stacking, the output gets a new axis of size `inputs.len()` at `axis`.
    stack: bool,
    outer: usize,
    inner: usize,
    sizes: Vec<usize>,
}

impl Concat {
    fn new(name: &'static str, axis: usize, stack: bool) -> Self {
        Concat {
            name,
            axis,
            stack,
            outer: 0,
            inner: 0,
            sizes: Vec::new(),
        }
    }
}

impl<T: Element> Op<T> for Concat {
    fn name(&self) -> &'static str {
        self.name
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        assert!(
            !inputs.is_empty(),
            "{}: needs at least one tensor",
            self.name
        );
        let first = inputs[0].shape();
        for x in inputs {
            let s = x.shape();
            let same = if self.stack {
                s == first
            } else {
                s.len() == first.len()
                    && self.axis < s.len()
                    && s.iter()
                        .zip(first)
                        .enumerate()
                        .all(|(i, (a, b))| i == self.axis || a == b)
            };
            assert!(
                same,
                "{}: shapes {first:?} and {s:?} differ outside axis {}",
                self.name, self.axis
            );
        }
        let mut shape = Shape::from_slice(first);
        if self.stack {
            assert!(
                self.axis <= first.len(),
                "stack: axis {} out of range for shape {first:?}",
                self.axis
            );
            shape.insert(self.axis, 1);
        }
        let (outer, _, inner) = split_at_axis(self.name, &shape, self.axis);
        self.outer = outer;
        self.inner = inner;
        self.sizes = inputs
            .iter()
            .map(|x| x.numel() / (outer * inner).max(1))
            .collect();
        shape[self.axis] = self.sizes.iter().sum();
        let total = shape[self.axis];
        let mut out = Tensor::zeros(&shape);
        let o = out.data_mut();
        let mut offset = 0;
        for (x, &n) in inputs.iter().zip(&self.sizes) {
            for p in 0..outer {
                let dst = (p * total + offset) * inner;
                o[dst..dst + n * inner]
                    .copy_from_slice(&x.data()[p * n * inner..(p + 1) * n * inner]);
            }
            offset += n;
        }
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let g = ctx.grad_output().data();
        let total: usize = self.sizes.iter().sum();
        let mut offset = 0;
        for (k, &n) in self.sizes.iter().enumerate() {
            if let Some(gx) = ctx.grad_input(k) {
                for p in 0..self.outer {
                    let src = (p * total + offset) * self.inner;
                    let dst = &mut gx[p * n * self.inner..(p + 1) * n * self.inner];
                    dst.iter_mut()
                        .zip(&g[src..src + n * self.inner])
                        .for_each(|(d, &s)| *d += s);
                }
            }
            offset += n;
        }
    }
}

/// Elements `start..start+len` along an axis.
struct Slice {
    axis: usize,
    start: usize,
    len: usize,
    /// Whether the slice is the input's leading elements (`0..len` along the first axis, or
    /// an axis after only 1s): the tape then extends the output's gradient with zeros
    /// itself (`Op::is_view`). Any slice along such an axis shares the input's storage.
    leading: bool,
}

impl Slice {
    /// (outer, full size along the axis, inner).
    fn view(&self, shape: &[usize]) -> (usize, usize, usize) {
        split_at_axis("slice", shape, self.axis)
    }
}

impl<T: Element> Op<T> for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (outer, n, inner) = self.view(x.shape());
        assert!(
            self.start + self.len <= n,
            "slice: range {}..{} out of bounds for axis {} of shape {:?}",
            self.start,
            self.start + self.len,
            self.axis,
            x.shape()
        );
        let mut shape = Shape::from_slice(x.shape());
        shape[self.axis] = self.len;
        self.leading = outer == 1 && self.start == 0;
        if outer == 1 {
            // A contiguous run of the input's values: shared, not copied.
            return x.window(self.start * inner, &shape);
        }
        let mut data = Vec::with_capacity(numel(&shape));
        for p in 0..outer {
            let s = (p * n + self.start) * inner;
            data.extend_from_slice(&x.data()[s..s + self.len * inner]);
        }
        Tensor::from_vec(data, &shape)
    }

    /// The tape extends a leading slice's gradient with zeros without calling this (see
    /// `is_view`); the same sum for anything that does call it.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (outer, n, inner) = self.view(ctx.input(0).shape());
        let g = ctx.grad_output().data();
        let Some(gx) = ctx.grad_input(0) else { return };
        let run = self.len * inner;
        for p in 0..outer {
            let d = (p * n + self.start) * inner;
            gx[d..d + run]
                .iter_mut()
                .zip(&g[p * run..(p + 1) * run])
                .for_each(|(a, &b)| *a += b);
        }
    }

    fn is_view(&self) -> bool {
        self.leading
    }
}

/// Concatenates variables along an existing axis.
pub fn concat<'t, T: Element>(vars: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
    assert!(!vars.is_empty(), "concat: needs at least one variable");
    vars[0]
        .tape()
        .apply(Concat::new("concat", axis, false), vars)
}

/// Stacks same-shaped variables along a new axis.
pub fn stack<'t, T: Element>(vars: &[Var<'t, T>], axis: usize) -> Var<'t, T> {
    assert!(!vars.is_empty(), "stack: needs at least one variable");
    vars[0].tape().apply(Concat::new("stack", axis, true), vars)
}

impl<'t, T: Element> Var<'t, T> {
    /// The elements in `range` along `axis`: a view that shares the input's storage along the
    /// first axis (or an axis after only 1s), a copy along any other.
    pub fn slice(self, axis: usize, range: Range<usize>) -> Var<'t, T> {
        assert!(
            range.start <= range.end,
            "slice: empty or reversed range {range:?}"
        );
        self.tape().apply(
            Slice {
                axis,
                start: range.start,
                len: range.end - range.start,
                leading: false,
            },
            &[self],
        )
    }

    /// Splits along `axis` into pieces of the given sizes, which must add up to the axis.
    pub fn split(self, sizes: &[usize], axis: usize) -> Vec<Var<'t, T>> {
        let shape = self.shape();
        let (_, n, _) = split_at_axis("split", &shape, axis);
        assert_eq!(
            sizes.iter().sum::<usize>(),
            n,
            "split: sizes {sizes:?} do not add up to axis {axis} of shape {:?}",
            shape.as_slice()
        );
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                start += len;
                self.slice(axis, start - len..start)
            })
            .collect()
    }

    /// Splits along `axis` into `chunks` equal pieces (PyTorch's `chunk` with an exact split).
    pub fn chunk(self, chunks: usize, axis: usize) -> Vec<Var<'t, T>> {
        let shape = self.shape();
        let (_, n, _) = split_at_axis("chunk", &shape, axis);
        assert!(
            chunks > 0 && n % chunks == 0,
            "chunk: axis {axis} of shape {:?} does not split into {chunks} equal pieces",
            shape.as_slice()
        );
        self.split(&vec![n / chunks; chunks], axis)
    }
}

#[cfg(test)]
mod tests {
    use super::{concat, stack};
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn joins_and_cuts_pass_gradcheck() {
        for axis in 0..3 {
            let mut a = vec![2, 3, 4];
            a[axis] = 1;
            check_grad(&[&[2, 3, 4], &a], move |_, v| concat(&[v[0], v[1]], axis));
            check_grad(&[&[2, 3, 4], &[2, 3, 4]], move |_, v| {
                stack(&[v[0], v[1], v[0]], axis)
            });
            check_grad(&[&[2, 3, 4]], move |_, v| v[0].slice(axis, 1..2));
        }
        check_grad(&[&[2, 3, 4]], |_, v| stack(&[v[0]], 3));
        check_grad(&[&[3, 8]], |_, v| {
            let c = v[0].chunk(4, 1);
            c[0] * c[1] + c[2] * c[3].tanh()
        });
        check_grad(&[&[5, 2]], |_, v| {
            let s = v[0].split(&[2, 3], 0);
            s[0].sum() * s[1].sum()
        });
    }

    /// Slices along the first axis share their input's storage; a leading one's gradient is
    /// the output's extended with zeros, any other's is added at its place, both to whatever
    /// else the input gets.
    #[test]
    fn first_axis_slices_are_views_with_the_right_gradient() {
        check_grad(&[&[4, 3]], |_, v| {
            v[0].slice(0, 0..2) * 3.0 + v[0].slice(0, 1..3)
        });
        check_grad(&[&[5, 3]], |_, v| {
            let (a, b) = (v[0].slice(0, 1..3), v[0].slice(0, 3..5));
            a.tanh() * b + a.matmul(b.t()).sum() + v[0].slice(0, 2..4)
        });
        check_grad(&[&[1, 5, 2]], |_, v| {
            let head = v[0].slice(1, 0..3);
            head * head + v[0].slice(1, 0..1).sum()
        });
        check_grad(&[&[6]], |_, v| v[0].slice(0, 0..6).tanh() * v[0]);
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f32>::from_vec(
            (0..6).map(|v| v as f32).collect(),
            &[3, 2],
        ));
        let head = x.slice(0, 0..2).to_tensor();
        assert_eq!(head.shape(), &[2, 2]);
        assert_eq!(head.data(), &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(head.clone().into_vec(), vec![0.0, 1.0, 2.0, 3.0]);
        let tail = x.slice(0, 1..3);
        assert_eq!(tail.to_tensor().data(), &[2.0, 3.0, 4.0, 5.0]);
        // As the right-hand matrix of a product (packed from its own values), both ways.
        let ones = tape.constant(Tensor::ones(&[2, 2]));
        assert_eq!(ones.matmul(tail).to_tensor().data(), &[6.0, 8.0, 6.0, 8.0]);
        assert_eq!(
            ones.linear(tail, None).to_tensor().data(),
            &[5.0, 9.0, 5.0, 9.0]
        );
    }

    #[test]
    fn concat_values() {
        let tape = Tape::new();
        let a = tape.constant(Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]));
        let b = tape.constant(Tensor::from_vec(vec![5.0, 6.0], &[2, 1]));
        let c = concat(&[a, b], 1).to_tensor();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.data(), &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
        let s = stack(&[b, b], 0).to_tensor();
        assert_eq!(s.shape(), &[2, 2, 1]);
    }

    #[test]
    #[should_panic(expected = "concat: shapes [2, 2] and [3, 1] differ outside axis 1")]
    fn concat_mismatch_names_shapes() {
        let tape = Tape::<f32>::new();
        let a = tape.constant(Tensor::zeros(&[2, 2]));
        let b = tape.constant(Tensor::zeros(&[3, 1]));
        let _ = concat(&[a, b], 1);
    }

    #[test]
    #[should_panic(expected = "chunk: axis 1 of shape [2, 5] does not split into 2 equal pieces")]
    fn chunk_uneven_panics() {
        let tape = Tape::<f32>::new();
        let _ = tape.constant(Tensor::zeros(&[2, 5])).chunk(2, 1);
    }
}
