//! The one trait every recurrent cell implements, built-in or a user's: a state layout and a
//! step function on tape variables.

use super::fused::FusedSpec;
use crate::session::Session;
use recur_tape::{Element, Tensor, Var};
use smallvec::SmallVec;

/// The state carried between steps, one `[batch, width]` variable per part. Part 0 is the
/// cell's output h; an LSTM adds its cell state c as part 1.
pub type State<'t, T> = SmallVec<[Var<'t, T>; 2]>;

/// A recurrent cell: `step(x_t, state) -> state`, optionally split into the part that reads
/// x_t only (`project_input`) and the rest (`step_projected`), so that layers compute the
/// first for a whole sequence at once.
///
/// Implement this for a new architecture and [`Recurrent`](super::Recurrent) gives it
/// stacking, bidirectionality, variable lengths, dropout between layers and checkpointing
/// through time.
pub trait Cell<T: Element> {
    /// Width of the input x_t.
    fn input_size(&self) -> usize;
    /// Width of each state part, h first.
    fn state_sizes(&self) -> SmallVec<[usize; 2]>;
    /// One time step for a batch: x_t `[batch, input_size]` and the state parts
    /// `[batch, width]` in, the new state out. Implement this, or split the step into
    /// [`project_input`](Self::project_input) and [`step_projected`](Self::step_projected)
    /// (then this default runs the two).
    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let projected = self.project_input(s, x).unwrap_or_else(|| {
            panic!(
                "{}: a Cell implements step, or project_input and step_projected",
                std::any::type_name::<Self>()
            )
        });
        self.step_projected(s, projected, state)
    }

    /// The part of a step that reads x_t only, typically its input projection W·x_t + b,
    /// for any number of rows: `x` `[N, input_size]` in, `Some([N, width])` out. A layer
    /// computes it once for all T·B rows of a sequence (one product instead of one per step,
    /// and one for its weight's gradient) and hands each step its rows through
    /// [`step_projected`](Self::step_projected). The default, `None`, is for cells that
    /// implement [`step`](Self::step) instead.
    fn project_input<'t>(&self, _s: &Session<'t, '_, T>, _x: Var<'t, T>) -> Option<Var<'t, T>> {
        None
    }

    /// One time step from this step's rows of [`project_input`](Self::project_input)
    /// `[batch, width]`; implement it with `project_input`.
    fn step_projected<'t>(
        &self,
        _s: &Session<'t, '_, T>,
        _projected: Var<'t, T>,
        _state: &[Var<'t, T>],
    ) -> State<'t, T> {
        panic!(
            "{}: project_input returns rows, so step_projected must be implemented",
            std::any::type_name::<Self>()
        )
    }

    /// Width of the output h (state part 0).
    fn output_size(&self) -> usize {
        self.state_sizes()[0]
    }

    /// For the built-in cells only: the description of their hand-written sequence kernel
    /// (an LSTM with a projection has none), which layers of them run. A cell of one's own
    /// keeps the default, `None`, and gets its speed from
    /// [`project_input`](Self::project_input): within a few percent of these kernels
    /// (docs/benchmarks.md, "User cells").
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
