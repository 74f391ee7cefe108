//! QRNN (Bradbury et al. 2017) with a window-2 convolution and fo-pooling: from
//! [x_t, x_{t−1}], z = tanh(W_z·[x_t, x_{t−1}] + b_z), f and o likewise with σ;
//! c_t = f ⊙ c_{t−1} + (1 − f) ⊙ z, h_t = o ⊙ c_t. In reverse, x_{t−1} is the step after.

use super::{last_steps, scan_options, step_as_sequence, Names, Projection};
use crate::params::{ParamId, ParamStore};
use crate::rnn::cell::{Cell, State};
use crate::session::Session;
use rand::Rng;
use recur_tape::{concat, Element, Var};
use smallvec::{smallvec, SmallVec};

/// A QRNN cell: `weight_ih` `[3H, 2·input]` (rows z, f, o; columns W_0 for x_t, then W_1
/// for x_{t−1}) and `bias_ih` `[3H]`. State parts: h, c, and W_1·x of the last input (the
/// window's earlier half for the next step), `[B, 3H]` whatever the input's width.
#[derive(Clone, Debug)]
pub struct QrnnCell {
    pub(crate) weight: ParamId,
    pub(crate) bias: Option<ParamId>,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
}

impl QrnnCell {
    pub(crate) fn with_names<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let projection = Projection::new(store, names, 3, hidden_size, 2 * input_size, bias, rng);
        QrnnCell {
            weight: projection.weight,
            bias: projection.bias,
            input_size,
            hidden_size,
        }
    }
}

/// The row of `[W_1·x (T·B rows); the state's part (B rows)]` each step adds: the step
/// before in the scan's order, or the state at a row's first step.
fn previous_rows(
    steps: usize,
    batch: usize,
    lengths: Option<&[usize]>,
    reverse: bool,
) -> Vec<usize> {
    let mut ids = Vec::with_capacity(steps * batch);
    for t in 0..steps {
        for b in 0..batch {
            let end = lengths.map_or(steps, |l| l[b]);
            let prev = match reverse {
                false if t > 0 => Some(t - 1),
                true if t + 1 < end => Some(t + 1),
                _ => None,
            };
            ids.push(prev.map_or(steps * batch + b, |p| p * batch + b));
        }
    }
    ids
}

impl<T: Element> Cell<T> for QrnnCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden_size, self.hidden_size, 3 * self.hidden_size]
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
        let shape = x.shape();
        let (steps, batch, input) = (shape[0], shape[1], shape[2]);
        let weight = s.param(self.weight);
        let (w0, w1) = (weight.slice(1, 0..input), weight.slice(1, input..2 * input));
        let later = x.linear(w1, None);
        let earlier = concat(
            &[
                later.reshape(&[steps * batch, 3 * self.hidden_size]),
                state[2],
            ],
            0,
        )
        .index_select(&previous_rows(steps, batch, lengths, reverse))
        .reshape(&[steps, batch, 3 * self.hidden_size]);
        let g = (x.linear(w0, self.bias.map(|b| s.param(b))) + earlier).chunk(3, 2);
        let (z, f, o) = (g[0].tanh(), g[1].sigmoid(), g[2].sigmoid());
        let b = (-f + T::one()) * z;
        let c = f.linear_scan(b, Some(state[1]), &scan_options(lengths, reverse));
        let h = o * c;
        let final_state = smallvec![
            last_steps(h, lengths, reverse),
            last_steps(c, lengths, reverse),
            last_steps(later, lengths, reverse),
        ];
        Some((h, final_state))
    }
}
