//! minLSTM (Feng et al. 2024): f = σ(W_f·x + b_f), i = σ(W_i·x + b_i), h̃ = W_h·x + b_h (or
//! g(h̃)), gates normalised to f' = f / (f + i), i' = i / (f + i); h_t = f' ⊙ h_{t−1} + i' ⊙ h̃.

use super::{candidate, scan_state, step_as_sequence, Names, Projection};
use crate::params::ParamStore;
use crate::rnn::cell::{Cell, State};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// A minLSTM cell: `weight_ih` `[3H, input]` holds W_f, W_i, W_h (and `bias_ih` `[3H]`).
#[derive(Clone, Debug)]
pub struct MinLstmCell {
    pub(crate) projection: Projection,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
    /// Apply g(·) to the candidate state (the paper's form for its log-space scan).
    pub positive: bool,
}

impl MinLstmCell {
    pub(crate) fn with_names<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        positive: bool,
        rng: &mut impl Rng,
    ) -> Self {
        MinLstmCell {
            projection: Projection::new(store, names, 3, hidden_size, input_size, bias, rng),
            input_size,
            hidden_size,
            positive,
        }
    }
}

impl<T: Element> Cell<T> for MinLstmCell {
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
        let (f, i) = (g[0].sigmoid(), g[1].sigmoid());
        let sum = f + i;
        let a = f / sum;
        let b = i / sum * candidate(g[2], self.positive);
        Some(scan_state(a, b, state[0], lengths, reverse))
    }
}
