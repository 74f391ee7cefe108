//! More elementwise functions that new cells use, each with PyTorch's value and gradient at
//! its kinks: pow (a constant exponent), rsqrt, log1p, silu, leaky_relu, clamp, abs.

use crate::{BackwardCtx, Element, Op, Tensor, Var};

#[derive(Clone, Copy)]
enum Map<T> {
    Pow(T),
    Rsqrt,
    Log1p,
    Silu,
    LeakyRelu(T),
    Clamp(T, T),
    Abs,
}

impl<T: Element> Map<T> {
    fn value(self, x: T) -> T {
        match self {
            Map::Pow(p) => x.powf(p),
            Map::Rsqrt => x.sqrt().recip(),
            Map::Log1p => x.ln_1p(),
            Map::Silu => x / (T::one() + (-x).exp()),
            Map::LeakyRelu(slope) => {
                if x > T::zero() {
                    x
                } else {
                    x * slope
                }
            }
            Map::Clamp(lo, hi) => x.max(lo).min(hi),
            Map::Abs => x.abs(),
        }
    }

    /// dy/dx at x (y = the value there).
    fn derivative(self, x: T, y: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            Map::Pow(p) => {
                if p == zero {
                    zero
                } else {
                    p * x.powf(p - one)
                }
            }
            Map::Rsqrt => T::of(-0.5) * y * y * y,
            Map::Log1p => (one + x).recip(),
            Map::Silu => {
                let s = one / (one + (-x).exp());
                s * (one + x * (one - s))
            }
            Map::LeakyRelu(slope) => {
                if x > zero {
                    one
                } else {
                    slope
                }
            }
            // PyTorch passes the gradient strictly inside the bounds (2.15: 0 at lo and hi).
            Map::Clamp(lo, hi) => {
                if x > lo && x < hi {
                    one
                } else {
                    zero
                }
            }
            // sign(x), 0 at 0.
            Map::Abs => {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                }
            }
        }
    }
}

impl<T: Element> Op<T> for Map<T> {
    fn name(&self) -> &'static str {
        match self {
            Map::Pow(_) => "pow",
            Map::Rsqrt => "rsqrt",
            Map::Log1p => "log1p",
            Map::Silu => "silu",
            Map::LeakyRelu(_) => "leaky_relu",
            Map::Clamp(..) => "clamp",
            Map::Abs => "abs",
        }
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let f = *self;
        inputs[0].map(|x| f.value(x))
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let f = *self;
        let (x, y, g) = (
            ctx.input(0).data(),
            ctx.output().data(),
            ctx.grad_output().data(),
        );
        let grads = x
            .iter()
            .zip(y)
            .zip(g)
            .map(|((&x, &y), &g)| g * f.derivative(x, y));
        ctx.accumulate_grad_input(0, grads);
    }
}

impl<'t, T: Element> Var<'t, T> {
    fn map_op(self, f: Map<T>) -> Var<'t, T> {
        self.tape().apply(f, &[self])
    }
    /// xᵖ for a constant exponent p.
    pub fn pow(self, p: f64) -> Var<'t, T> {
        self.map_op(Map::Pow(T::of(p)))
    }
    /// 1/√x.
    pub fn rsqrt(self) -> Var<'t, T> {
        self.map_op(Map::Rsqrt)
    }
    /// log(1 + x), accurate for small x.
    pub fn log1p(self) -> Var<'t, T> {
        self.map_op(Map::Log1p)
    }
    /// x·σ(x) (SiLU, swish).
    pub fn silu(self) -> Var<'t, T> {
        self.map_op(Map::Silu)
    }
    /// x for x > 0, slope·x otherwise.
    pub fn leaky_relu(self, slope: f64) -> Var<'t, T> {
        self.map_op(Map::LeakyRelu(T::of(slope)))
    }
    /// x limited to [lo, hi]; the gradient passes where lo < x < hi, as in PyTorch.
    pub fn clamp(self, lo: f64, hi: f64) -> Var<'t, T> {
        assert!(lo <= hi, "clamp: lower bound {lo} above upper bound {hi}");
        self.map_op(Map::Clamp(T::of(lo), T::of(hi)))
    }
    /// |x|; the gradient at 0 is 0, as in PyTorch.
    pub fn abs(self) -> Var<'t, T> {
        self.map_op(Map::Abs)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, positive};
    use crate::{Tape, Tensor};

    #[test]
    fn elementwise_ops_pass_gradcheck() {
        for shape in [&[7][..], &[3, 4]] {
            check_grad(&[shape], |_, v| positive(v[0]).pow(2.5));
            check_grad(&[shape], |_, v| v[0].pow(3.0));
            check_grad(&[shape], |_, v| positive(v[0]).rsqrt());
            check_grad(&[shape], |_, v| (v[0] * 0.5).log1p());
            check_grad(&[shape], |_, v| (v[0] * 3.0).silu());
            // Away from the kinks, where finite differences are meaningless.
            check_grad(&[shape], |_, v| (v[0] * 1.0 + 0.05).leaky_relu(0.1));
            check_grad(&[shape], |_, v| (v[0] * 2.0).clamp(-0.5, 0.7));
            check_grad(&[shape], |_, v| (v[0] * 1.0 + 0.05).abs());
        }
    }

    #[test]
    fn kinks_follow_pytorch() {
        let tape = Tape::new();
        let x = tape.var(Tensor::<f64>::from_vec(vec![-1.0, 0.0, 0.5, 1.0], &[4]));
        let y = x.clamp(0.0, 0.5) + x.abs() + x.leaky_relu(0.1);
        let g = tape.backward(y.sum());
        // clamp stops at both bounds; |x|' = 0 and leaky_relu' = slope at 0.
        assert_eq!(g.wrt(x).data(), &[-1.0 + 0.1, 0.1, 1.0 + 1.0, 1.0 + 1.0]);
    }
}
