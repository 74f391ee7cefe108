//! Losses and metrics. The losses themselves are fused tape ops (`Var::cross_entropy`,
//! `Var::nll_loss`, `Var::mse_loss`); this module re-exports their options and adds metrics.

pub use recur_tape::Reduction;

/// Perplexity from a mean negative log-likelihood per token: exp(nll).
pub fn perplexity(mean_nll: f64) -> f64 {
    mean_nll.exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use recur_tape::{Tape, Tensor};

    #[test]
    fn uniform_predictions_have_perplexity_equal_to_the_vocabulary() {
        let tape = Tape::new();
        let logits = tape.constant(Tensor::<f64>::zeros(&[4, 65]));
        let nll = logits
            .cross_entropy(&[0, 5, 64, 3], None, Reduction::Mean)
            .item();
        approx::assert_relative_eq!(perplexity(nll), 65.0, max_relative = 1e-12);
    }
}
