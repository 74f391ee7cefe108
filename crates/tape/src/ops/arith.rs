//! Elementwise add, sub, mul, div with broadcasting by PyTorch's rules (gradients summed back
//! to each input's shape); negation; ops with a scalar constant; and the `+ - * /` operators on `Var`.

use crate::kernels::simd::widest;
use crate::shape::{numel, strip_leading_ones, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};
use std::ops::{Add, Div, Mul, Neg, Sub};

#[derive(Clone, Copy, Debug, PartialEq)]
enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryKind {
    fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
        }
    }
}

/// The shape of `a ∘ b` by PyTorch's rules: dimensions aligned from the right, each pair
/// equal or one of them 1 (which then repeats along the other's size).
pub(crate) fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Shape {
    if a == b {
        return Shape::from_slice(a);
    }
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|d| {
            let (x, y) = (aligned(a, rank, d), aligned(b, rank, d));
            match (x, y) {
                _ if x == y || y == 1 => x,
                (1, _) => y,
                _ => panic!(
                    "{op}: shapes {a:?} and {b:?} cannot be broadcast (aligned from the right, \
                     each pair of dimensions must be equal or 1; here {x} and {y})"
                ),
            }
        })
        .collect()
}

/// Dimension `d` of `shape` aligned from the right to `rank` dimensions (1 before its own).
fn aligned(shape: &[usize], rank: usize, d: usize) -> usize {
    let skip = rank - shape.len();
    if d < skip {
        1
    } else {
        shape[d - skip]
    }
}

/// Calls `f(i, ia, ib)` for every element `i` of the broadcast output `out`, with the
/// elements of `a` and `b` (their shapes broadcast to `out`) that it reads. Same shapes, and
/// one operand a trailing block of the other (a bias row), take direct loops.
#[inline(always)]
pub(crate) fn for_each_broadcast(
    out: &[usize],
    a: &[usize],
    b: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let (n, na, nb) = (numel(out), numel(a), numel(b));
    let trailing = |s: &[usize]| out.ends_with(strip_leading_ones(s));
    if na == n && nb == n {
        (0..n).for_each(|i| f(i, i, i));
    } else if na == n && trailing(b) {
        for c in (0..n).step_by(nb.max(1)) {
            (0..nb).for_each(|j| f(c + j, c + j, j));
        }
    } else if nb == n && trailing(a) {
        for c in (0..n).step_by(na.max(1)) {
            (0..na).for_each(|j| f(c + j, j, c + j));
        }
    } else {
        let rank = out.len();
        let (sa, sb) = (broadcast_strides(a, out), broadcast_strides(b, out));
        let mut index: Shape = smallvec::smallvec![0; rank];
        let (mut ia, mut ib) = (0, 0);
        for i in 0..n {
            f(i, ia, ib);
            // The next index in row-major order, moving the operands' offsets along.
            for d in (0..rank).rev() {
                index[d] += 1;
                ia += sa[d];
                ib += sb[d];
                if index[d] < out[d] {
                    break;
                }
                ia -= sa[d] * out[d];
                ib -= sb[d] * out[d];
                index[d] = 0;
            }
        }
    }
}

/// How far `shape`'s element moves per step along each dimension of `out` it is broadcast
/// to: its row-major stride, or 0 where it repeats (a 1, or a dimension it lacks).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Shape {
    let rank = out.len();
    let mut strides: Shape = smallvec::smallvec![0; rank];
    let mut stride = 1;
    for d in (0..rank).rev() {
        let dim = aligned(shape, rank, d);
        if dim == out[d] && dim != 1 {
            strides[d] = stride;
        }
        stride *= dim;
    }
    strides
}

struct Binary {
    kind: BinaryKind,
}

impl<T: Element> Op<T> for Binary {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast_shape(self.kind.name(), a.shape(), b.shape());
        if a.shape() == b.shape() {
            // Each value written once, into a buffer that is not zero-filled first, by a loop
            // compiled for the CPU's widest vectors.
            let pairs = a.data().iter().zip(b.data());
            let values: Vec<T> = widest(
                #[inline(always)]
                || match self.kind {
                    BinaryKind::Add => pairs.map(|(&a, &b)| a + b).collect(),
                    BinaryKind::Sub => pairs.map(|(&a, &b)| a - b).collect(),
                    BinaryKind::Mul => pairs.map(|(&a, &b)| a * b).collect(),
                    BinaryKind::Div => pairs.map(|(&a, &b)| a / b).collect(),
                },
            );
            return Tensor::from_vec(values, &shape);
        }
        let mut out = Tensor::zeros(&shape);
        let (ad, bd, o) = (a.data(), b.data(), out.data_mut());
        let (sa, sb) = (a.shape(), b.shape());
        match self.kind {
            BinaryKind::Add => {
                for_each_broadcast(&shape, sa, sb, |i, ia, ib| o[i] = ad[ia] + bd[ib])
            }
            BinaryKind::Sub => {
                for_each_broadcast(&shape, sa, sb, |i, ia, ib| o[i] = ad[ia] - bd[ib])
            }
            BinaryKind::Mul => {
                for_each_broadcast(&shape, sa, sb, |i, ia, ib| o[i] = ad[ia] * bd[ib])
            }
            BinaryKind::Div => {
                for_each_broadcast(&shape, sa, sb, |i, ia, ib| o[i] = ad[ia] / bd[ib])
            }
        }
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (a, b, y, g) = (
            ctx.input(0).data(),
            ctx.input(1).data(),
            ctx.output().data(),
            ctx.grad_output().data(),
        );
        let (so, sa, sb) = (
            ctx.output().shape(),
            ctx.input(0).shape(),
            ctx.input(1).shape(),
        );
        let (n, na, nb) = (g.len(), a.len(), b.len());
        if na == n && nb == n {
            // Same shapes: each gradient in one pass, moved in when it is the first.
            let (ga, gb) = (g.iter().zip(b), g.iter().zip(a));
            match self.kind {
                BinaryKind::Add => {
                    ctx.pass_grad_output(0);
                    ctx.pass_grad_output(1);
                }
                BinaryKind::Sub => {
                    ctx.pass_grad_output(0);
                    ctx.accumulate_grad_input(1, g.iter().map(|&g| -g));
                }
                BinaryKind::Mul => {
                    ctx.accumulate_grad_input(0, ga.map(|(&g, &b)| g * b));
                    ctx.accumulate_grad_input(1, gb.map(|(&g, &a)| g * a));
                }
                BinaryKind::Div => {
                    ctx.accumulate_grad_input(0, ga.map(|(&g, &b)| g / b));
                    let gy = g.iter().zip(y).zip(b);
                    ctx.accumulate_grad_input(1, gy.map(|((&g, &y), &b)| -(g * y / b)));
                }
            }
            return;
        }
        // Each input's gradient summed back over the dimensions it was broadcast along.
        if let Some(ga) = ctx.grad_input(0) {
            match self.kind {
                BinaryKind::Add | BinaryKind::Sub => {
                    for_each_broadcast(so, sa, sb, |i, ia, _| ga[ia] += g[i])
                }
                BinaryKind::Mul => {
                    for_each_broadcast(so, sa, sb, |i, ia, ib| ga[ia] += g[i] * b[ib])
                }
                BinaryKind::Div => {
                    for_each_broadcast(so, sa, sb, |i, ia, ib| ga[ia] += g[i] / b[ib])
                }
            }
        }
        if let Some(gb) = ctx.grad_input(1) {
            match self.kind {
                BinaryKind::Add => for_each_broadcast(so, sa, sb, |i, _, ib| gb[ib] += g[i]),
                BinaryKind::Sub => for_each_broadcast(so, sa, sb, |i, _, ib| gb[ib] -= g[i]),
                BinaryKind::Mul => {
                    for_each_broadcast(so, sa, sb, |i, ia, ib| gb[ib] += g[i] * a[ia])
                }
                BinaryKind::Div => {
                    for_each_broadcast(so, sa, sb, |i, _, ib| gb[ib] -= g[i] * y[i] / b[ib])
                }
            }
        }
    }
}

/// `x + c`, `x · c` or `c / x` for a constant `c`.
enum ScalarOp<T> {
    Add(T),
    Mul(T),
    DivInto(T),
}

impl<T: Element> Op<T> for ScalarOp<T> {
    fn name(&self) -> &'static str {
        match self {
            ScalarOp::Add(_) => "add_scalar",
            ScalarOp::Mul(_) => "mul_scalar",
            ScalarOp::DivInto(_) => "scalar_div",
        }
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        match *self {
            ScalarOp::Add(c) => inputs[0].map(|x| x + c),
            ScalarOp::Mul(c) => inputs[0].map(|x| x * c),
            ScalarOp::DivInto(c) => inputs[0].map(|x| c / x),
        }
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (x, y, g) = (
            ctx.input(0).data(),
            ctx.output().data(),
            ctx.grad_output().data(),
        );
        let Some(gx) = ctx.grad_input(0) else { return };
        for i in 0..gx.len() {
            gx[i] += match *self {
                ScalarOp::Add(_) => g[i],
                ScalarOp::Mul(c) => g[i] * c,
                ScalarOp::DivInto(_) => -g[i] * y[i] / x[i],
            };
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    fn binary(self, other: Var<'t, T>, kind: BinaryKind) -> Var<'t, T> {
        self.tape().apply(Binary { kind }, &[self, other])
    }

    fn scalar_op(self, op: ScalarOp<T>) -> Var<'t, T> {
        self.tape().apply(op, &[self])
    }

    /// `x²`, elementwise.
    pub fn square(self) -> Var<'t, T> {
        self * self
    }
}

impl<'t, T: Element> Add for Var<'t, T> {
    type Output = Var<'t, T>;
    fn add(self, rhs: Self) -> Self {
        self.binary(rhs, BinaryKind::Add)
    }
}
impl<'t, T: Element> Sub for Var<'t, T> {
    type Output = Var<'t, T>;
    fn sub(self, rhs: Self) -> Self {
        self.binary(rhs, BinaryKind::Sub)
    }
}
impl<'t, T: Element> Mul for Var<'t, T> {
    type Output = Var<'t, T>;
    fn mul(self, rhs: Self) -> Self {
        self.binary(rhs, BinaryKind::Mul)
    }
}
impl<'t, T: Element> Div for Var<'t, T> {
    type Output = Var<'t, T>;
    fn div(self, rhs: Self) -> Self {
        self.binary(rhs, BinaryKind::Div)
    }
}
impl<'t, T: Element> Neg for Var<'t, T> {
    type Output = Var<'t, T>;
    fn neg(self) -> Self {
        self.scalar_op(ScalarOp::Mul(-T::one()))
    }
}
impl<'t, T: Element> Add<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn add(self, c: T) -> Self {
        self.scalar_op(ScalarOp::Add(c))
    }
}
impl<'t, T: Element> Sub<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn sub(self, c: T) -> Self {
        self.scalar_op(ScalarOp::Add(-c))
    }
}
impl<'t, T: Element> Mul<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn mul(self, c: T) -> Self {
        self.scalar_op(ScalarOp::Mul(c))
    }
}
impl<'t, T: Element> Div<T> for Var<'t, T> {
    type Output = Var<'t, T>;
    fn div(self, c: T) -> Self {
        self.scalar_op(ScalarOp::Mul(T::one() / c))
    }
}

macro_rules! scalar_lhs {
    ($t:ty) => {
        impl<'t> Add<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn add(self, x: Var<'t, $t>) -> Var<'t, $t> {
                x + self
            }
        }
        impl<'t> Sub<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn sub(self, x: Var<'t, $t>) -> Var<'t, $t> {
                -x + self
            }
        }
        impl<'t> Mul<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn mul(self, x: Var<'t, $t>) -> Var<'t, $t> {
                x * self
            }
        }
        impl<'t> Div<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn div(self, x: Var<'t, $t>) -> Var<'t, $t> {
                x.scalar_op(ScalarOp::DivInto(self))
            }
        }
    };
}
scalar_lhs!(f32);
scalar_lhs!(f64);

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, positive};
    use crate::{Tape, Tensor};

    #[test]
    fn binary_ops_with_all_broadcasts_pass_gradcheck() {
        for (sa, sb) in [
            (vec![3, 4], vec![3, 4]),
            (vec![2, 3, 4], vec![4]),
            (vec![5], vec![2, 5]),
            (vec![3, 2], vec![1]),
            (vec![], vec![2, 2]),
            (vec![2, 3], vec![1, 3]),
            // PyTorch's rules beyond a trailing block: a column, an outer product, a middle 1.
            (vec![2, 3], vec![2, 1]),
            (vec![2, 1], vec![1, 3]),
            (vec![4, 1, 3], vec![2, 1]),
            (vec![2, 1, 3], vec![2, 4, 1]),
        ] {
            check_grad(&[&sa, &sb], |_, v| v[0] + v[1]);
            check_grad(&[&sa, &sb], |_, v| v[0] - v[1]);
            check_grad(&[&sa, &sb], |_, v| v[0] * v[1]);
            check_grad(&[&sa, &sb], |_, v| v[0] / positive(v[1]));
        }
    }

    /// A per-row value against a row of columns (layer norm's `x − mean`): each row takes its
    /// own value, also when the row count equals the width.
    #[test]
    fn columns_broadcast_along_rows() {
        let tape = Tape::new();
        let x = tape.var(Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]));
        let m = tape.var(Tensor::<f64>::from_vec(vec![10.0, 20.0], &[2, 1]));
        let y = x - m;
        assert_eq!(y.to_tensor().data(), &[-9.0, -8.0, -17.0, -16.0]);
        let outer = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])) * m;
        assert_eq!(outer.shape().as_slice(), &[2, 3]);
        assert_eq!(
            outer.to_tensor().data(),
            &[10.0, 20.0, 30.0, 20.0, 40.0, 60.0]
        );
        let g = tape.backward((y * y).sum());
        // ∂/∂m of Σ (x − m)² is −2 Σ_j (x_ij − m_i), summed back to m's [2, 1].
        assert_eq!(g.wrt(m).data(), &[34.0, 66.0]);
    }

    #[test]
    fn same_input_twice_accumulates() {
        check_grad(&[&[4, 3]], |_, v| v[0] * v[0] + v[0]);
        check_grad(&[&[4, 3]], |_, v| v[0] / positive(v[0]).square());
    }

    /// A sum's operands share its output gradient's storage; a later gradient added to one
    /// of them (copy on write) must not reach the other, or the output's.
    #[test]
    fn shared_sum_gradients_stay_apart() {
        check_grad(&[&[3, 4], &[3, 4], &[3, 4]], |_, v| {
            let (a, b, c) = (v[0], v[1], v[2]);
            (a + b) * c + a * (b - c) + (a - b)
        });
        check_grad(&[&[3, 4], &[3, 4]], |_, v| {
            let s = v[0] + v[1];
            s * s + (s + v[0]) * v[1]
        });
    }

    #[test]
    fn scalar_ops_and_neg_pass_gradcheck() {
        check_grad(&[&[3, 5]], |_, v| -v[0] + 2.5);
        check_grad(&[&[3, 5]], |_, v| (v[0] - 1.5) * 3.0 / 4.0);
        check_grad(&[&[3, 5]], |_, v| 2.0 - 3.0 * v[0]);
        check_grad(&[&[3, 5]], |_, v| 2.0 / positive(v[0]) + 1.0);
    }

    #[test]
    fn values_of_broadcast_ops() {
        let tape = Tape::new();
        let a = tape.constant(Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]));
        let b = tape.constant(Tensor::from_vec(vec![10.0, 20.0], &[2]));
        assert_eq!((a + b).to_tensor().data(), &[11.0, 22.0, 13.0, 24.0]);
        assert_eq!((b - a).to_tensor().data(), &[9.0, 18.0, 7.0, 16.0]);
        assert_eq!(
            (1.0f32 / a).to_tensor().data(),
            &[1.0, 0.5, 1.0 / 3.0, 0.25]
        );
    }

    #[test]
    #[should_panic(expected = "mul: shapes [2, 3] and [2] cannot be broadcast")]
    fn mismatched_shapes_name_op_and_shapes() {
        let tape = Tape::<f32>::new();
        let a = tape.constant(Tensor::zeros(&[2, 3]));
        let b = tape.constant(Tensor::zeros(&[2]));
        let _ = a * b;
    }
}
