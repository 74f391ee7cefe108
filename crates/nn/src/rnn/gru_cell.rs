//! The GRU cell, gates in PyTorch's order r, z, n:
//! n = tanh(W_in·x + b_in + r·(W_hn·h + b_hn)), h' = (1 − z)·n + z·h.

use super::cell::{Cell, State};
use super::fused::FusedSpec;
use super::gates::{CellSpec, GateWeights};
use super::CellKind;
use crate::params::ParamStore;
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// `torch.nn.GRUCell`: r, z, n gates, n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)).
///
/// ```
/// use recur_nn::{Cell, GruCell, Mode, ParamStore, Session};
/// use recur_tape::{Tape, Tensor};
/// use rand::SeedableRng;
///
/// let mut store = ParamStore::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let cell = GruCell::new(&mut store, "cell", 3, 4, true, &mut rng);
/// let tape = Tape::new();
/// let s = Session::new(&tape, &store, Mode::Eval, 0);
/// let x = s.constant(Tensor::ones(&[2, 3])); // [batch, input]
/// let h = s.constant(Tensor::zeros(&[2, 4]));
/// let next = cell.step(&s, x, &[h]);
/// assert_eq!(next[0].shape().as_slice(), &[2, 4]);
/// ```
#[derive(Clone, Debug)]
pub struct GruCell {
    pub(crate) weights: GateWeights,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
}

impl GruCell {
    /// A standalone cell with PyTorch `GRUCell` names under `prefix`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let mut spec = CellSpec {
            prefix,
            suffix: "",
            bias,
            rng,
        };
        Self::with_spec(store, &mut spec, input_size, hidden_size)
    }

    pub(crate) fn with_spec<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        spec: &mut CellSpec<'_, R>,
        input_size: usize,
        hidden_size: usize,
    ) -> Self {
        let weights = GateWeights::new(
            store,
            spec,
            3 * hidden_size,
            input_size,
            hidden_size,
            hidden_size,
        );
        GruCell {
            weights,
            input_size,
            hidden_size,
        }
    }
}

impl<T: Element> Cell<T> for GruCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn fused(&self) -> Option<FusedSpec> {
        Some(
            self.weights
                .fused_spec(CellKind::Gru, self.input_size, self.hidden_size),
        )
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden_size]
    }

    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.weights.input_part(s, x))
    }

    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        input: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let h = state[0];
        let gi = input.chunk(3, 1);
        let gh = self.weights.hidden_part(s, h).chunk(3, 1);
        let r = (gi[0] + gh[0]).sigmoid();
        let z = (gi[1] + gh[1]).sigmoid();
        let n = (gi[2] + r * gh[2]).tanh();
        smallvec![n + z * (h - n)]
    }
}
