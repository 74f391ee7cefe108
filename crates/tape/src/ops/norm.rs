//! Normalisation over the last dimension as fused ops with hand-written backward:
//! `layer_norm` (PyTorch's F.layer_norm: biased variance, optional weight and bias) and
//! `rms_norm` (F.rms_norm: x / √(mean(x²) + ε), optional weight). Each row's statistics are
//! kept for backward (two values per row), so backward makes one pass over x.

use crate::kernels::simd::{lane_sum, widest};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Layer,
    Rms,
}

struct Norm<T> {
    kind: Kind,
    eps: T,
    has_weight: bool,
    has_bias: bool,
    /// Per row: the mean subtracted (0 for RMS) and 1/σ (1/rms).
    mean: Vec<T>,
    inv: Vec<T>,
}

impl<T: Element> Norm<T> {
    fn op_name(&self) -> &'static str {
        match self.kind {
            Kind::Layer => "layer_norm",
            Kind::Rms => "rms_norm",
        }
    }
}

impl<T: Element> Op<T> for Norm<T> {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let d = *x.shape().last().expect("checked when recorded");
        let weight = self.has_weight.then(|| inputs[1].data());
        let bias = self
            .has_bias
            .then(|| inputs[1 + usize::from(self.has_weight)].data());
        let n = T::of(d as f64);
        let rows = x.numel() / d.max(1);
        let (mut mean, mut inv) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let mut y = vec![T::zero(); x.numel()];
        let (kind, eps) = (self.kind, self.eps);
        widest(
            #[inline(always)]
            || {
                let rows = x.data().chunks_exact(d.max(1));
                for (row, out) in rows.zip(y.chunks_exact_mut(d.max(1))) {
                    let mu = match kind {
                        Kind::Layer => lane_sum(row, row, |v, _| v) / n,
                        Kind::Rms => T::zero(),
                    };
                    let var = lane_sum(row, row, |v, _| (v - mu) * (v - mu)) / n;
                    let r = T::one() / (var + eps).sqrt();
                    out.iter_mut()
                        .zip(row)
                        .for_each(|(o, &v)| *o = (v - mu) * r);
                    if let Some(w) = weight {
                        out.iter_mut().zip(w).for_each(|(o, &w)| *o *= w);
                    }
                    if let Some(b) = bias {
                        out.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                    }
                    mean.push(mu);
                    inv.push(r);
                }
            },
        );
        self.mean = mean;
        self.inv = inv;
        Tensor::from_vec(y, x.shape())
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (x, g) = (ctx.input(0).data(), ctx.grad_output().data());
        let d = *ctx.input(0).shape().last().expect("checked when recorded");
        let weight = self.has_weight.then(|| ctx.input(1).data());
        let n = T::of(d as f64);
        let (wants_x, wants_w) = (ctx.needs_grad(0), self.has_weight && ctx.needs_grad(1));
        let mut dx = vec![T::zero(); if wants_x { x.len() } else { 0 }];
        let mut dw = vec![T::zero(); if wants_w { d } else { 0 }];
        // Per row: x̂ = (x − mean)/σ and ĝ = g·weight.
        let (mut x_hat, mut g_hat) = (vec![T::zero(); d], vec![T::zero(); d]);
        widest(
            #[inline(always)]
            || {
                let rows = x.chunks_exact(d.max(1)).zip(g.chunks_exact(d.max(1)));
                for (r, (x_row, g_row)) in rows.enumerate() {
                    let (mu, inv) = (self.mean[r], self.inv[r]);
                    x_hat
                        .iter_mut()
                        .zip(x_row)
                        .for_each(|(h, &v)| *h = (v - mu) * inv);
                    if wants_w {
                        dw.iter_mut()
                            .zip(g_row)
                            .zip(&x_hat)
                            .for_each(|((w, &g), &h)| *w += g * h);
                    }
                    if !wants_x {
                        continue;
                    }
                    match weight {
                        Some(w) => g_hat
                            .iter_mut()
                            .zip(g_row)
                            .zip(w)
                            .for_each(|((h, &g), &w)| *h = g * w),
                        None => g_hat.copy_from_slice(g_row),
                    }
                    // Layer norm: (ĝ − mean ĝ − x̂·mean(ĝ·x̂))/σ; RMS norm has no mean to remove.
                    let centre = match self.kind {
                        Kind::Layer => lane_sum(&g_hat, &g_hat, |v, _| v) / n,
                        Kind::Rms => T::zero(),
                    };
                    let dot = lane_sum(&g_hat, &x_hat, |a, b| a * b) / n;
                    let out = &mut dx[r * d..(r + 1) * d];
                    for ((o, &gh), &xh) in out.iter_mut().zip(&g_hat).zip(&x_hat) {
                        *o = (gh - centre - xh * dot) * inv;
                    }
                }
            },
        );
        if wants_x {
            ctx.add_grad_input(0, dx);
        }
        if wants_w {
            ctx.add_grad_input(1, dw);
        }
        if self.has_bias {
            let k = 1 + usize::from(self.has_weight);
            if let Some(gb) = ctx.grad_input(k) {
                widest(
                    #[inline(always)]
                    || {
                        for g_row in g.chunks_exact(d.max(1)) {
                            gb.iter_mut().zip(g_row).for_each(|(b, &v)| *b += v);
                        }
                    },
                );
            }
        }
    }
}

fn norm<'t, T: Element>(
    kind: Kind,
    x: Var<'t, T>,
    weight: Option<Var<'t, T>>,
    bias: Option<Var<'t, T>>,
    eps: f64,
) -> Var<'t, T> {
    let op = Norm {
        kind,
        eps: T::of(eps),
        has_weight: weight.is_some(),
        has_bias: bias.is_some(),
        mean: Vec::new(),
        inv: Vec::new(),
    };
    let shape = x.shape();
    let d = *shape.last().unwrap_or_else(|| {
        panic!(
            "{}: needs at least one dimension, got a scalar",
            op.op_name()
        )
    });
    for (what, v) in [("weight", weight), ("bias", bias)] {
        if let Some(v) = v {
            assert!(
                v.shape().as_slice() == [d],
                "{}: {what} has shape {:?}, the input {:?} needs [{d}]",
                op.op_name(),
                v.shape().as_slice(),
                shape.as_slice()
            );
        }
    }
    let inputs: Vec<Var<'t, T>> = [Some(x), weight, bias].into_iter().flatten().collect();
    x.tape().apply(op, &inputs)
}

impl<'t, T: Element> Var<'t, T> {
    /// Layer normalisation over the last dimension, as `F.layer_norm(x, [D], weight, bias,
    /// eps)`: (x − mean) / √(var + ε) (biased variance), times `weight` plus `bias` `[D]`.
    pub fn layer_norm(
        self,
        weight: Option<Var<'t, T>>,
        bias: Option<Var<'t, T>>,
        eps: f64,
    ) -> Var<'t, T> {
        norm(Kind::Layer, self, weight, bias, eps)
    }

    /// RMS normalisation over the last dimension, as `F.rms_norm(x, [D], weight, eps)`:
    /// x / √(mean(x²) + ε), times `weight` `[D]`.
    pub fn rms_norm(self, weight: Option<Var<'t, T>>, eps: f64) -> Var<'t, T> {
        norm(Kind::Rms, self, weight, None, eps)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn norms_pass_gradcheck() {
        for shape in [&[3, 5][..], &[2, 3, 4], &[7]] {
            let d = [shape[shape.len() - 1]];
            check_grad(&[shape], |_, v| v[0].layer_norm(None, None, 1e-5));
            check_grad(&[shape, &d, &d], |_, v| {
                v[0].layer_norm(Some(v[1]), Some(v[2]), 1e-5)
            });
            check_grad(&[shape, &d], |_, v| v[0].layer_norm(Some(v[1]), None, 1e-5));
            check_grad(&[shape], |_, v| v[0].rms_norm(None, 1e-6));
            check_grad(&[shape, &d], |_, v| v[0].rms_norm(Some(v[1]), 1e-6));
        }
    }

    #[test]
    fn values_are_normalised() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f64>::from_vec(
            vec![1.0, 2.0, 3.0, 4.0, -2.0, 2.0],
            &[2, 3],
        ));
        let y = x.layer_norm(None, None, 0.0).to_tensor();
        let s = (2.0f64 / 3.0).sqrt();
        for (a, b) in y.data().iter().zip([-1.0 / s, 0.0, 1.0 / s]) {
            approx::assert_relative_eq!(*a, b, max_relative = 1e-12);
        }
        let r = x.rms_norm(None, 0.0).to_tensor();
        let rms = (24.0f64 / 3.0).sqrt();
        approx::assert_relative_eq!(r.data()[3], 4.0 / rms, max_relative = 1e-12);
    }

    #[test]
    #[should_panic(expected = "layer_norm: weight has shape [4], the input [2, 3] needs [3]")]
    fn mismatch_names_the_op_and_shapes() {
        let tape = Tape::<f32>::new();
        let x = tape.var(Tensor::zeros(&[2, 3]));
        let w = tape.var(Tensor::zeros(&[4]));
        let _ = x.layer_norm(Some(w), None, 1e-5);
    }
}
