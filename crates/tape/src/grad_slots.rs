//! The gradients of one backward pass: a slot per tape node, filled as backward walks the
//! tape in reverse. Three tricks keep it cheap, and all of them live here:
//! - an empty slot takes the first gradient added to it as it is, without a copy or a
//!   zero-filled accumulator;
//! - a view's gradient is passed to its input's leading values without running an op, and
//!   a slot is made with room for every view extension it will get ([`GradSlots::room`]);
//! - weight-gradient terms aᵀ·b wait in [`Deferred`] and are summed in blocks, before
//!   anything reads their slot ([`GradSlots::flush`]).

use crate::deferred::{Deferred, Products};
use crate::shape::numel;
use crate::tape::{Gradients, Node};
use crate::{Element, Tensor};

/// One gradient slot per node of a tape (`nodes`, passed to the methods that need the
/// nodes' values or ops).
pub(crate) struct GradSlots<T: Element> {
    slots: Vec<Option<Tensor<T>>>,
    deferred: Deferred<T>,
}

impl<T: Element> GradSlots<T> {
    /// Empty slots for the first `top` nodes; the products aᵀ·b added for the nodes in
    /// `kept` are handed back by [`finish`](Self::finish) rather than summed.
    pub(crate) fn new(top: usize, kept: Vec<usize>) -> Self {
        let mut slots = Vec::with_capacity(top);
        slots.resize_with(top, || None);
        GradSlots {
            slots,
            deferred: Deferred::new(kept),
        }
    }

    /// Starts backward from node `id` with gradient `grad` (of the node's shape).
    pub(crate) fn seed(&mut self, nodes: &[Node<T>], id: usize, grad: Tensor<T>) {
        let value = &nodes[id].value;
        assert_eq!(
            grad.shape(),
            value.shape(),
            "backward_seeded: seed of shape {:?} for a value of shape {:?}",
            grad.shape(),
            value.shape()
        );
        self.add(id, grad);
    }

    /// Sums the terms waiting for node `id` into its slot: call before reading it.
    pub(crate) fn flush(&mut self, id: usize) {
        self.deferred.flush(id, &mut self.slots);
    }

    /// Moves the gradients of nodes `ids` out (`None` where nothing reached one).
    pub(crate) fn take<C: FromIterator<Option<Tensor<T>>>>(
        &mut self,
        ids: std::ops::Range<usize>,
    ) -> C {
        ids.map(|j| self.slots.get_mut(j).and_then(Option::take))
            .collect()
    }

    /// Adds `grad` to node `id`'s gradient; an empty slot takes `grad` itself.
    pub(crate) fn add(&mut self, id: usize, grad: Tensor<T>) {
        match &mut self.slots[id] {
            Some(acc) => add_into(acc.data_mut(), grad.data()),
            empty => *empty = Some(grad),
        }
    }

    /// Adds a view's gradient `grad` to the leading values of node `id`'s gradient (the
    /// view's input). An empty slot takes `grad` itself extended with zeros to the input's
    /// size: in place, when `grad` was made with [`room`](Self::room).
    pub(crate) fn add_leading(&mut self, nodes: &[Node<T>], id: usize, grad: Tensor<T>) {
        let input = &nodes[id].value;
        match &mut self.slots[id] {
            Some(acc) => add_into(acc.data_mut(), grad.data()),
            empty => {
                let mut g = grad.into_vec();
                g.resize(input.numel(), T::zero());
                *empty = Some(Tensor::from_vec(g, input.shape()));
            }
        }
    }

    /// The slot of node `id`, to fill directly (made with [`room`](Self::room) if empty).
    pub(crate) fn slot(&mut self, id: usize) -> &mut Option<Tensor<T>> {
        &mut self.slots[id]
    }

    /// How many values node `id`'s gradient may grow to: a view's gradient is extended
    /// with zeros to its input's size, and that input may be a view in turn, so a gradient
    /// made with this capacity takes every extension in place, where a fuller vector would
    /// be reallocated and copied (an RNN's output sequence sliced off its final states).
    pub(crate) fn room(nodes: &[Node<T>], mut id: usize) -> usize {
        let mut room = nodes[id].value.numel();
        while nodes[id].op.as_ref().is_some_and(|op| op.is_view()) {
            id = nodes[id].inputs[0];
            room = room.max(nodes[id].value.numel());
        }
        room
    }

    /// Node `id`'s gradient to add into: zeros of its shape first if it has none yet.
    pub(crate) fn accumulator(&mut self, nodes: &[Node<T>], id: usize) -> &mut [T] {
        let room = Self::room(nodes, id);
        accumulator(&mut self.slots[id], nodes[id].value.shape(), room)
    }

    /// Adds aᵀ·b to node `id`'s gradient, now or summed with the node's next terms.
    pub(crate) fn add_product(
        &mut self,
        nodes: &[Node<T>],
        id: usize,
        a: &Tensor<T>,
        b: &Tensor<T>,
    ) {
        let shape = nodes[id].value.shape();
        self.deferred.add(id, shape, &mut self.slots[id], a, b);
    }

    /// Sums every waiting term into its slot: the pass's gradients.
    pub(crate) fn finish(mut self) -> Gradients<T> {
        let products: Vec<(usize, Products<T>)> = self.deferred.finish(&mut self.slots);
        Gradients::new(self.slots, products)
    }
}

/// A gradient slot's values to add into, zeros of `shape` first if it has none yet, made
/// with capacity for `room` values (see [`GradSlots::room`]).
pub(crate) fn accumulator<'g, T: Element>(
    slot: &'g mut Option<Tensor<T>>,
    shape: &[usize],
    room: usize,
) -> &'g mut [T] {
    slot.get_or_insert_with(|| {
        let n = numel(shape);
        let mut zeros = Vec::with_capacity(room.max(n));
        zeros.resize(n, T::zero());
        Tensor::from_vec(zeros, shape)
    })
    .data_mut()
}

fn add_into<T: Element>(acc: &mut [T], grad: &[T]) {
    acc.iter_mut().zip(grad).for_each(|(a, &b)| *a += b);
}

#[cfg(test)]
#[path = "grad_slots_tests.rs"]
mod tests;
