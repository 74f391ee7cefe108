//! Tests of the gradient slots: a first gradient taken without a copy, views' room and
//! their in-place extension, deferred products summed before a slot is read.

use super::GradSlots;
use crate::{Tape, Tensor};

/// The first gradient added to a slot becomes it (same storage); the next is added.
#[test]
fn an_empty_slot_takes_its_first_gradient_as_it_is() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_vec(vec![1.0, 2.0], &[2]));
    let nodes = tape.nodes.borrow();
    let mut slots = GradSlots::new(1, Vec::new());
    let first = Tensor::from_vec(vec![0.5, -1.0], &[2]);
    let at = first.data().as_ptr();
    slots.seed(&nodes, x.id(), first);
    let taken: Vec<Option<Tensor<f64>>> = slots.take(0..1);
    let grad = taken[0].as_ref().expect("seeded");
    assert_eq!(grad.data().as_ptr(), at);
    slots.add(x.id(), grad.clone());
    slots.add(x.id(), Tensor::from_vec(vec![1.0, 1.0], &[2]));
    let again: Vec<Option<Tensor<f64>>> = slots.take(0..1);
    assert_eq!(again[0].as_ref().unwrap().data(), &[1.5, 0.0]);
}

/// A view's gradient extended to its input: in place when it was made with room, added to
/// the leading values when the input already has a gradient.
#[test]
fn a_view_gradient_is_extended_in_place_or_added_to_the_leading_values() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::zeros(&[4, 2]));
    let head = x.slice(0, 0..2);
    let nodes = tape.nodes.borrow();
    let mut slots = GradSlots::new(2, Vec::new());
    let room = GradSlots::room(&nodes, head.id());
    let mut values = Vec::with_capacity(room);
    values.extend([1.0, 2.0, 3.0, 4.0]);
    let at = values.as_ptr();
    slots.add_leading(&nodes, x.id(), Tensor::from_vec(values, &[2, 2]));
    slots.add_leading(&nodes, x.id(), Tensor::from_vec(vec![1.0; 4], &[2, 2]));
    let taken: Vec<Option<Tensor<f64>>> = slots.take(x.id()..x.id() + 1);
    let grad = taken[0].as_ref().expect("added");
    assert_eq!(grad.shape(), &[4, 2]);
    assert_eq!(grad.data(), &[2.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(grad.data().as_ptr(), at, "extended without a copy");
}

/// Products aᵀ·b with few rows wait; a flush sums them into the slot, and `finish` sums
/// what still waits, except for kept nodes, whose products are handed back.
#[test]
fn deferred_products_are_summed_before_their_slot_is_read() {
    let tape = Tape::<f64>::new();
    let w = tape.var(Tensor::zeros(&[2, 3]));
    let kept = tape.var(Tensor::zeros(&[2, 3]));
    let nodes = tape.nodes.borrow();
    let mut slots = GradSlots::new(2, vec![kept.id()]);
    let a = Tensor::from_vec(vec![1.0, 2.0], &[1, 2]);
    let b = Tensor::from_vec(vec![1.0, 0.0, -1.0], &[1, 3]);
    for _ in 0..3 {
        slots.add_product(&nodes, w.id(), &a, &b);
        slots.add_product(&nodes, kept.id(), &a, &b);
    }
    assert!(slots.slot(w.id()).is_none(), "one-row products wait");
    slots.flush(w.id());
    let summed = slots.slot(w.id()).clone().expect("flushed");
    assert_eq!(summed.data(), &[3.0, 0.0, -3.0, 6.0, 0.0, -6.0]);
    slots.add_product(&nodes, w.id(), &a, &b);
    let mut grads = slots.finish();
    assert_eq!(
        grads.get(w).unwrap().data(),
        &[4.0, 0.0, -4.0, 8.0, 0.0, -8.0]
    );
    assert!(grads.get(kept).is_none());
    assert_eq!(grads.take_products(kept).len(), 3);
}

/// A view's gradient is extended to its input's size (and on up a chain of views), so
/// its accumulator is made with that much room; anything else gets its own size.
#[test]
fn gradients_of_views_have_room_for_what_they_view() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::zeros(&[10, 2]));
    let head = x.slice(0, 0..6);
    let rows = head.reshape(&[3, 4]);
    let inner = x.slice(0, 2..6);
    let activated = rows.tanh();
    let nodes = tape.nodes.borrow();
    assert_eq!(GradSlots::room(&nodes, rows.id()), 20);
    assert_eq!(GradSlots::room(&nodes, head.id()), 20);
    assert_eq!(GradSlots::room(&nodes, activated.id()), 12);
    // Not a leading slice: its gradient is added at its place, not extended.
    assert_eq!(GradSlots::room(&nodes, inner.id()), 8);
    drop(nodes);
    let grads = tape.backward(activated.sum() + inner.sum());
    let dx = grads.wrt(x).data().to_vec();
    let want: Vec<f64> = (0..20)
        .map(|i| f64::from(u8::from(i < 12)) + f64::from(u8::from((4..12).contains(&i))))
        .collect();
    assert_eq!(dx, want);
}
