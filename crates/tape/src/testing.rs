//! Test helpers shared by the op tests: random inputs and a gradcheck over several seeds.

use crate::gradcheck::gradcheck;
use crate::{Tape, Tensor, Var};
use rand::SeedableRng;

/// Gradchecks `f` at random inputs in [-1, 1) of the given shapes, for three seeds.
pub fn check_grad<F>(shapes: &[&[usize]], f: F)
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    for seed in 0..3 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let inputs: Vec<Tensor<f64>> = shapes
            .iter()
            .map(|s| Tensor::uniform(s, -1.0, 1.0, &mut rng))
            .collect();
        let report = gradcheck(&f, &inputs);
        assert!(report.passed, "seed {seed}, shapes {shapes:?}: {report}");
    }
}

/// A smooth map of a variable into [0.5, 1.5], for denominators and logarithms.
pub fn positive(v: Var<'_, f64>) -> Var<'_, f64> {
    v.square() * 0.5 + 0.5
}
