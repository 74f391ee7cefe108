//! RG-LRU, the recurrence of Hawk and Griffin (De et al. 2024): r = σ(W_a·x + b_a),
//! i = σ(W_x·x + b_x), a_t = σ(Λ)^(c·r) with c = 8, and
//! h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i ⊙ v), where v = W_v·x + b_v is the input's value
//! (Griffin feeds the block's own branch there; a projection lets input and state widths differ).

use super::{scan_state, step_as_sequence, Names, Projection};
use crate::params::{ParamId, ParamStore};
use crate::rnn::cell::{Cell, State};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Tensor, Var};
use smallvec::{smallvec, SmallVec};

/// The constant c in a = σ(Λ)^(c·r).
pub const RG_LRU_C: f64 = 8.0;

/// An RG-LRU cell: `weight_ih` `[3H, input]` holds W_a, W_x, W_v (and `bias_ih` `[3H]`);
/// `a_param` `[H]` is Λ, initialised so that a^c is uniform in [0.9, 0.999] as in Griffin.
#[derive(Clone, Debug)]
pub struct RgLruCell {
    pub(crate) projection: Projection,
    pub(crate) a_param: ParamId,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of h.
    pub hidden_size: usize,
}

impl RgLruCell {
    pub(crate) fn with_names<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let projection = Projection::new(store, names, 3, hidden_size, input_size, bias, rng);
        let lambda: Vec<f64> = (0..hidden_size)
            .map(|_| {
                let a = rng.gen_range(0.9f64..0.999).powf(1.0 / RG_LRU_C);
                (a / (1.0 - a)).ln()
            })
            .collect();
        let a_param = store.add(
            names.of("a_param"),
            Tensor::from_f64s(&lambda, &[hidden_size]),
        );
        RgLruCell {
            projection,
            a_param,
            input_size,
            hidden_size,
        }
    }
}

impl<T: Element> Cell<T> for RgLruCell {
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
        let (r, i) = (g[0].sigmoid(), g[1].sigmoid());
        // log a_t = c·r·log σ(Λ) = −c·r·softplus(−Λ).
        let log_a = (-s.param(self.a_param)).softplus() * T::of(-RG_LRU_C);
        let a = (r * log_a).exp();
        let scale = (-(a * a) + T::one()).sqrt();
        let b = scale * (i * g[2]);
        Some(scan_state(a, b, state[0], lengths, reverse))
    }
}
