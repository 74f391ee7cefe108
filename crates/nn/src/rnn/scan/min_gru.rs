//! minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): z = σ(W_z·x + b_z),
//! h̃ = W_h·x + b_h (or g(h̃) in the positive form), h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃.

use super::{candidate, scan_state, step_as_sequence, Names, Projection};
use crate::params::ParamStore;
use crate::rnn::cell::{Cell, State};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// A minGRU cell: `weight_ih` `[2H, input]` holds W_z then W_h (and `bias_ih` `[2H]`).
#[derive(Clone, Debug)]
pub struct MinGruCell {
    pub(crate) projection: Projection,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
    /// Apply g(·) to the candidate state (the paper's form for its log-space scan).
    pub positive: bool,
}

impl MinGruCell {
    pub(crate) fn with_names<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        positive: bool,
        rng: &mut impl Rng,
    ) -> Self {
        MinGruCell {
            projection: Projection::new(store, names, 2, hidden_size, input_size, bias, rng),
            input_size,
            hidden_size,
            positive,
        }
    }
}

impl<T: Element> Cell<T> for MinGruCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden_size]
    }

    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        step_as_sequence(self, s, x, state)
    }

    fn sequence<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> Option<(Var<'t, T>, State<'t, T>)> {
        let g = self.projection.gates(s, x);
        let z = g[0].sigmoid();
        let a = -z + T::one();
        let b = z * candidate(g[1], self.positive);
        Some(scan_state(a, b, state[0], lengths, reverse))
    }
}
