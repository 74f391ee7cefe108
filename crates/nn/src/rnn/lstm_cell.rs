//! The LSTM cell, gates in PyTorch's order i, f, g, o:
//! c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'), projected by W_hr when `proj_size` > 0.

use super::cell::{Cell, State};
use super::fused::FusedSpec;
use super::gates::{CellSpec, GateWeights};
use super::CellKind;
use crate::init;
use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// `torch.nn.LSTMCell` (gates i, f, g, o), with `torch.nn.LSTM`'s optional projection of h.
/// Its state is `[h, c]`.
///
/// ```
/// use recur_nn::{Cell, LstmCell, Mode, ParamStore, Session};
/// use recur_tape::{Tape, Tensor};
/// use rand::SeedableRng;
///
/// let mut store = ParamStore::<f64>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let cell = LstmCell::new(&mut store, "cell", 3, 4, true, &mut rng);
/// assert_eq!(store.get(store.find("cell.weight_ih").unwrap()).shape(), &[16, 3]);
/// let tape = Tape::new();
/// let s = Session::new(&tape, &store, Mode::Eval, 0);
/// let x = s.constant(Tensor::ones(&[2, 3])); // [batch, input]
/// let (h, c) = (s.constant(Tensor::zeros(&[2, 4])), s.constant(Tensor::zeros(&[2, 4])));
/// let state = cell.step(&s, x, &[h, c]);
/// assert_eq!(state.len(), 2); // the new h and c
/// ```
#[derive(Clone, Debug)]
pub struct LstmCell {
    pub(crate) weights: GateWeights,
    /// `weight_hr` `[proj_size, hidden_size]` when the output is projected.
    pub w_hr: Option<ParamId>,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of c (and of h without a projection).
    pub hidden_size: usize,
    /// Width of h when projected, else 0.
    pub proj_size: usize,
}

impl LstmCell {
    /// A standalone cell with PyTorch `LSTMCell` names under `prefix`.
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
        Self::with_spec(store, &mut spec, input_size, hidden_size, 0)
    }

    pub(crate) fn with_spec<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        spec: &mut CellSpec<'_, R>,
        input_size: usize,
        hidden_size: usize,
        proj_size: usize,
    ) -> Self {
        let out = if proj_size > 0 {
            proj_size
        } else {
            hidden_size
        };
        let weights = GateWeights::new(store, spec, 4 * hidden_size, input_size, out, hidden_size);
        let w_hr = (proj_size > 0).then(|| {
            let bound = 1.0 / (hidden_size as f64).sqrt();
            let name = join_name(spec.prefix, &format!("weight_hr{}", spec.suffix));
            store.add(
                name,
                init::uniform(&[proj_size, hidden_size], bound, spec.rng),
            )
        });
        LstmCell {
            weights,
            w_hr,
            input_size,
            hidden_size,
            proj_size,
        }
    }
}

impl<T: Element> Cell<T> for LstmCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn fused(&self) -> Option<FusedSpec> {
        (self.proj_size == 0).then(|| {
            self.weights
                .fused_spec(CellKind::Lstm, self.input_size, self.hidden_size)
        })
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        let out = if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        };
        smallvec![out, self.hidden_size]
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
        let gates = input + self.weights.hidden_part(s, state[0]);
        let g = gates.chunk(4, 1);
        let (i, f, cand, o) = (g[0].sigmoid(), g[1].sigmoid(), g[2].tanh(), g[3].sigmoid());
        let c = f * state[1] + i * cand;
        let h = o * c.tanh();
        let h = match self.w_hr {
            Some(w) => h.linear(s.param(w), None),
            None => h,
        };
        smallvec![h, c]
    }
}
