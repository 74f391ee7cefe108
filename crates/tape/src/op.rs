//! The op trait every recorded operation implements, built-in or written by a user, and the
//! context its backward receives.

use crate::deferred::Deferred;
use crate::kernels::simd::widest;
use crate::tape::{accumulator, add_to_slot, view_room, Node};
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

/// What an op's backward sees: its inputs and output values, the output's gradient, and
/// accumulators for the inputs' gradients.
pub struct BackwardCtx<'a, T: Element> {
    pub(crate) nodes: &'a [Node<T>],
    pub(crate) inputs: &'a [usize],
    pub(crate) output: &'a Tensor<T>,
    pub(crate) grad_output: &'a Tensor<T>,
    pub(crate) grads: &'a mut [Option<Tensor<T>>],
    pub(crate) deferred: &'a mut Deferred<T>,
}

impl<'a, T: Element> BackwardCtx<'a, T> {
    /// The value of input `k`.
    pub fn input(&self, k: usize) -> &'a Tensor<T> {
        let nodes: &'a [Node<T>] = self.nodes;
        &nodes[self.inputs[k]].value
    }

    /// The op's output value.
    pub fn output(&self) -> &'a Tensor<T> {
        self.output
    }

    /// ∂loss/∂output.
    pub fn grad_output(&self) -> &'a Tensor<T> {
        self.grad_output
    }

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
        add_to_slot(
            &mut self.grads[id],
            Tensor::from_vec(grad, node.value.shape()),
        );
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
        assert_eq!(
            node.value.shape(),
            self.grad_output.shape(),
            "pass_grad_output: input {k} has shape {:?}, the output {:?}",
            node.value.shape(),
            self.grad_output.shape()
        );
        add_to_slot(&mut self.grads[id], self.grad_output.clone());
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
        let slot = &mut self.grads[id];
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
                    // Room for a view's extension, as `grad_input` makes it (see `view_room`).
                    let mut grad = Vec::with_capacity(view_room(self.nodes, id));
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
            self.deferred
                .add(id, node.value.shape(), &mut self.grads[id], a, b);
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
        let room = view_room(self.nodes, id);
        Some(accumulator(&mut self.grads[id], node.value.shape(), room))
    }
}
