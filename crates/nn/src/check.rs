//! Gradient checks of code that uses parameters: the parameters join the inputs of
//! `recur_tape::gradcheck`, so a layer or a user's cell is checked with respect to both.

use crate::params::ParamStore;
use crate::session::{Mode, Session};
use recur_tape::{gradcheck, GradcheckReport, Tensor, Var};

/// Gradchecks `f(session, inputs)` with respect to `inputs` and every parameter in `store`
/// (f64, evaluation mode).
pub fn gradcheck_params<F>(store: &ParamStore<f64>, inputs: &[Tensor<f64>], f: F) -> GradcheckReport
where
    F: for<'t, 's> Fn(&Session<'t, 's, f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let n = inputs.len();
    let mut all = inputs.to_vec();
    all.extend(store.iter().map(|(_, t)| t.clone()));
    gradcheck(
        |tape, vars| {
            let s = Session::new(tape, store, Mode::Eval, 0);
            for (k, id) in store.ids().enumerate() {
                s.bind_param(id, vars[n + k]);
            }
            f(&s, &vars[..n])
        },
        &all,
    )
}
