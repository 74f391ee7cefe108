//! The op trait every recorded operation implements, built-in or written by a user, and the
//! context its backward receives.

use crate::grad_slots::GradSlots;
use crate::kernels::simd::widest;
use crate::tape::Node;
use crate::{Element, Tensor};

/// An operation the tape can record: a forward that computes the output from the inputs'
/// values (saving in `self` whatever backward needs), and a backward that adds the inputs'
/// gradients. Record it with [`Tape::apply`](crate::Tape::apply).
///
/// ```
/// use recur_tape::{BackwardCtx, Op, Tape, Tensor};
///
/// /// y = x³, elementwise.
/// struct Cube;
/// impl Op<f64> for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn forward(&mut self, inputs: &[&Tensor<f64>]) -> Tensor<f64> {
///         inputs[0].map(|x| x * x * x)
///     }
///     fn backward(&self, ctx: &mut BackwardCtx<'_, f64>) {
///         let (x, g) = (ctx.input(0), ctx.grad_output());
///         if let Some(gx) = ctx.grad_input(0) {
///             for ((gx, &x), &g) in gx.iter_mut().zip(x.data()).zip(g.data()) {
///                 *gx += 3.0 * x * x * g;
///             }
///         }
///     }
/// }
///
/// let tape = Tape::new();
/// let x = tape.var(Tensor::from_vec(vec![2.0], &[1]));
/// let y = tape.apply(Cube, &[x]).sum();
/// assert_eq!(tape.backward(y).wrt(x).data(), &[12.0]);
/// ```
pub trait Op<T: Element>: 'static {
    /// A short name used in error messages.
    fn name(&self) -> &'static str;
    /// Computes the output. Called once, when the op is recorded.
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T>;
    /// Computes the output when backward will never run for it (in no-grad mode, or when
    /// no input needs a gradient), in place of [`Op::forward`]: an op that saves values
    /// for backward can skip them here. The default is `forward`.
    fn forward_no_grad(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        self.forward(inputs)
    }
    /// Adds ∂loss/∂input into `ctx.grad_input(k)` for each input `k` that needs it.
    /// Gradients must be accumulated (`+=`), never overwritten.
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>);
    /// Whether the output is the single input's leading elements in the same order, under
    /// any shape: all of them (reshape) or the first entries along the first axis (a leading
    /// slice). The tape then hands the output's gradient to the input, extended with zeros
    /// for the rest, instead of calling [`Op::backward`].
    fn is_view(&self) -> bool {
        false
    }
}

/// An operation with several outputs (a sequence layer's outputs and its final states):
/// like [`Op`], but forward returns each output, and backward reads each one's gradient with
/// [`BackwardCtx::grad_output_at`]. Record it with
/// [`Tape::apply_multi`](crate::Tape::apply_multi), which returns one variable per output.
///
/// ```
/// use recur_tape::{BackwardCtx, MultiOp, Tape, Tensor};
///
/// /// (x + y, x·y), elementwise.
/// struct SumAndProduct;
/// impl MultiOp<f64> for SumAndProduct {
///     fn name(&self) -> &'static str { "sum_and_product" }
///     fn forward(&mut self, inputs: &[&Tensor<f64>]) -> Vec<Tensor<f64>> {
///         let (x, y) = (inputs[0].data(), inputs[1].data());
///         let sum = x.iter().zip(y).map(|(a, b)| a + b).collect();
///         let product = x.iter().zip(y).map(|(a, b)| a * b).collect();
///         vec![Tensor::from_vec(sum, inputs[0].shape()), Tensor::from_vec(product, inputs[0].shape())]
///     }
///     fn backward(&self, ctx: &mut BackwardCtx<'_, f64>) {
///         let (x, y) = (ctx.input(0).data().to_vec(), ctx.input(1).data().to_vec());
///         let n = x.len();
///         // An output the loss does not reach has no gradient.
///         let gs = ctx.grad_output_at(0).map_or(vec![0.0; n], |g| g.data().to_vec());
///         let gp = ctx.grad_output_at(1).map_or(vec![0.0; n], |g| g.data().to_vec());
///         ctx.add_grad_input(0, (0..n).map(|i| gs[i] + gp[i] * y[i]).collect());
///         ctx.add_grad_input(1, (0..n).map(|i| gs[i] + gp[i] * x[i]).collect());
///     }
/// }
///
/// let tape = Tape::new();
/// let x = tape.var(Tensor::from_vec(vec![2.0], &[1]));
/// let y = tape.var(Tensor::from_vec(vec![5.0], &[1]));
/// let out = tape.apply_multi(SumAndProduct, &[x, y]);
/// let grads = tape.backward((out[0] * 3.0 + out[1]).sum());
/// assert_eq!(grads.wrt(x).data(), &[8.0]); // 3 + y
/// ```
pub trait MultiOp<T: Element>: 'static {
    /// A short name used in error messages.
    fn name(&self) -> &'static str;
    /// Computes the outputs. Called once, when the op is recorded.
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Vec<Tensor<T>>;
    /// The outputs when backward will never run for them (see [`Op::forward_no_grad`]).
    fn forward_no_grad(&mut self, inputs: &[&Tensor<T>]) -> Vec<Tensor<T>> {
        self.forward(inputs)
    }
    /// Adds ∂loss/∂input into the inputs' gradients, from the outputs' gradients
    /// ([`BackwardCtx::grad_output_at`]; at least one output has one).
    fn backward(&self, ctx: &mut BackwardCtx<'_, T>);
}

/// What an op's backward sees: its inputs and output values, the outputs' gradients, and
/// accumulators for the inputs' gradients.
pub struct BackwardCtx<'a, T: Element> {
    nodes: &'a [Node<T>],
    inputs: &'a [usize],
    /// The nodes holding the op's outputs (the op's own node for a one-output op).
    outputs: &'a [Node<T>],
    grad_outputs: &'a [Option<Tensor<T>>],
    /// The inputs' gradients (the slots of nodes before the op's).
    slots: &'a mut GradSlots<T>,
}

impl<'a, T: Element> BackwardCtx<'a, T> {
    /// The context of node `id`'s op, whose outputs are the nodes `outputs`, with their
    /// gradients.
    pub(crate) fn new(
        nodes: &'a [Node<T>],
        id: usize,
        outputs: std::ops::Range<usize>,
        grad_outputs: &'a [Option<Tensor<T>>],
        slots: &'a mut GradSlots<T>,
    ) -> Self {
        BackwardCtx {
            nodes,
            inputs: &nodes[id].inputs,
            outputs: &nodes[outputs],
            grad_outputs,
            slots,
        }
    }

    /// The value of input `k`.
    pub fn input(&self, k: usize) -> &'a Tensor<T> {
        let nodes: &'a [Node<T>] = self.nodes;
        &nodes[self.inputs[k]].value
    }

    /// The op's output value (the first, for an op with several).
    pub fn output(&self) -> &'a Tensor<T> {
        self.output_at(0)
    }

    /// ∂loss/∂output of a one-output op (a [`MultiOp`] reads
    /// [`grad_output_at`](Self::grad_output_at)).
    pub fn grad_output(&self) -> &'a Tensor<T> {
        self.grad_output_at(0)
            .expect("grad_output: an op with several outputs reads grad_output_at")
    }

    /// How many outputs the op has.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// The value of output `i`.
    pub fn output_at(&self, i: usize) -> &'a Tensor<T> {
        let outputs: &'a [Node<T>] = self.outputs;
        &outputs[i].value
    }

    /// ∂loss/∂(output `i`), or `None` when the loss does not depend on that output.
    pub fn grad_output_at(&self, i: usize) -> Option<&'a Tensor<T>> {
        let grads: &'a [Option<Tensor<T>>] = self.grad_outputs;
        grads[i].as_ref()
    }

    /// How many inputs the op has.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Whether input `k` needs a gradient (skip computing it if not).
    pub fn needs_grad(&self, k: usize) -> bool {
        self.nodes[self.inputs[k]].requires_grad
    }

    /// Adds `grad` (input `k`'s values, flattened) to its gradient. When the input has no
    /// gradient yet, `grad` becomes it: no zero-filled accumulator is made and no pass added.
    /// Does nothing if the input needs no gradient.
    pub fn add_grad_input(&mut self, k: usize, grad: Vec<T>) {
        let id = self.inputs[k];
        let node = &self.nodes[id];
        if !node.requires_grad {
            return;
        }
        assert_eq!(
            grad.len(),
            node.value.numel(),
            "gradient for input {k} has {} values, its shape {:?} holds {}",
            grad.len(),
            node.value.shape(),
            node.value.numel()
        );
        self.slots
            .add(id, Tensor::from_vec(grad, node.value.shape()));
    }

    /// Adds ∂loss/∂output unchanged to input `k`'s gradient (the input has the output's
    /// shape: an addition's operands). When the input has no gradient yet it shares the
    /// output gradient's storage: no copy is made until one of them is written.
    pub fn pass_grad_output(&mut self, k: usize) {
        let id = self.inputs[k];
        let node = &self.nodes[id];
        if !node.requires_grad {
            return;
        }
        let grad_output = self.grad_output();
        assert_eq!(
            node.value.shape(),
            grad_output.shape(),
            "pass_grad_output: input {k} has shape {:?}, the output {:?}",
            node.value.shape(),
            grad_output.shape()
        );
        self.slots.add(id, grad_output.clone());
    }

    /// Adds `values` (one per element of input `k`, in order) to input `k`'s gradient. When
    /// the input has no gradient yet the values become it: one pass, no zero-filled
    /// accumulator. Does nothing if the input needs no gradient.
    pub fn accumulate_grad_input(&mut self, k: usize, values: impl Iterator<Item = T>) {
        let id = self.inputs[k];
        let node = &self.nodes[id];
        if !node.requires_grad {
            return;
        }
        // The values' arithmetic is inlined here, so it runs for the CPU's widest vectors.
        let room = GradSlots::room(self.nodes, id);
        let slot = self.slots.slot(id);
        let grad = widest(
            #[inline(always)]
            || match slot {
                Some(acc) => {
                    acc.data_mut()
                        .iter_mut()
                        .zip(values)
                        .for_each(|(s, v)| *s += v);
                    None
                }
                None => {
                    // Room for a view's extension, as `grad_input` makes it.
                    let mut grad = Vec::with_capacity(room);
                    grad.extend(values);
                    Some(grad)
                }
            },
        );
        if let Some(grad) = grad {
            assert_eq!(
                grad.len(),
                node.value.numel(),
                "accumulate_grad_input: {} values for input {k} of shape {:?}",
                grad.len(),
                node.value.shape()
            );
            *slot = Some(Tensor::from_vec(grad, node.value.shape()));
        }
    }

    /// Adds aᵀ·b to input `k`'s gradient, for `a` of rows × m values and `b` of rows × n
    /// (row-major), the input's shape holding m × n (m: all but its last dimension): the
    /// gradient of a weight from one use, ∂W += ∂Yᵀ·X. Products with few rows (a step of an
    /// unrolled sequence) wait and are summed as one product over many uses, before anything
    /// reads the gradient. Does nothing if the input needs no gradient.
    pub fn add_transposed_product(&mut self, k: usize, a: &Tensor<T>, b: &Tensor<T>) {
        let id = self.inputs[k];
        let node = &self.nodes[id];
        if node.requires_grad {
            self.slots.add_product(self.nodes, id, a, b);
        }
    }

    /// The gradient accumulator of input `k` (zeros the first time), or `None` if that
    /// input needs no gradient. Add into it.
    pub fn grad_input(&mut self, k: usize) -> Option<&mut [T]> {
        let id = self.inputs[k];
        let node = &self.nodes[id];
        if !node.requires_grad {
            return None;
        }
        Some(self.slots.accumulator(self.nodes, id))
    }
}
