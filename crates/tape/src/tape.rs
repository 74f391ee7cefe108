//! The tape: an arena of recorded ops addressed by `Copy` handles (`Var`). Append order is a
//! topological order, so backward is one reverse loop over the arena, with no recursion.

use crate::deferred::Products;
use crate::grad_slots::GradSlots;
use crate::kernels::Precision;
use crate::op::{BackwardCtx, MultiOp, Op};
use crate::shape::Shape;
use crate::{Element, Tensor};
use smallvec::SmallVec;
use std::cell::{Cell, Ref, RefCell};
use std::fmt;

/// Records the ops of one forward pass so that backward can run them in reverse.
///
/// Build a fresh tape per training step (or [`Tape::clear`] one to keep its capacity);
/// parameters live outside it and come in as leaves through [`Tape::var`].
pub struct Tape<T: Element> {
    pub(crate) nodes: RefCell<Vec<Node<T>>>,
    recording: Cell<bool>,
    products: Cell<Precision>,
}

pub(crate) struct Node<T: Element> {
    pub(crate) value: Tensor<T>,
    pub(crate) inputs: SmallVec<[usize; 3]>,
    pub(crate) op: Option<NodeOp<T>>,
    pub(crate) requires_grad: bool,
}

/// The gradients of an op's outputs, `None` for those the loss does not reach.
pub(crate) type OutputGrads<T> = SmallVec<[Option<Tensor<T>>; 1]>;

/// What made a recorded node.
pub(crate) enum NodeOp<T: Element> {
    /// An op with one output: this node's value.
    One(Box<dyn Op<T>>),
    /// An op with several outputs, which are the `usize` nodes right after this one (this
    /// node's own value is empty).
    Many(Box<dyn MultiOp<T>>, usize),
    /// One of the outputs of the `Many` node before it: its gradient waits for that op.
    Output,
}

impl<T: Element> NodeOp<T> {
    pub(crate) fn is_view(&self) -> bool {
        matches!(self, NodeOp::One(op) if op.is_view())
    }
}

/// A handle to a value on a tape: small, `Copy`, and unable to outlive its tape.
pub struct Var<'t, T: Element> {
    tape: &'t Tape<T>,
    id: usize,
}

impl<T: Element> Clone for Var<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Element> Copy for Var<'_, T> {}

impl<T: Element> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A tape with room for `nodes` ops before it reallocates.
    pub fn with_capacity(nodes: usize) -> Self {
        Tape {
            nodes: RefCell::new(Vec::with_capacity(nodes)),
            recording: Cell::new(true),
            products: Cell::new(Precision::Full),
        }
    }

    /// A leaf that requires a gradient: a parameter or an input to differentiate.
    pub fn var(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push(Node {
            value,
            inputs: SmallVec::new(),
            op: None,
            requires_grad: true,
        })
    }

    /// A leaf that needs no gradient: data, targets, masks.
    pub fn constant(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push(Node {
            value,
            inputs: SmallVec::new(),
            op: None,
            requires_grad: false,
        })
    }

    /// Runs `op` forward on `inputs` and records it, so it takes part in backward exactly
    /// like a built-in op. Nothing is recorded in no-grad mode or when no input needs a
    /// gradient: the op then runs [`Op::forward_no_grad`] and the result is a plain
    /// constant.
    pub fn apply<O: Op<T>>(&self, mut op: O, inputs: &[Var<'_, T>]) -> Var<'_, T> {
        let (value, requires_grad) = self.run(op.name(), inputs, |values, requires| {
            if requires {
                op.forward(values)
            } else {
                op.forward_no_grad(values)
            }
        });
        if requires_grad {
            let inputs = inputs.iter().map(|v| v.id).collect();
            self.push(Node {
                value,
                inputs,
                op: Some(NodeOp::One(Box::new(op))),
                requires_grad,
            })
        } else {
            self.constant(value)
        }
    }

    /// [`apply`](Self::apply) for an op with several outputs: runs it and records it,
    /// returning one variable per output, in order.
    pub fn apply_multi<O: MultiOp<T>>(&self, mut op: O, inputs: &[Var<'_, T>]) -> Vec<Var<'_, T>> {
        let (values, requires_grad) = self.run(op.name(), inputs, |values, requires| {
            if requires {
                op.forward(values)
            } else {
                op.forward_no_grad(values)
            }
        });
        if !requires_grad {
            return values.into_iter().map(|v| self.constant(v)).collect();
        }
        let at = self.push(Node {
            value: Tensor::zeros(&[0]),
            inputs: inputs.iter().map(|v| v.id).collect(),
            op: Some(NodeOp::Many(Box::new(op), values.len())),
            requires_grad,
        });
        values
            .into_iter()
            .map(|value| {
                self.push(Node {
                    value,
                    inputs: SmallVec::from_slice(&[at.id]),
                    op: Some(NodeOp::Output),
                    requires_grad,
                })
            })
            .collect()
    }

    /// Runs `forward(input values, whether a gradient is wanted)` for the op `name`, and
    /// says whether its result needs recording (recording is on and an input needs a
    /// gradient).
    fn run<R>(
        &self,
        name: &str,
        inputs: &[Var<'_, T>],
        forward: impl FnOnce(&[&Tensor<T>], bool) -> R,
    ) -> (R, bool) {
        let nodes = self.nodes.borrow();
        let values: SmallVec<[&Tensor<T>; 4]> = inputs
            .iter()
            .map(|v| {
                assert!(
                    std::ptr::eq(v.tape, self),
                    "{name}: an input belongs to a different tape"
                );
                &nodes[v.id].value
            })
            .collect();
        let requires = self.recording.get() && inputs.iter().any(|v| nodes[v.id].requires_grad);
        (forward(&values, requires), requires)
    }

    /// Runs `f` with recording off: ops compute values but keep no graph.
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a>(&'a Cell<bool>, bool);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _restore = Restore(&self.recording, self.recording.replace(false));
        f()
    }

    /// Sets the operands' precision of the matrix products recorded from now on (`matmul`,
    /// `linear`, and the fused recurrent layers that read it): [`Precision::Bf16`] is mixed
    /// precision, each product's operands rounded to bf16 (weights once per version of their
    /// values) and summed in the element type, in forward and in backward; values, gradient
    /// sums and everything else stay in the element type.
    pub fn set_product_precision(&self, precision: Precision) {
        self.products.set(precision);
    }

    /// The operands' precision of products recorded now (see
    /// [`set_product_precision`](Self::set_product_precision)).
    pub fn product_precision(&self) -> Precision {
        self.products.get()
    }

    /// Whether ops are being recorded (false inside [`Tape::no_grad`]).
    pub fn is_recording(&self) -> bool {
        self.recording.get()
    }

    /// Number of values on the tape.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything recorded, keeping the arena's capacity for the next step.
    pub fn clear(&mut self) {
        self.nodes.get_mut().clear();
    }

    fn push(&self, node: Node<T>) -> Var<'_, T> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var {
            tape: self,
            id: nodes.len() - 1,
        }
    }

    /// Gradients of the scalar `loss` with respect to every leaf that requires one.
    ///
    /// One loop from `loss` down to the first node: each op adds its inputs' gradients in
    /// place. Gradients of intermediate values are freed as soon as they have been used.
    pub fn backward(&self, loss: Var<'_, T>) -> Gradients<T> {
        let shape = loss.shape();
        assert_eq!(
            shape.iter().product::<usize>(),
            1,
            "backward: the loss must be a single value, got shape {:?}",
            shape.as_slice()
        );
        assert!(
            loss.requires_grad(),
            "backward: the loss does not depend on any variable that requires a gradient"
        );
        self.backward_seeded(vec![(loss, Tensor::ones(&shape))])
    }

    /// Vector-Jacobian products: backward from several variables at once, each starting with
    /// the given gradient (a cotangent of its shape). Seeds of leaves or of values that need
    /// no gradient are kept as they are; a variable seeded twice gets the sum.
    pub fn backward_seeded(&self, seeds: Vec<(Var<'_, T>, Tensor<T>)>) -> Gradients<T> {
        self.backward_keeping_products(seeds, &[])
    }

    /// [`backward_seeded`](Self::backward_seeded), except that the products aᵀ·b that ops add
    /// to the gradients of `leaves` through
    /// [`BackwardCtx::add_transposed_product`] are not summed: they are handed back, in the
    /// order they were made ([`Gradients::take_products`]). A backward that continues an outer
    /// one on a scratch tape (checkpointing through time) passes them on to the outer
    /// gradients, so that they are summed in the same blocks as without the scratch tape.
    pub fn backward_keeping_products(
        &self,
        seeds: Vec<(Var<'_, T>, Tensor<T>)>,
        leaves: &[Var<'_, T>],
    ) -> Gradients<T> {
        let nodes = self.nodes.borrow();
        let top = seeds.iter().map(|(v, _)| v.id).max().map_or(0, |m| m + 1);
        let mut slots = GradSlots::new(top, leaves.iter().map(|v| v.id).collect());
        for (v, g) in seeds {
            slots.seed(&nodes, v.id, g);
        }
        for i in (0..top).rev() {
            let Some(op) = &nodes[i].op else { continue };
            slots.flush(i);
            let outputs = match op {
                // Its gradient waits in its slot for the op before it.
                NodeOp::Output => continue,
                NodeOp::One(_) => i..i + 1,
                &NodeOp::Many(_, outputs) => i + 1..i + 1 + outputs,
            };
            let grad_outputs: OutputGrads<T> = slots.take(outputs.clone());
            if grad_outputs.iter().all(Option::is_none) {
                continue;
            }
            if op.is_view() {
                let Ok([Some(grad_output)]) = grad_outputs.into_inner() else {
                    unreachable!("a view has one output, and it has a gradient")
                };
                let input = nodes[i].inputs[0];
                if nodes[input].requires_grad {
                    slots.add_leading(&nodes, input, grad_output);
                }
                continue;
            }
            let mut ctx = BackwardCtx::new(&nodes, i, outputs, &grad_outputs, &mut slots);
            match op {
                NodeOp::One(op) => op.backward(&mut ctx),
                NodeOp::Many(op, _) => op.backward(&mut ctx),
                NodeOp::Output => unreachable!("skipped above"),
            }
        }
        slots.finish()
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The position of this value on its tape.
    pub fn id(self) -> usize {
        self.id
    }

    /// The tape this value lives on.
    pub fn tape(self) -> &'t Tape<T> {
        self.tape
    }

    /// Borrows the value. Drop the borrow before recording more ops on the tape.
    pub fn value(self) -> Ref<'t, Tensor<T>> {
        Ref::map(self.tape.nodes.borrow(), |n| &n[self.id].value)
    }

    /// A copy of the value (sharing its storage, copied on write; a small slice of a larger
    /// value gets storage of its own, so that keeping it, e.g. a state carried to the next
    /// batch, does not keep the rest of the tape's values alive).
    pub fn to_tensor(self) -> Tensor<T> {
        self.value().clone().compact()
    }

    /// The shape of the value.
    pub fn shape(self) -> Shape {
        Shape::from_slice(self.value().shape())
    }

    /// The single value of a one-element variable (a loss, say).
    pub fn item(self) -> T {
        self.value().item()
    }

    /// Whether gradients flow into this value.
    pub fn requires_grad(self) -> bool {
        self.tape.nodes.borrow()[self.id].requires_grad
    }

    /// The same value as a new leaf that stops gradients (truncated BPTT carries state so).
    pub fn detach(self) -> Var<'t, T> {
        let value = self.to_tensor();
        self.tape.constant(value)
    }
}

impl<T: Element> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var#{} {:?}", self.id, *self.value())
    }
}

/// The result of [`Tape::backward`]: a gradient for every leaf that received one.
pub struct Gradients<T: Element> {
    grads: Vec<Option<Tensor<T>>>,
    products: Vec<(usize, Products<T>)>,
}

impl<T: Element> Gradients<T> {
    pub(crate) fn new(grads: Vec<Option<Tensor<T>>>, products: Vec<(usize, Products<T>)>) -> Self {
        Gradients { grads, products }
    }

    /// The gradient of `v`, or `None` if the loss does not depend on it.
    pub fn get(&self, v: Var<'_, T>) -> Option<&Tensor<T>> {
        self.grads.get(v.id).and_then(Option::as_ref)
    }

    /// Moves the gradient of `v` out (for optimizers, without a copy).
    pub fn take(&mut self, v: Var<'_, T>) -> Option<Tensor<T>> {
        self.grads.get_mut(v.id).and_then(Option::take)
    }

    /// The products aᵀ·b kept for `v` by [`Tape::backward_keeping_products`], in the order
    /// they were made: pass each to [`BackwardCtx::add_transposed_product`].
    pub fn take_products(&mut self, v: Var<'_, T>) -> Products<T> {
        self.products
            .iter_mut()
            .find(|(id, _)| *id == v.id)
            .map(|(_, p)| std::mem::take(p))
            .unwrap_or_default()
    }

    /// The gradient of `v`, or zeros of its shape if the loss does not depend on it.
    pub fn wrt(&self, v: Var<'_, T>) -> Tensor<T> {
        self.get(v)
            .cloned()
            .unwrap_or_else(|| Tensor::zeros(&v.shape()))
    }
}

#[cfg(test)]
#[path = "tape_tests.rs"]
mod tests;
