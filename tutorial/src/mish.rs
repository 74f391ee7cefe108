//! A new activation as a user-defined op: Mish (Misra 2019), y = x·tanh(softplus(x)), with a
//! hand-written backward. Composed from the tape's ops it would record four ops and keep
//! their values; as one op it makes one pass forward and one backward.

use recur::tape::{BackwardCtx, Element, Op, Tensor, Var};

// tutorial: mish
/// y = x·tanh(softplus(x)); dy/dx = tanh(sp) + x·(1 − tanh²(sp))·σ(x), sp = softplus(x).
pub struct Mish;

impl<T: Element> Op<T> for Mish {
    fn name(&self) -> &'static str {
        "mish"
    }
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        inputs[0].map(|x| x * x.exp().ln_1p().tanh())
    }
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (x, g) = (ctx.input(0).data(), ctx.grad_output().data());
        let grads = x.iter().zip(g).map(|(&x, &g)| {
            let (t, sigmoid) = (x.exp().ln_1p().tanh(), (T::one() + (-x).exp()).recip());
            g * (t + x * (T::one() - t * t) * sigmoid)
        });
        ctx.accumulate_grad_input(0, grads);
    }
}

/// `x.mish()` on any variable.
pub trait MishExt<'t, T: Element> {
    fn mish(self) -> Var<'t, T>;
}

impl<'t, T: Element> MishExt<'t, T> for Var<'t, T> {
    fn mish(self) -> Var<'t, T> {
        self.tape().apply(Mish, &[self])
    }
}
// end
