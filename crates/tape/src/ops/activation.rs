//! Elementwise functions: exp, log, tanh, sigmoid, relu, softplus, sqrt, sin, cos. The transcendental ones run on the
//! vectorized slice kernels; backward reuses the saved output where the derivative allows.

use crate::{BackwardCtx, Element, Op, Tensor, Var};

#[derive(Clone, Copy)]
enum Unary {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Relu,
    Softplus,
    Sqrt,
    Sin,
    Cos,
}

impl<T: Element> Op<T> for Unary {
    fn name(&self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Relu => "relu",
            Unary::Softplus => "softplus",
            Unary::Sqrt => "sqrt",
            Unary::Sin => "sin",
            Unary::Cos => "cos",
        }
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0].data();
        let y = match self {
            Unary::Exp => T::exp_of(x),
            Unary::Log => x.iter().map(|v| v.ln()).collect(),
            Unary::Tanh => T::tanh_of(x),
            Unary::Sigmoid => T::sigmoid_of(x),
            Unary::Relu => x.iter().map(|v| v.max(T::zero())).collect(),
            // log(1 + e^x) = max(x, 0) + log(1 + e^−|x|), which cannot overflow.
            Unary::Softplus => x
                .iter()
                .map(|&v| v.max(T::zero()) + (-v.abs()).exp().ln_1p())
                .collect(),
            Unary::Sqrt => x.iter().map(|v| v.sqrt()).collect(),
            Unary::Sin => x.iter().map(|v| v.sin()).collect(),
            Unary::Cos => x.iter().map(|v| v.cos()).collect(),
        };
        Tensor::from_vec(y, inputs[0].shape())
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (x, y, g) = (
            ctx.input(0).data(),
            ctx.output().data(),
            ctx.grad_output().data(),
        );
        let (one, zero) = (T::one(), T::zero());
        let gy = g.iter().zip(y);
        match self {
            Unary::Exp => ctx.accumulate_grad_input(0, gy.map(|(&g, &y)| g * y)),
            Unary::Log => ctx.accumulate_grad_input(0, g.iter().zip(x).map(|(&g, &x)| g / x)),
            Unary::Tanh => ctx.accumulate_grad_input(0, gy.map(|(&g, &y)| g * (one - y * y))),
            Unary::Sigmoid => ctx.accumulate_grad_input(0, gy.map(|(&g, &y)| g * y * (one - y))),
            Unary::Relu => ctx.accumulate_grad_input(
                0,
                g.iter()
                    .zip(x)
                    .map(|(&g, &x)| if x > zero { g } else { zero }),
            ),
            // d/dx softplus(x) = σ(x) = 1 − e^−softplus(x).
            Unary::Softplus => {
                ctx.accumulate_grad_input(0, gy.map(|(&g, &y)| g * (one - (-y).exp())))
            }
            Unary::Sqrt => {
                let half = T::of(0.5);
                ctx.accumulate_grad_input(0, gy.map(|(&g, &y)| g * half / y))
            }
            Unary::Sin => ctx.accumulate_grad_input(0, g.iter().zip(x).map(|(&g, &x)| g * x.cos())),
            Unary::Cos => {
                ctx.accumulate_grad_input(0, g.iter().zip(x).map(|(&g, &x)| -g * x.sin()))
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// eˣ, elementwise.
    pub fn exp(self) -> Var<'t, T> {
        self.tape().apply(Unary::Exp, &[self])
    }
    /// Natural logarithm.
    pub fn log(self) -> Var<'t, T> {
        self.tape().apply(Unary::Log, &[self])
    }
    /// The hyperbolic tangent, elementwise.
    pub fn tanh(self) -> Var<'t, T> {
        self.tape().apply(Unary::Tanh, &[self])
    }
    /// The logistic function 1 / (1 + e^−x).
    pub fn sigmoid(self) -> Var<'t, T> {
        self.tape().apply(Unary::Sigmoid, &[self])
    }
    /// max(x, 0); the gradient at 0 is 0, as in PyTorch.
    pub fn relu(self) -> Var<'t, T> {
        self.tape().apply(Unary::Relu, &[self])
    }
    /// log(1 + eˣ), computed without overflow; its gradient is σ(x).
    pub fn softplus(self) -> Var<'t, T> {
        self.tape().apply(Unary::Softplus, &[self])
    }
    /// Square root; the gradient is 1 / (2√x), infinite at 0.
    pub fn sqrt(self) -> Var<'t, T> {
        self.tape().apply(Unary::Sqrt, &[self])
    }
    /// Sine, elementwise.
    pub fn sin(self) -> Var<'t, T> {
        self.tape().apply(Unary::Sin, &[self])
    }
    /// Cosine, elementwise.
    pub fn cos(self) -> Var<'t, T> {
        self.tape().apply(Unary::Cos, &[self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{check_grad, positive};
    use crate::{Tape, Tensor};

    #[test]
    fn unary_ops_pass_gradcheck() {
        for shape in [&[7][..], &[3, 4], &[2, 3, 2]] {
            check_grad(&[shape], |_, v| (v[0] * 3.0).exp());
            check_grad(&[shape], |_, v| positive(v[0]).log());
            check_grad(&[shape], |_, v| (v[0] * 2.0).tanh());
            check_grad(&[shape], |_, v| (v[0] * 4.0).sigmoid());
            // Shift away from the kink at 0, where finite differences are meaningless.
            check_grad(&[shape], |_, v| (v[0] * 1.0 + 0.05).relu());
            check_grad(&[shape], |_, v| (v[0] * 30.0).softplus());
            check_grad(&[shape], |_, v| positive(v[0]).sqrt());
            check_grad(&[shape], |_, v| (v[0] * 3.0).sin());
            check_grad(&[shape], |_, v| (v[0] * 3.0).cos());
        }
    }

    #[test]
    fn values_match_std() {
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f64>::from_vec(
            vec![-2.0, -0.1, 0.0, 0.3, 5.0],
            &[5],
        ));
        let y = x.tanh().to_tensor();
        for (a, b) in y.data().iter().zip(x.to_tensor().data()) {
            approx::assert_relative_eq!(*a, b.tanh(), max_relative = 1e-15);
        }
        assert_eq!(x.relu().to_tensor().data(), &[0.0, 0.0, 0.0, 0.3, 5.0]);
        let big = tape.constant(Tensor::<f64>::from_vec(vec![-800.0, 0.0, 800.0], &[3]));
        assert_eq!(big.softplus().to_tensor().data(), &[0.0, 2f64.ln(), 800.0]);
    }
}
