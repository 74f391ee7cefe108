//! More elementwise functions that new cells use, each with PyTorch's value and gradient at
//! its kinks: pow (a constant exponent), rsqrt, log1p, silu, gelu (erf and tanh forms),
//! leaky_relu, clamp, abs.

use crate::{BackwardCtx, Element, Op, Tensor, Var};

#[derive(Clone, Copy)]
enum Map<T> {
    Pow(T),
    Rsqrt,
    Log1p,
    Silu,
    /// x·Φ(x), Φ the standard normal CDF (through erf).
    Gelu,
    /// PyTorch's `approximate="tanh"`: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    GeluTanh,
    LeakyRelu(T),
    Clamp(T, T),
    Abs,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const GELU_CUBIC: f64 = 0.044715;

/// Φ(x) = ½(1 + erf(x/√2)), through the C library's erf (libm) in f64.
fn normal_cdf<T: Element>(x: T) -> T {
    let x = x.to_f64().expect("a float");
    T::of(0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)))
}

/// √(2/π)(x + 0.044715x³), the tanh form's argument.
fn gelu_tanh_inner<T: Element>(x: T) -> T {
    T::of(SQRT_2_OVER_PI) * (x + T::of(GELU_CUBIC) * x * x * x)
}

impl<T: Element> Map<T> {
    fn value(self, x: T) -> T {
        match self {
            Map::Pow(p) => x.powf(p),
            Map::Rsqrt => x.sqrt().recip(),
            Map::Log1p => x.ln_1p(),
            Map::Silu => x / (T::one() + (-x).exp()),
            Map::Gelu => x * normal_cdf(x),
            Map::GeluTanh => T::of(0.5) * x * (T::one() + gelu_tanh_inner(x).tanh()),
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
            // Φ(x) + x·φ(x).
            Map::Gelu => {
                let density = (-x * x * T::of(0.5)).exp() * T::of(FRAC_1_SQRT_2PI);
                normal_cdf(x) + x * density
            }
            Map::GeluTanh => {
                let t = gelu_tanh_inner(x).tanh();
                let inner = T::of(SQRT_2_OVER_PI) * (one + T::of(3.0 * GELU_CUBIC) * x * x);
                T::of(0.5) * (one + t) + T::of(0.5) * x * (one - t * t) * inner
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
            Map::Gelu => "gelu",
            Map::GeluTanh => "gelu_tanh",
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
    /// GELU, x·Φ(x) with the normal CDF through erf (PyTorch's default `F.gelu`).
    pub fn gelu(self) -> Var<'t, T> {
        self.map_op(Map::Gelu)
    }
    /// GELU's tanh approximation (`F.gelu(x, approximate="tanh")`).
    pub fn gelu_tanh(self) -> Var<'t, T> {
        self.map_op(Map::GeluTanh)
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
            check_grad(&[shape], |_, v| (v[0] * 3.0).gelu());
            check_grad(&[shape], |_, v| (v[0] * 3.0).gelu_tanh());
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
