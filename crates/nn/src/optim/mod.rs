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
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (a schedule's step).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::{set_threads, PART};
    use rand::SeedableRng;

    /// Parameters larger than one part and smaller ones, with random gradients.
    fn problem(seed: u64) -> (ParamStore<f32>, [ParamGrads<f32>; 2]) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut store = ParamStore::new();
        for (name, len) in [("big", 2 * PART + 77), ("small", 9), ("mid", PART)] {
            store.add(name, Tensor::uniform(&[len], -1.0, 1.0, &mut rng));
        }
        let grads = [0, 1].map(|_| {
            let mut g = ParamGrads::empty(store.len());
            for id in store.ids() {
                let n = store.get(id).numel();
                g.set(id, Tensor::uniform(&[n], -2.0, 2.0, &mut rng));
            }
            g
        });
        (store, grads)
    }

    /// Summing two shards' gradients, clipping and two steps of each optimizer, run on
    /// `threads` threads: the parameters after, and the norm before clipping.
    fn train(threads: usize) -> Vec<(Vec<f32>, f32)> {
        set_threads(threads);
        let optimizers: Vec<Box<dyn Optimizer<f32>>> = vec![
            Box::new(Sgd::new(SgdOptions::new(0.1))),
            Box::new(Sgd::new(SgdOptions {
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: true,
                ..SgdOptions::new(0.1)
            })),
            Box::new(Adam::new(AdamOptions::adamw(0.01))),
        ];
        let runs = optimizers
            .into_iter()
            .map(|mut opt| {
                let (mut store, [mut grads, other]) = problem(4);
                grads.accumulate(&other);
                let norm = grads.clip_global_norm(1.0);
                opt.step(&mut store, &grads);
                opt.step(&mut store, &grads);
                let values = store.iter().flat_map(|(_, v)| v.data().to_vec()).collect();
                (values, norm)
            })
            .collect();
        set_threads(1);
        runs
    }

    #[test]
    fn gradient_passes_and_steps_are_identical_on_two_threads() {
        let (one, two) = (train(1), train(2));
        for ((a, norm_a), (b, norm_b)) in one.iter().zip(&two) {
            assert_eq!(norm_a.to_bits(), norm_b.to_bits());
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
        // The norm against a plain f64 sum over the summed gradients.
        let (_, [mut grads, other]) = problem(4);
        grads.accumulate(&other);
        let want = grads
            .iter()
            .flat_map(|(_, g)| g.data().iter().map(|&v| f64::from(v) * f64::from(v)))
            .sum::<f64>()
            .sqrt();
        approx::assert_relative_eq!(f64::from(one[0].1), want, max_relative = 1e-6);
    }
}
