//! Optimizers with PyTorch's update equations (SGD with momentum/nesterov/weight decay,
//! Adam, AdamW) and learning-rate schedules.

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamOptions};
pub use schedule::{LambdaLr, Schedule, StepLr};
pub use sgd::{Sgd, SgdOptions};

use crate::params::{ParamGrads, ParamStore};
use recur_tape::{Element, Tensor};

/// Updates parameters from their gradients, keeping whatever state it needs per parameter.
pub trait Optimizer<T: Element> {
    /// One update of every parameter that has a gradient.
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>);
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// The optimizer's state as named tensors (`<slot>.<parameter name>`), for checkpoints.
    fn state_tensors(&self, params: &ParamStore<T>) -> Vec<(String, Tensor<T>)>;
    /// Restores state saved by [`Optimizer::state_tensors`]; unknown names are ignored.
    fn load_state_tensors(&mut self, params: &ParamStore<T>, tensors: &[(String, Tensor<T>)]);
}

/// Per-parameter state tensors (`slot.param_name`) for a list of optional buffers.
pub(crate) fn named_slots<T: Element>(
    slot: &str,
    params: &ParamStore<T>,
    buffers: &[Option<Tensor<T>>],
) -> Vec<(String, Tensor<T>)> {
    params
        .ids()
        .filter_map(|id| {
            buffers
                .get(id.index())
                .and_then(Option::as_ref)
                .map(|b| (format!("{slot}.{}", params.name(id)), b.clone()))
        })
        .collect()
}

/// Fills `buffers` from tensors named `slot.param_name` whose shape matches the parameter.
pub(crate) fn load_slots<T: Element>(
    slot: &str,
    params: &ParamStore<T>,
    tensors: &[(String, Tensor<T>)],
    buffers: &mut Vec<Option<Tensor<T>>>,
) {
    buffers.resize(params.len(), None);
    for id in params.ids() {
        let key = format!("{slot}.{}", params.name(id));
        if let Some((_, t)) = tensors
            .iter()
            .find(|(n, t)| *n == key && t.shape() == params.get(id).shape())
        {
            buffers[id.index()] = Some(t.clone());
        }
    }
}
