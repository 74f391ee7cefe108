//! Named parameters that persist across steps, under PyTorch's names, and their gradients.

use crate::parallel::{map_parts, PART};
use recur_tape::kernels::simd::widest;
use recur_tape::{Element, Tensor};
use std::collections::HashMap;

/// A handle to one parameter in a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// Its position in registration order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Owns a model's parameters by name (`encoder.rnn.weight_ih_l0`), in registration order.
#[derive(Clone, Debug, Default)]
pub struct ParamStore<T: Element> {
    names: Vec<String>,
    values: Vec<Tensor<T>>,
    index: HashMap<String, ParamId>,
}

impl<T: Element> ParamStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        ParamStore {
            names: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Registers a parameter; panics if the name is taken (two layers with one prefix).
    pub fn add(&mut self, name: impl Into<String>, value: Tensor<T>) -> ParamId {
        let name = name.into();
        let id = ParamId(self.values.len());
        assert!(
            self.index.insert(name.clone(), id).is_none(),
            "ParamStore::add: parameter {name:?} registered twice"
        );
        self.names.push(name);
        self.values.push(value);
        id
    }

    /// The value of parameter `id`.
    pub fn get(&self, id: ParamId) -> &Tensor<T> {
        &self.values[id.0]
    }

    /// The value of parameter `id`, to change in place.
    pub fn get_mut(&mut self, id: ParamId) -> &mut Tensor<T> {
        &mut self.values[id.0]
    }

    /// Every value, mutably, in registration order (for optimizer steps).
    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, Tensor<T>> {
        self.values.iter_mut()
    }

    /// The name of parameter `id`.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// The id of the parameter called `name`.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.index.get(name).copied()
    }

    /// How many parameters are registered.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every parameter's handle, in registration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.values.len()).map(ParamId)
    }

    /// (name, value) pairs in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor<T>)> {
        self.names.iter().map(String::as_str).zip(&self.values)
    }

    /// A store holding `values` at their ids (and empty placeholders elsewhere), for
    /// recomputing part of a model from parameter values alone.
    pub(crate) fn at_ids(len: usize, values: Vec<(ParamId, Tensor<T>)>) -> Self {
        let mut slots: Vec<Option<Tensor<T>>> = vec![None; len];
        for (id, v) in values {
            slots[id.0] = Some(v);
        }
        let mut store = ParamStore::new();
        for (i, v) in slots.into_iter().enumerate() {
            store.add(format!("p{i}"), v.unwrap_or_else(|| Tensor::zeros(&[0])));
        }
        store
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(Tensor::numel).sum()
    }
}

/// Σ x², in 16 interleaved partial sums so that the loop vectorizes.
fn sum_of_squares<T: Element>(xs: &[T]) -> T {
    const LANES: usize = 16;
    widest(
        #[inline(always)]
        || {
            let mut lanes = [T::zero(); LANES];
            let blocks = xs.chunks_exact(LANES);
            let rest = blocks.remainder();
            for block in blocks {
                for (s, &x) in lanes.iter_mut().zip(block) {
                    *s += x * x;
                }
            }
            let tail = rest.iter().fold(T::zero(), |s, &x| s + x * x);
            lanes.iter().fold(tail, |s, &v| s + v)
        },
    )
}

/// Joins a module prefix and a parameter name with a dot (`"enc"`, `"weight"` → `"enc.weight"`).
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Gradients by parameter, as handed from a backward pass to an optimizer.
#[derive(Clone, Debug)]
pub struct ParamGrads<T: Element> {
    pub(crate) grads: Vec<Option<Tensor<T>>>,
}

impl<T: Element> ParamGrads<T> {
    /// No gradient for any of `len` parameters.
    pub fn empty(len: usize) -> Self {
        ParamGrads {
            grads: vec![None; len],
        }
    }

    /// The gradient of parameter `id`, if backward reached it.
    pub fn get(&self, id: ParamId) -> Option<&Tensor<T>> {
        self.grads.get(id.0).and_then(Option::as_ref)
    }

    /// Sets the gradient of parameter `id`.
    pub fn set(&mut self, id: ParamId, grad: Tensor<T>) {
        self.grads[id.0] = Some(grad);
    }

    /// Every gradient present, with its parameter.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor<T>)> {
        self.grads
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (ParamId(i), g)))
    }

    /// ‖g‖₂ over all parameters together. The sum of squares runs over fixed parts (the
    /// threads of [`parallel::set_threads`](crate::parallel::set_threads) share them), so the
    /// result does not depend on the thread count.
    pub fn global_norm(&self) -> T {
        let parts: Vec<&[T]> = self
            .iter()
            .flat_map(|(_, g)| g.data().chunks(PART))
            .collect();
        map_parts(parts, |p| p.len(), sum_of_squares)
            .into_iter()
            .fold(T::zero(), |s, v| s + v)
            .sqrt()
    }

    /// Global-norm clipping, g ← min(1, θ/‖g‖)·g; returns ‖g‖ before clipping.
    pub fn clip_global_norm(&mut self, max_norm: T) -> T {
        let norm = self.global_norm();
        // As torch.nn.utils.clip_grad_norm_: coefficient θ / (‖g‖ + 1e-6), applied if below 1.
        let scale = max_norm / (norm + T::of(1e-6));
        if scale < T::one() {
            self.scale(scale);
        }
        norm
    }

    /// Panics unless every gradient is for one of the first `len` parameters (the passes
    /// below walk gradients beside parameters, which would skip the rest silently).
    pub(crate) fn assert_within(&self, len: usize, what: &str) {
        let beyond = self.grads.iter().skip(len).position(Option::is_some);
        assert!(
            beyond.is_none(),
            "{what}: a gradient for parameter {} of a set of {len}",
            len + beyond.unwrap_or(0)
        );
    }

    /// Adds another set of gradients into this one (summing data-parallel shards). A
    /// parameter without a gradient here takes the other's tensor, sharing its storage; see
    /// [`ParamGrads::sum`] to sum shards that are not needed after.
    pub fn accumulate(&mut self, other: &ParamGrads<T>) {
        self.absorb(other.clone(), "ParamGrads::accumulate");
    }

    /// The sum of data-parallel shards' gradients for `len` parameters, added in shard
    /// order. Each parameter's sum is made in the first tensor for it, which no one else
    /// holds then, so it is added to in place (where [`accumulate`](Self::accumulate) into
    /// an empty set would share that tensor with its shard and copy it on the first add).
    pub fn sum(shards: impl IntoIterator<Item = ParamGrads<T>>, len: usize) -> Self {
        let mut total = ParamGrads::empty(len);
        for shard in shards {
            total.absorb(shard, "ParamGrads::sum");
        }
        total
    }

    fn absorb(&mut self, other: ParamGrads<T>, what: &str) {
        other.assert_within(self.grads.len(), what);
        let mut taken = Vec::new();
        for (mine, theirs) in self.grads.iter_mut().zip(other.grads) {
            match (mine, theirs) {
                (Some(mine), Some(theirs)) => taken.push((mine, theirs)),
                (slot, Some(theirs)) => *slot = Some(theirs),
                (_, None) => {}
            }
        }
        let parts: Vec<_> = taken
            .iter_mut()
            .flat_map(|(mine, theirs)| {
                mine.data_mut()
                    .chunks_mut(PART)
                    .zip(theirs.data().chunks(PART))
            })
            .collect();
        map_parts(
            parts,
            |(a, _)| a.len(),
            |(a, b)| {
                widest(
                    #[inline(always)]
                    || a.iter_mut().zip(b).for_each(|(a, &b)| *a += b),
                )
            },
        );
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: T) {
        let parts: Vec<&mut [T]> = self
            .grads
            .iter_mut()
            .flatten()
            .flat_map(|g| g.data_mut().chunks_mut(PART))
            .collect();
        map_parts(
            parts,
            |g| g.len(),
            |g| {
                widest(
                    #[inline(always)]
                    || g.iter_mut().for_each(|v| *v *= factor),
                )
            },
        );
    }

    /// Whether every gradient is finite (no NaN or infinity).
    pub fn all_finite(&self) -> bool {
        self.iter()
            .all(|(_, g)| g.data().iter().all(|v| v.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_registers_by_name_and_rejects_duplicates() {
        let mut s = ParamStore::<f32>::new();
        let a = s.add("enc.weight", Tensor::zeros(&[2, 3]));
        let b = s.add(join_name("enc", "bias"), Tensor::zeros(&[2]));
        assert_eq!(s.find("enc.bias"), Some(b));
        assert_eq!(s.name(a), "enc.weight");
        assert_eq!(s.num_elements(), 8);
        let dup = std::panic::catch_unwind(move || {
            let mut s = s;
            s.add("enc.weight", Tensor::zeros(&[1]));
        });
        assert!(dup.is_err());
    }

    #[test]
    #[should_panic(expected = "ParamGrads::accumulate: a gradient for parameter 2 of a set of 2")]
    fn gradients_beyond_the_set_are_refused() {
        let mut mine = ParamGrads::<f64>::empty(2);
        let mut theirs = ParamGrads::<f64>::empty(3);
        theirs.set(ParamId(2), Tensor::from_vec(vec![1.0], &[1]));
        mine.accumulate(&theirs);
    }

    /// Summing shards moves each parameter's first gradient in and adds the others to it in
    /// place, in shard order; the shards' own tensors are not written.
    #[test]
    fn shards_sum_in_order_into_the_first_gradient_of_each_parameter() {
        let grad = |v: &[f64]| Tensor::from_vec(v.to_vec(), &[v.len()]);
        let mut first = ParamGrads::<f64>::empty(3);
        first.set(ParamId(0), grad(&[1.0, 2.0]));
        let kept = grad(&[10.0]);
        let mut second = ParamGrads::<f64>::empty(3);
        second.set(ParamId(0), grad(&[0.5, 0.25]));
        second.set(ParamId(1), kept.clone());
        let mut third = ParamGrads::<f64>::empty(3);
        third.set(ParamId(1), grad(&[-1.0]));
        let first_values = first.get(ParamId(0)).unwrap().data().as_ptr();
        let sum = ParamGrads::sum([first, second, third], 3);
        let summed = sum.get(ParamId(0)).unwrap();
        assert_eq!(summed.data(), &[1.5, 2.25]);
        assert_eq!(
            summed.data().as_ptr(),
            first_values,
            "added in place, not copied"
        );
        assert_eq!(sum.get(ParamId(1)).unwrap().data(), &[9.0]);
        assert!(sum.get(ParamId(2)).is_none());
        assert_eq!(
            kept.data(),
            &[10.0],
            "a tensor still held elsewhere is copied on write"
        );
        assert!(ParamGrads::<f64>::sum([], 2).iter().next().is_none());
    }

    #[test]
    fn clipping_scales_to_the_threshold_and_returns_the_old_norm() {
        let mut g = ParamGrads::<f64>::empty(2);
        g.set(ParamId(0), Tensor::from_vec(vec![3.0, 0.0], &[2]));
        g.set(ParamId(1), Tensor::from_vec(vec![4.0], &[1]));
        assert_eq!(g.clip_global_norm(1.0), 5.0);
        approx::assert_relative_eq!(g.global_norm(), 1.0, epsilon = 1e-6);
        approx::assert_relative_eq!(g.get(ParamId(0)).unwrap().data()[0], 0.6, epsilon = 1e-6);
        // Below the threshold nothing changes.
        assert_eq!(g.clip_global_norm(10.0), g.global_norm());
    }
}
