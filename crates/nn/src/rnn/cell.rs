//! The one trait every recurrent cell implements, built-in or a user's: a state layout and a
//! step function on tape variables.

use super::fused::FusedSpec;
use crate::session::Session;
use recur_tape::{Element, Tensor, Var};
use smallvec::SmallVec;

/// The state carried between steps, one `[batch, width]` variable per part. Part 0 is the
/// cell's output h; an LSTM adds its cell state c as part 1.
pub type State<'t, T> = SmallVec<[Var<'t, T>; 2]>;

/// A recurrent cell: `step(x_t, state) -> state`.
///
/// Implement this for a new architecture and [`Recurrent`](super::Recurrent) gives it
/// stacking, bidirectionality, variable lengths and dropout between layers.
pub trait Cell<T: Element> {
    /// Width of the input x_t.
    fn input_size(&self) -> usize;
    /// Width of each state part, h first.
    fn state_sizes(&self) -> SmallVec<[usize; 2]>;
    /// One time step for a batch: x `[batch, input_size]`, state parts `[batch, width]`.
    fn step<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>, state: &[Var<'t, T>])
        -> State<'t, T>;

    /// Width of the output h (state part 0).
    fn output_size(&self) -> usize {
        self.state_sizes()[0]
    }

    /// The description of this cell's fused sequence kernel, if it has one: the built-in
    /// cells do (except an LSTM with a projection), so layers of them run fused. A new
    /// cell keeps the default and runs step by step on the tape.
    fn fused(&self) -> Option<FusedSpec> {
        None
    }

    /// The whole sequence at once, for a cell whose recurrence is a linear scan (its gates
    /// depend on the inputs only): x `[T, B, input_size]` and the initial state parts in;
    /// the outputs `[T, B, output_size]` (zeros past a row's length) and each row's state
    /// after its last step out. `reverse` runs each row from its last step back to step 0.
    /// The layer then runs such a cell this way instead of step by step. The default, `None`,
    /// is for cells that step; it must record nothing.
    fn sequence<'t>(
        &self,
        _s: &Session<'t, '_, T>,
        _x: Var<'t, T>,
        _state: &[Var<'t, T>],
        _lengths: Option<&[usize]>,
        _reverse: bool,
    ) -> Option<(Var<'t, T>, State<'t, T>)> {
        None
    }

    /// Zeros for every state part.
    fn zero_state<'t>(&self, s: &Session<'t, '_, T>, batch: usize) -> State<'t, T> {
        self.state_sizes()
            .iter()
            .map(|&w| s.constant(Tensor::zeros(&[batch, w])))
            .collect()
    }
}
