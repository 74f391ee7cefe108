//! Fused losses: cross-entropy (log_softmax + NLL in one op, with `ignore_index`), NLL on
//! log-probabilities, and mean squared error. Mean reductions average over counted targets.

use crate::kernels::simd::widest;
use crate::ops::softmax::softmax_rows;
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// How a loss combines its per-element terms, as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Average over the elements that count (non-ignored targets).
    #[default]
    Mean,
    /// Sum of the elements that count.
    Sum,
}

/// Targets with an optional ignored class, checked against a [rows, classes] input.
struct Targets {
    ids: Vec<usize>,
    ignore: Option<usize>,
    reduction: Reduction,
}

impl Targets {
    fn check<T: Element>(&self, op: &str, x: &Tensor<T>) -> (usize, usize) {
        assert!(
            x.ndim() >= 1,
            "{op}: input must have a class dimension, got a scalar"
        );
        let classes = x.shape()[x.ndim() - 1];
        let rows = x.numel() / classes.max(1);
        assert_eq!(
            rows,
            self.ids.len(),
            "{op}: input {:?} has {rows} rows but {} targets were given",
            x.shape(),
            self.ids.len()
        );
        for &t in &self.ids {
            assert!(
                Some(t) == self.ignore || t < classes,
                "{op}: target {t} out of range for {classes} classes"
            );
        }
        (rows, classes)
    }

    fn counted(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ids
            .iter()
            .copied()
            .enumerate()
            .filter(move |&(_, t)| Some(t) != self.ignore)
    }

    /// The factor applied to each counted term: 1/count for a mean (NaN if none count, as in
    /// PyTorch), 1 for a sum.
    fn scale<T: Element>(&self) -> T {
        match self.reduction {
            Reduction::Sum => T::one(),
            Reduction::Mean => T::one() / T::of(self.counted().count() as f64),
        }
    }
}

/// −log softmax(x)[target], reduced; saves the log-sum-exp of each row.
struct CrossEntropy<T> {
    targets: Targets,
    /// softmax(x), row by row.
    probs: Vec<T>,
}

impl<T: Element> Op<T> for CrossEntropy<T> {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (_, classes) = self.targets.check("cross_entropy", x);
        let log_norm;
        (self.probs, log_norm) = softmax_rows(x.data(), classes);
        let total = self.targets.counted().fold(T::zero(), |s, (r, t)| {
            s + (log_norm[r] - x.data()[r * classes + t])
        });
        Tensor::scalar(total * self.targets.scale())
    }

    /// gx = g · scale · (softmax − onehot) on counted rows.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let classes = ctx.input(0).shape()[ctx.input(0).ndim() - 1];
        let g = ctx.grad_output().item() * self.targets.scale();
        if !ctx.needs_grad(0) {
            return;
        }
        // Built row by row (counted rows come in order), so no zero-filled buffer is made;
        // compiled for the CPU's widest vectors (a large vocabulary makes this a big pass).
        let mut gx = Vec::with_capacity(self.probs.len());
        widest(
            #[inline(always)]
            || {
                for (r, t) in self.targets.counted() {
                    gx.resize(r * classes, T::zero());
                    gx.extend(
                        self.probs[r * classes..(r + 1) * classes]
                            .iter()
                            .map(|&p| g * p),
                    );
                    gx[r * classes + t] -= g;
                }
            },
        );
        gx.resize(self.probs.len(), T::zero());
        ctx.add_grad_input(0, gx);
    }
}

/// −x[target] on log-probabilities, reduced.
struct Nll {
    targets: Targets,
}

impl<T: Element> Op<T> for Nll {
    fn name(&self) -> &'static str {
        "nll_loss"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0];
        let (_, classes) = self.targets.check("nll_loss", x);
        let total = self
            .targets
            .counted()
            .fold(T::zero(), |s, (r, t)| s - x.data()[r * classes + t]);
        Tensor::scalar(total * self.targets.scale())
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let classes = ctx.input(0).shape()[ctx.input(0).ndim() - 1];
        let g = ctx.grad_output().item() * self.targets.scale::<T>();
        let Some(gx) = ctx.grad_input(0) else { return };
        for (r, t) in self.targets.counted() {
            gx[r * classes + t] -= g;
        }
    }
}

/// Σ (a − b)², reduced (mean over all elements, or sum).
struct Mse {
    reduction: Reduction,
}

impl Mse {
    fn scale<T: Element>(&self, n: usize) -> T {
        match self.reduction {
            Reduction::Mean => T::one() / T::of(n as f64),
            Reduction::Sum => T::one(),
        }
    }
}

impl<T: Element> Op<T> for Mse {
    fn name(&self) -> &'static str {
        "mse_loss"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (a, b) = (inputs[0], inputs[1]);
        assert!(
            a.shape() == b.shape(),
            "mse_loss: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        );
        let total = a
            .data()
            .iter()
            .zip(b.data())
            .fold(T::zero(), |s, (&x, &y)| s + (x - y) * (x - y));
        Tensor::scalar(total * self.scale(a.numel()))
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (a, b) = (ctx.input(0).data(), ctx.input(1).data());
        let g = ctx.grad_output().item() * self.scale::<T>(a.len()) * T::of(2.0);
        for (k, sign) in [(0, T::one()), (1, -T::one())] {
            if let Some(gx) = ctx.grad_input(k) {
                for i in 0..gx.len() {
                    gx[i] += sign * g * (a[i] - b[i]);
                }
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Cross-entropy of logits `[.., classes]` against one target class per row, fused with
    /// the log-softmax. Rows whose target equals `ignore_index` do not count.
    pub fn cross_entropy(
        self,
        targets: &[usize],
        ignore_index: Option<usize>,
        reduction: Reduction,
    ) -> Var<'t, T> {
        let targets = Targets {
            ids: targets.to_vec(),
            ignore: ignore_index,
            reduction,
        };
        self.tape().apply(
            CrossEntropy {
                targets,
                probs: Vec::new(),
            },
            &[self],
        )
    }

    /// Negative log-likelihood of log-probabilities `[.., classes]` (PyTorch's `nll_loss`).
    pub fn nll_loss(
        self,
        targets: &[usize],
        ignore_index: Option<usize>,
        reduction: Reduction,
    ) -> Var<'t, T> {
        let targets = Targets {
            ids: targets.to_vec(),
            ignore: ignore_index,
            reduction,
        };
        self.tape().apply(Nll { targets }, &[self])
    }

    /// Squared error against `target` (which may be a constant), reduced.
    pub fn mse_loss(self, target: Var<'t, T>, reduction: Reduction) -> Var<'t, T> {
        self.tape().apply(Mse { reduction }, &[self, target])
    }
}

#[cfg(test)]
mod tests {
    use super::Reduction;
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn losses_pass_gradcheck() {
        for r in [Reduction::Mean, Reduction::Sum] {
            check_grad(&[&[4, 5]], move |_, v| {
                (v[0] * 3.0).cross_entropy(&[0, 4, 2, 2], None, r)
            });
            // Two losses on the same logits: the second gradient adds to the first.
            check_grad(&[&[3, 4]], move |_, v| {
                let x = v[0] * 3.0;
                x.cross_entropy(&[0, 3, 1], None, r) + x.cross_entropy(&[2, 2, 0], Some(0), r)
            });
            check_grad(&[&[2, 2, 5]], move |_, v| {
                (v[0] * 3.0).cross_entropy(&[0, 9, 3, 9], Some(9), r)
            });
            check_grad(&[&[4, 5]], move |_, v| {
                v[0].nll_loss(&[1, 0, 4, 4], Some(4), r)
            });
            check_grad(&[&[3, 4], &[3, 4]], move |_, v| v[0].mse_loss(v[1], r));
        }
    }

    #[test]
    fn cross_entropy_equals_composed_log_softmax_nll() {
        let tape = Tape::new();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let x = tape.var(Tensor::<f64>::uniform(&[6, 7], -3.0, 3.0, &mut rng));
        let targets = [1, 6, 0, 100, 3, 3];
        let fused = x.cross_entropy(&targets, Some(100), Reduction::Mean);
        let composed = x
            .log_softmax()
            .nll_loss(&targets, Some(100), Reduction::Mean);
        approx::assert_relative_eq!(fused.item(), composed.item(), max_relative = 1e-14);
        let (gf, gc) = (tape.backward(fused).wrt(x), tape.backward(composed).wrt(x));
        assert!(gf.max_abs_diff(&gc) < 1e-14);
    }

    #[test]
    fn all_ignored_mean_is_nan_like_pytorch() {
        let tape = Tape::new();
        let x = tape.var(Tensor::<f32>::zeros(&[2, 3]));
        assert!(x
            .cross_entropy(&[7, 7], Some(7), Reduction::Mean)
            .item()
            .is_nan());
        assert_eq!(
            x.cross_entropy(&[7, 7], Some(7), Reduction::Sum).item(),
            0.0
        );
    }

    #[test]
    #[should_panic(expected = "cross_entropy: input [3, 4] has 3 rows but 2 targets were given")]
    fn target_count_mismatch_panics() {
        let tape = Tape::<f32>::new();
        let _ = tape
            .constant(Tensor::zeros(&[3, 4]))
            .cross_entropy(&[0, 1], None, Reduction::Mean);
    }

    #[test]
    #[should_panic(expected = "mse_loss: shapes [3] and [4] differ")]
    fn mse_mismatch_panics() {
        let tape = Tape::<f32>::new();
        let a = tape.constant(Tensor::zeros(&[3]));
        let b = tape.constant(Tensor::zeros(&[4]));
        let _ = a.mse_loss(b, Reduction::Mean);
    }
}
