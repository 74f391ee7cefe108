//! `Dropout`: zeroes each element with probability p in training, scaling the rest by
//! 1/(1−p) (inverted dropout); the identity in evaluation.

use crate::session::Session;
use recur_tape::{Element, Var};

/// `torch.nn.Dropout`; its masks come from the [`Session`]'s seed.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// The probability of zeroing each element, in [0, 1).
    pub p: f64,
}

impl Dropout {
    /// Dropout with probability `p`; panics outside [0, 1).
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: probability {p} not in [0, 1)"
        );
        Dropout { p }
    }

    /// `x` with each element zeroed with probability p and the rest scaled by 1/(1−p) in
    /// training; `x` itself in evaluation.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        if !s.is_training() || self.p == 0.0 {
            return x;
        }
        let mask = s.bernoulli_mask(&x.shape(), self.p);
        x.dropout_with_mask(&mask, self.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use crate::session::Mode;
    use recur_tape::{Tape, Tensor};

    #[test]
    fn drops_about_p_in_training_and_nothing_in_eval() {
        let store = ParamStore::<f64>::new();
        let tape = Tape::new();
        let x = tape.constant(Tensor::ones(&[10_000]));
        let train = Session::new(&tape, &store, Mode::Train, 1);
        let y = Dropout::new(0.3).forward(&train, x).to_tensor();
        let kept = y.data().iter().filter(|&&v| v != 0.0).count() as f64 / 10_000.0;
        assert!((kept - 0.7).abs() < 0.02, "kept {kept}");
        assert!(y
            .data()
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
        let eval = Session::new(&tape, &store, Mode::Eval, 1);
        assert_eq!(
            Dropout::new(0.3).forward(&eval, x).to_tensor(),
            x.to_tensor()
        );
    }
}
