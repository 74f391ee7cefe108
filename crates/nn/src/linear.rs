//! `Linear`: y = x·Wᵀ + b over the last dimension, W `[out, in]`, as `torch.nn.Linear`.

use crate::init;
use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use rand::Rng;
use recur_tape::kernels::packed::AddTo;
use recur_tape::kernels::{MatRef, PackedRows, Precision};
use recur_tape::{Element, Var};

/// `torch.nn.Linear`: y = x·Wᵀ + b over the last dimension.
///
/// ```
/// use recur_nn::optim::{Optimizer, Sgd, SgdOptions};
/// use recur_nn::{Linear, Mode, ParamStore, Session};
/// use recur_tape::{Tape, Tensor};
/// use rand::SeedableRng;
///
/// let mut store = ParamStore::<f64>::new();
/// let fc = Linear::new(&mut store, "fc", 3, 2, true, &mut rand::rngs::StdRng::seed_from_u64(0));
/// assert_eq!(store.get(fc.weight).shape(), &[2, 3]); // PyTorch's [out, in]
/// let mut sgd = Sgd::new(SgdOptions::new(0.1));
/// let x = Tensor::from_vec(vec![1.0, -1.0, 0.5], &[1, 3]);
/// let loss_of = |store: &ParamStore<f64>| {
///     let tape = Tape::new();
///     let s = Session::new(&tape, store, Mode::Train, 0);
///     let loss = fc.forward(&s, s.constant(x.clone())).sum().pow(2.0);
///     (loss.item(), s.backward(loss))
/// };
/// let (before, grads) = loss_of(&store);
/// sgd.step(&mut store, &grads);
/// assert!(loss_of(&store).0 < before);
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    /// W `[out_features, in_features]` (`{prefix}.weight`).
    pub weight: ParamId,
    /// b `[out_features]` (`{prefix}.bias`), if the layer has one.
    pub bias: Option<ParamId>,
    /// Width of the input's last dimension.
    pub in_features: usize,
    /// Width of the output's last dimension.
    pub out_features: usize,
}

impl Linear {
    /// Registers `{prefix}.weight` and `{prefix}.bias` with PyTorch's default init.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let weight = store.add(
            join_name(prefix, "weight"),
            init::linear_weight(out_features, in_features, rng),
        );
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let bias = bias.then(|| {
            store.add(
                join_name(prefix, "bias"),
                init::uniform(&[out_features], bound, rng),
            )
        });
        Linear {
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// x `[..., in_features]` → `[..., out_features]`.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        x.linear(s.param(self.weight), self.bias.map(|b| s.param(b)))
    }

    /// The layer's current weights packed for single vectors in `precision` (batch-1
    /// inference beside a [`Stepper`](crate::rnn::Stepper)).
    pub fn packed<T: Element>(
        &self,
        store: &ParamStore<T>,
        precision: Precision,
    ) -> PackedLinear<T> {
        let w = store.get(self.weight).data();
        PackedLinear {
            weight: PackedRows::new(
                MatRef::row_major(w, self.out_features, self.in_features),
                precision,
            ),
            bias: self.bias.map(|b| store.get(b).data().to_vec()),
        }
    }
}

/// A [`Linear`] packed for one input vector at a time, without a tape.
pub struct PackedLinear<T> {
    weight: PackedRows<T>,
    bias: Option<Vec<T>>,
}

impl<T: Element> PackedLinear<T> {
    /// y ← W·x + b for one input `x` (`in_features` values) into `y` (`out_features`).
    pub fn forward(&self, x: &[T], y: &mut [T]) {
        let add = match &self.bias {
            Some(b) => AddTo::Row(b),
            None => AddTo::Nothing,
        };
        self.weight.mul_vec(x, y, add)
    }

    /// Bytes of weights one product reads.
    pub fn bytes(&self) -> usize {
        self.weight.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Mode;
    use rand::SeedableRng;
    use recur_tape::{Tape, Tensor};

    #[test]
    fn shapes_names_and_values_follow_pytorch() {
        let mut store = ParamStore::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let fc = Linear::new(&mut store, "decoder.out", 3, 2, true, &mut rng);
        assert_eq!(store.get(fc.weight).shape(), &[2, 3]);
        assert_eq!(store.name(fc.bias.unwrap()), "decoder.out.bias");
        *store.get_mut(fc.weight) = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0], &[2, 3]);
        *store.get_mut(fc.bias.unwrap()) = Tensor::from_vec(vec![0.5, -0.5], &[2]);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Eval, 0);
        let y = fc.forward(
            &s,
            tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])),
        );
        assert_eq!(y.to_tensor().data(), &[1.5, 4.5]);
    }
}
