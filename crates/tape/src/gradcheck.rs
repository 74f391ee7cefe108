//! Gradient checking: the tape's gradients against central finite differences in f64.
//! Public API, so that ops and cells written by users are checked the same way.

use crate::{Tape, Tensor, Var};
use rand::{Rng, SeedableRng};
use std::fmt;

/// Tolerances and step of a gradient check. An element passes when
/// `|analytic − numeric| ≤ atol + rtol·|numeric|`.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// The finite-difference step: each element is moved by ±eps.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Seed of the random weights that reduce a non-scalar output to a scalar.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-7,
            rtol: 1e-5,
            seed: 0,
        }
    }
}

/// The outcome of a gradient check, naming the worst element found.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Whether every element was within tolerance.
    pub passed: bool,
    /// Largest |analytic − numeric| over all elements.
    pub max_abs_error: f64,
    /// Largest |analytic − numeric| / max(|numeric|, atol) over all elements.
    pub max_rel_error: f64,
    /// The element that exceeded its tolerance by most (or came closest to it).
    pub worst_input: usize,
    /// The flat index of that element within its input.
    pub worst_index: usize,
    /// The tape's gradient there.
    pub worst_analytic: f64,
    /// The finite-difference gradient there.
    pub worst_numeric: f64,
    /// Number of elements checked.
    pub checked: usize,
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck {}: max abs error {:.3e}, max rel error {:.3e} over {} elements; worst at input {} element {}: analytic {:.10e}, numeric {:.10e}",
            if self.passed { "passed" } else { "FAILED" },
            self.max_abs_error,
            self.max_rel_error,
            self.checked,
            self.worst_input,
            self.worst_index,
            self.worst_analytic,
            self.worst_numeric
        )
    }
}

/// Checks the gradients of `f` at `inputs` with default options.
///
/// `f` may return a tensor of any shape: it is reduced to a scalar by a fixed random
/// weighting, so that every output element's gradient is exercised.
pub fn gradcheck<F>(f: F, inputs: &[Tensor<f64>]) -> GradcheckReport
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradcheck`] with explicit tolerances.
pub fn gradcheck_with<F>(f: F, inputs: &[Tensor<f64>], opts: GradcheckOptions) -> GradcheckReport
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let mut weights: Option<Tensor<f64>> = None;
    let mut eval = |values: &[Tensor<f64>], grad: bool| -> (f64, Vec<Tensor<f64>>) {
        let tape = Tape::new();
        let vars: Vec<Var<f64>> = values.iter().map(|v| tape.var(v.clone())).collect();
        let out = f(&tape, &vars);
        let w = weights.get_or_insert_with(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
            let shape = out.shape();
            let n = shape.iter().product();
            Tensor::from_vec(
                (0..n)
                    .map(|_| rng.gen_range(0.5..1.5) * sign(&mut rng))
                    .collect(),
                &shape,
            )
        });
        let loss = (out * tape.constant(w.clone())).sum();
        let grads = if grad {
            let g = tape.backward(loss);
            vars.iter().map(|&v| g.wrt(v)).collect()
        } else {
            Vec::new()
        };
        (loss.item(), grads)
    };

    let (_, analytic) = eval(inputs, true);
    let mut report = GradcheckReport {
        passed: true,
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        worst_input: 0,
        worst_index: 0,
        worst_analytic: 0.0,
        worst_numeric: 0.0,
        checked: 0,
    };
    let mut worst_violation = -1.0;
    let mut probe: Vec<Tensor<f64>> = inputs.to_vec();
    for (k, input) in inputs.iter().enumerate() {
        for i in 0..input.numel() {
            let x = input.data()[i];
            probe[k].data_mut()[i] = x + opts.eps;
            let (up, _) = eval(&probe, false);
            probe[k].data_mut()[i] = x - opts.eps;
            let (down, _) = eval(&probe, false);
            probe[k].data_mut()[i] = x;
            let numeric = (up - down) / (2.0 * opts.eps);
            let a = analytic[k].data()[i];
            let abs = (a - numeric).abs();
            let violation = if abs.is_nan() {
                f64::INFINITY
            } else {
                abs / (opts.atol + opts.rtol * numeric.abs())
            };
            report.checked += 1;
            report.max_abs_error = report.max_abs_error.max(abs);
            report.max_rel_error = report.max_rel_error.max(abs / numeric.abs().max(opts.atol));
            if violation > worst_violation {
                worst_violation = violation;
                report.worst_input = k;
                report.worst_index = i;
                report.worst_analytic = a;
                report.worst_numeric = numeric;
            }
        }
    }
    report.passed = worst_violation <= 1.0;
    report
}

fn sign(rng: &mut impl Rng) -> f64 {
    if rng.gen_bool(0.5) {
        1.0
    } else {
        -1.0
    }
}

/// Panics with the report if the gradients of `f` at `inputs` are wrong.
pub fn assert_gradcheck<F>(f: F, inputs: &[Tensor<f64>])
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report = gradcheck(f, inputs);
    assert!(report.passed, "{report}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackwardCtx, Op};

    /// y = x², with a backward that is right (2x) or deliberately wrong (3x).
    struct Square {
        grad_factor: f64,
    }

    impl Op<f64> for Square {
        fn name(&self) -> &'static str {
            "square"
        }
        fn forward(&mut self, inputs: &[&Tensor<f64>]) -> Tensor<f64> {
            inputs[0].map(|x| x * x)
        }
        fn backward(&self, ctx: &mut BackwardCtx<'_, f64>) {
            let (x, g) = (ctx.input(0), ctx.grad_output());
            if let Some(gx) = ctx.grad_input(0) {
                for i in 0..gx.len() {
                    gx[i] += self.grad_factor * x.data()[i] * g.data()[i];
                }
            }
        }
    }

    fn inputs() -> Vec<Tensor<f64>> {
        vec![Tensor::from_vec(vec![0.3, -1.2, 0.7, 2.0], &[2, 2])]
    }

    #[test]
    fn user_op_with_correct_backward_passes() {
        let report = gradcheck(
            |tape, v| tape.apply(Square { grad_factor: 2.0 }, &[v[0]]).tanh(),
            &inputs(),
        );
        assert!(report.passed, "{report}");
        assert_eq!(report.checked, 4);
        assert!(report.max_abs_error < 1e-8);
    }

    #[test]
    fn wrong_backward_fails_and_names_the_worst_element() {
        let report = gradcheck(
            |tape, v| tape.apply(Square { grad_factor: 3.0 }, &[v[0]]),
            &inputs(),
        );
        assert!(!report.passed);
        // The error is |x|·|w|, largest at x = 2.0 (element 3) unless its weight is small.
        assert!(report.max_abs_error > 0.1);
        let x = inputs()[0].data()[report.worst_index];
        approx::assert_relative_eq!(
            report.worst_analytic / report.worst_numeric,
            1.5,
            max_relative = 1e-6
        );
        assert!(x != 0.0);
        assert!(report.to_string().contains("FAILED"));
    }

    #[test]
    #[should_panic(expected = "gradcheck FAILED")]
    fn assert_gradcheck_panics_on_wrong_backward() {
        assert_gradcheck(
            |tape, v| tape.apply(Square { grad_factor: 2.5 }, &[v[0]]),
            &inputs(),
        );
    }

    #[test]
    fn checks_every_input_of_a_multi_input_function() {
        let a = Tensor::from_vec(vec![0.1, 0.2, 0.3], &[3]);
        let b = Tensor::from_vec(vec![0.5, -0.5, 1.5], &[3]);
        let report = gradcheck(|_, v| (v[0] * v[1]).sigmoid(), &[a, b]);
        assert!(report.passed, "{report}");
        assert_eq!(report.checked, 6);
    }
}
