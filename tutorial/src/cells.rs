//! Four recurrent cells written against recur's tape: the minimal gated unit, fastrnns'
//! layer-norm LSTM, IndRNN and the peephole LSTM. Each splits off the part of its step that
//! reads x only (`project_input`), so a layer computes it for all steps in one product.

use recur::nn::{init, Cell, LayerNorm, Linear, ParamId, ParamStore, Session, State};
use recur::rand::Rng;
use recur::smallvec::{smallvec, SmallVec};
use recur::tape::{Element, Var};

/// `{prefix}.{name}` as a `Linear` (PyTorch's init).
fn linear<T: Element>(
    store: &mut ParamStore<T>,
    prefix: &str,
    name: &str,
    (input, output, bias): (usize, usize, bool),
    rng: &mut impl Rng,
) -> Linear {
    Linear::new(store, &format!("{prefix}.{name}"), input, output, bias, rng)
}

/// MGU (Zhou et al. 2016): f = σ(W_f·x + U_f·h + b_f), h̃ = tanh(W_h·x + U_h·(f·h) + b_h),
/// h' = (1 − f)·h + f·h̃. `w` holds [W_f; W_h] and [b_f; b_h].
#[derive(Clone)]
pub struct Mgu {
    pub w: Linear,
    pub u_f: Linear,
    pub u_h: Linear,
}

impl Mgu {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        (input, hidden): (usize, usize),
        rng: &mut impl Rng,
    ) -> Self {
        Mgu {
            w: linear(store, prefix, "w", (input, 2 * hidden, true), rng),
            u_f: linear(store, prefix, "u_f", (hidden, hidden, false), rng),
            u_h: linear(store, prefix, "u_h", (hidden, hidden, false), rng),
        }
    }
}

// tutorial: mgu
impl<T: Element> Cell<T> for Mgu {
    fn input_size(&self) -> usize {
        self.w.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.u_f.out_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.w.forward(s, x))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let (x, h) = (x.chunk(2, 1), state[0]);
        let f = (x[0] + self.u_f.forward(s, h)).sigmoid();
        let candidate = (x[1] + self.u_h.forward(s, f * h)).tanh();
        smallvec![h + f * (candidate - h)]
    }
}
// end

/// fastrnns' LayerNormLSTMCell: gates LN(W·x) + LN(U·h) in PyTorch's order i, f, g, o,
/// c' = LN(σ(f)·c + σ(i)·tanh(g)), h' = σ(o)·tanh(c'); the norms carry the biases.
#[derive(Clone)]
pub struct LayerNormLstm {
    pub w: Linear,
    pub u: Linear,
    pub ln_x: LayerNorm,
    pub ln_h: LayerNorm,
    pub ln_c: LayerNorm,
}

impl LayerNormLstm {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        (input, hidden): (usize, usize),
        rng: &mut impl Rng,
    ) -> Self {
        LayerNormLstm {
            w: linear(store, prefix, "w", (input, 4 * hidden, false), rng),
            u: linear(store, prefix, "u", (hidden, 4 * hidden, false), rng),
            ln_x: LayerNorm::new(store, &format!("{prefix}.ln_x"), 4 * hidden),
            ln_h: LayerNorm::new(store, &format!("{prefix}.ln_h"), 4 * hidden),
            ln_c: LayerNorm::new(store, &format!("{prefix}.ln_c"), hidden),
        }
    }
}

// tutorial: layer-norm lstm
impl<T: Element> Cell<T> for LayerNormLstm {
    fn input_size(&self) -> usize {
        self.w.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.u.in_features, self.u.in_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.ln_x.forward(s, self.w.forward(s, x)))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let g = (x + self.ln_h.forward(s, self.u.forward(s, state[0]))).chunk(4, 1);
        let c = g[1].sigmoid() * state[1] + g[0].sigmoid() * g[2].tanh();
        let c = self.ln_c.forward(s, c);
        smallvec![g[3].sigmoid() * c.tanh(), c]
    }
}
// end

/// IndRNN (Li et al. 2018): h' = relu(W·x + b + u ⊙ h), each unit its own recurrent weight.
#[derive(Clone)]
pub struct IndRnn {
    pub w: Linear,
    pub u: ParamId,
}

impl IndRnn {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        (input, hidden): (usize, usize),
        rng: &mut impl Rng,
    ) -> Self {
        IndRnn {
            w: linear(store, prefix, "w", (input, hidden, true), rng),
            u: store.add(format!("{prefix}.u"), init::uniform(&[hidden], 1.0, rng)),
        }
    }
}

// tutorial: indrnn
impl<T: Element> Cell<T> for IndRnn {
    fn input_size(&self) -> usize {
        self.w.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.w.out_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.w.forward(s, x))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        smallvec![(x + s.param(self.u) * state[0]).relu()]
    }
}
// end

/// The peephole LSTM (Gers & Schmidhuber 2000): the gates also read the cell state,
/// i = σ(z_i + p_i ⊙ c), f = σ(z_f + p_f ⊙ c), c' = f·c + i·tanh(z_g), o = σ(z_o + p_o ⊙ c'),
/// h' = o·tanh(c'), with z = W·x + b + U·h in the order i, f, g, o.
#[derive(Clone)]
pub struct PeepholeLstm {
    pub w: Linear,
    pub u: Linear,
    /// p_i, p_f, p_o, each `[hidden]`.
    pub peep: [ParamId; 3],
}

impl PeepholeLstm {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        (input, hidden): (usize, usize),
        rng: &mut impl Rng,
    ) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        let mut peep = |n: &str| {
            store.add(
                format!("{prefix}.{n}"),
                init::uniform(&[hidden], bound, rng),
            )
        };
        let peep = [peep("p_i"), peep("p_f"), peep("p_o")];
        PeepholeLstm {
            w: linear(store, prefix, "w", (input, 4 * hidden, true), rng),
            u: linear(store, prefix, "u", (hidden, 4 * hidden, false), rng),
            peep,
        }
    }
}

// tutorial: peephole lstm
impl<T: Element> Cell<T> for PeepholeLstm {
    fn input_size(&self) -> usize {
        self.w.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.u.in_features, self.u.in_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.w.forward(s, x))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let (z, c) = ((x + self.u.forward(s, state[0])).chunk(4, 1), state[1]);
        let p = self.peep.map(|id| s.param(id));
        let i = (z[0] + p[0] * c).sigmoid();
        let f = (z[1] + p[1] * c).sigmoid();
        let c = f * c + i * z[2].tanh();
        let o = (z[3] + p[2] * c).sigmoid();
        smallvec![o * c.tanh(), c]
    }
}
// end
