//! Masking: multiply by a constant 0/1 mask (optionally scaled: dropout with a given mask),
//! and `where_mask`, which picks each element from one of two variables; the mask broadcasts
//! to the input by PyTorch's rules.

use crate::ops::arith::{broadcast_shape, for_each_broadcast};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// y = x · mask · scale, the mask broadcast like a bias (a trailing block or a scalar).
struct Mask<T> {
    mask: Tensor<T>,
    scale: T,
}

impl<T: Element> Op<T> for Mask<T> {
    fn name(&self) -> &'static str {
        "mask"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let shape = broadcast_shape("mask", x.shape(), self.mask.shape());
        assert!(
            shape.as_slice() == x.shape(),
            "mask: mask {:?} is larger than the input {:?}",
            self.mask.shape(),
            x.shape()
        );
        let mut y = x.clone();
        let (m, s) = (self.mask.data(), self.scale);
        let yd = y.data_mut();
        let xs = x.shape();
        for_each_broadcast(xs, xs, self.mask.shape(), |i, _, im| yd[i] *= m[im] * s);
        y
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (g, gs) = (ctx.grad_output().data(), ctx.grad_output().shape());
        let (m, s) = (self.mask.data(), self.scale);
        if let Some(gx) = ctx.grad_input(0) {
            for_each_broadcast(gs, gs, self.mask.shape(), |i, _, im| {
                gx[i] += g[i] * m[im] * s
            });
        }
    }
}

/// y = cond ? a : b elementwise, `cond` a constant of 0/1 broadcast like a bias.
struct Where<T> {
    cond: Tensor<T>,
}

impl<T: Element> Op<T> for Where<T> {
    fn name(&self) -> &'static str {
        "where"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (a, b) = (inputs[0], inputs[1]);
        assert!(
            a.shape() == b.shape(),
            "where: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        );
        let shape = broadcast_shape("where", a.shape(), self.cond.shape());
        assert!(
            shape.as_slice() == a.shape(),
            "where: condition {:?} is larger than {:?}",
            self.cond.shape(),
            a.shape()
        );
        let mut y = a.clone();
        let (c, bd, yd) = (self.cond.data(), b.data(), y.data_mut());
        for_each_broadcast(&shape, &shape, self.cond.shape(), |i, _, ic| {
            if c[ic] == T::zero() {
                yd[i] = bd[i];
            }
        });
        y
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (g, c) = (ctx.grad_output().data(), self.cond.data());
        let gs = ctx.grad_output().shape();
        for (k, pick) in [(0, true), (1, false)] {
            if let Some(gx) = ctx.grad_input(k) {
                for_each_broadcast(gs, gs, self.cond.shape(), |i, _, ic| {
                    if (c[ic] != T::zero()) == pick {
                        gx[i] += g[i];
                    }
                });
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// x · mask for a constant mask of zeros and ones (a trailing block or scalar broadcasts).
    pub fn mask(self, mask: &Tensor<T>) -> Var<'t, T> {
        self.tape().apply(
            Mask {
                mask: mask.clone(),
                scale: T::one(),
            },
            &[self],
        )
    }

    /// Inverted dropout with a given keep-mask: x · mask / (1 − p).
    pub fn dropout_with_mask(self, mask: &Tensor<T>, p: f64) -> Var<'t, T> {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout: probability {p} not in [0, 1)"
        );
        let scale = T::one() / T::of(1.0 - p);
        self.tape().apply(
            Mask {
                mask: mask.clone(),
                scale,
            },
            &[self],
        )
    }

    /// Elementwise `cond ? self : other`, where `cond` is a constant of zeros and ones.
    pub fn where_mask(self, cond: &Tensor<T>, other: Var<'t, T>) -> Var<'t, T> {
        self.tape()
            .apply(Where { cond: cond.clone() }, &[self, other])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    fn bits(pattern: &[u8], shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(pattern.iter().map(|&b| f64::from(b)).collect(), shape)
    }

    #[test]
    fn masks_pass_gradcheck() {
        let m = bits(&[1, 0, 1, 1, 0, 1], &[2, 3]);
        let row = bits(&[0, 1, 1], &[3]);
        check_grad(&[&[2, 3]], move |_, v| v[0].mask(&m));
        check_grad(&[&[4, 3]], move |_, v| v[0].mask(&row));
        let column = bits(&[1, 0], &[2, 1]);
        check_grad(&[&[2, 3]], move |_, v| v[0].mask(&column));
        let column = bits(&[0, 1], &[2, 1]);
        check_grad(&[&[2, 3], &[2, 3]], move |_, v| {
            v[0].where_mask(&column, v[1])
        });
        let m = bits(&[1, 0, 1, 1, 0, 1], &[2, 3]);
        check_grad(&[&[2, 3]], move |_, v| v[0].dropout_with_mask(&m, 0.25));
        let c = bits(&[1, 0, 0, 1, 0, 1], &[2, 3]);
        check_grad(&[&[2, 3], &[2, 3]], move |_, v| v[0].where_mask(&c, v[1]));
    }

    #[test]
    fn dropout_scales_kept_values() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f32>::ones(&[4]));
        let m = Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], &[4]);
        assert_eq!(
            x.dropout_with_mask(&m, 0.5).to_tensor().data(),
            &[2.0, 0.0, 2.0, 0.0]
        );
    }

    #[test]
    #[should_panic(expected = "where: shapes [2, 3] and [3, 2] differ")]
    fn where_mismatch_names_shapes() {
        let tape = Tape::<f32>::new();
        let a = tape.constant(Tensor::zeros(&[2, 3]));
        let b = tape.constant(Tensor::zeros(&[3, 2]));
        let _ = a.where_mask(&Tensor::ones(&[3]), b);
    }
}
