//! The Elman cell: h' = act(W_ih·x + b_ih + W_hh·h + b_hh), act = tanh or relu.

use super::cell::{Cell, State};
use super::fused::FusedSpec;
use super::gates::{CellSpec, GateWeights};
use super::CellKind;
use crate::params::ParamStore;
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// The Elman RNN's nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Nonlinearity {
    /// tanh (PyTorch's default).
    #[default]
    Tanh,
    /// max(0, ·).
    Relu,
}

/// `torch.nn.RNNCell`: h' = σ(W_ih x + b_ih + W_hh h + b_hh).
///
/// ```
/// use recur_nn::{Cell, Mode, Nonlinearity, ParamStore, RnnCell, Session};
/// use recur_tape::{Tape, Tensor};
/// use rand::SeedableRng;
///
/// let mut store = ParamStore::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let cell = RnnCell::new(&mut store, "cell", 3, 4, true, Nonlinearity::Relu, &mut rng);
/// let tape = Tape::new();
/// let s = Session::new(&tape, &store, Mode::Eval, 0);
/// let h = cell.step(&s, s.constant(Tensor::ones(&[2, 3])), &[s.constant(Tensor::zeros(&[2, 4]))]);
/// assert!(h[0].value().data().iter().all(|&v| v >= 0.0));
/// ```
#[derive(Clone, Debug)]
pub struct RnnCell {
    pub(crate) weights: GateWeights,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
    /// tanh or relu.
    pub nonlinearity: Nonlinearity,
}

impl RnnCell {
    /// A standalone cell with PyTorch `RNNCell` names under `prefix`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        nonlinearity: Nonlinearity,
        rng: &mut impl Rng,
    ) -> Self {
        let mut spec = CellSpec {
            prefix,
            suffix: "",
            bias,
            rng,
        };
        Self::with_spec(store, &mut spec, input_size, hidden_size, nonlinearity)
    }

    pub(crate) fn with_spec<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        spec: &mut CellSpec<'_, R>,
        input_size: usize,
        hidden_size: usize,
        nonlinearity: Nonlinearity,
    ) -> Self {
        let weights = GateWeights::new(
            store,
            spec,
            hidden_size,
            input_size,
            hidden_size,
            hidden_size,
        );
        RnnCell {
            weights,
            input_size,
            hidden_size,
            nonlinearity,
        }
    }
}

impl<T: Element> Cell<T> for RnnCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn fused(&self) -> Option<FusedSpec> {
        Some(self.weights.fused_spec(
            CellKind::Rnn(self.nonlinearity),
            self.input_size,
            self.hidden_size,
        ))
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
        let pre = input + self.weights.hidden_part(s, state[0]);
        let h = match self.nonlinearity {
            Nonlinearity::Tanh => pre.tanh(),
            Nonlinearity::Relu => pre.relu(),
        };
        smallvec![h]
    }
}
