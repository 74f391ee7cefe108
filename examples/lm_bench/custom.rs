//! Cells written as a user would write them, from `Linear` and the tape's ops, run through
//! the generic `Recurrent<C>` layer: the LSTM and the GRU with PyTorch's equations, and the
//! tutorial's layer-norm LSTM (fastrnns', `tutorial/src/cells.rs`). The lm_bench cases
//! custom-lstm-layer-*, custom-gru-layer-gru-medium and lnlstm-char-small time them against
//! the built-in layers.

#[path = "../../tutorial/src/cells.rs"]
#[allow(dead_code)] // the tutorial's other cells
mod cells;

use cells::LayerNormLstm;
use rand::Rng;
use recur::nn::{Cell, Linear, ParamStore, Recurrent, RnnOptions, Session, State};
use recur::tape::{Element, Var};
use smallvec::{smallvec, SmallVec};

/// Which user cell a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserKind {
    Lstm,
    Gru,
    LayerNormLstm,
}

/// c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'), gates i, f, g, o from W_x·x + b + W_h·h.
#[derive(Clone)]
pub struct UserLstm {
    wx: Linear,
    wh: Linear,
}

impl<T: Element> Cell<T> for UserLstm {
    fn input_size(&self) -> usize {
        self.wx.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.wh.in_features, self.wh.in_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.wx.forward(s, x))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        st: &[Var<'t, T>],
    ) -> State<'t, T> {
        let g = (x + self.wh.forward(s, st[0])).chunk(4, 1);
        let c = g[1].sigmoid() * st[1] + g[0].sigmoid() * g[2].tanh();
        smallvec![g[3].sigmoid() * c.tanh(), c]
    }
}

/// PyTorch's GRU: r, z = σ(W_x·x + b_x + W_h·h + b_h) (their thirds), n = tanh(x_n + r·h_n),
/// h' = n + z·(h − n).
#[derive(Clone)]
pub struct UserGru {
    wx: Linear,
    wh: Linear,
}

impl<T: Element> Cell<T> for UserGru {
    fn input_size(&self) -> usize {
        self.wx.in_features
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.wh.in_features]
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.wx.forward(s, x))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        st: &[Var<'t, T>],
    ) -> State<'t, T> {
        let (gx, gh) = (x.chunk(3, 1), self.wh.forward(s, st[0]).chunk(3, 1));
        let r = (gx[0] + gh[0]).sigmoid();
        let z = (gx[1] + gh[1]).sigmoid();
        let n = (gx[2] + r * gh[2]).tanh();
        smallvec![n + z * (st[0] - n)]
    }
}

/// A stack of one kind of user cell.
pub enum UserLayer {
    Lstm(Recurrent<UserLstm>),
    Gru(Recurrent<UserGru>),
    LayerNormLstm(Recurrent<LayerNormLstm>),
}

impl UserLayer {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        kind: UserKind,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let h = options.hidden_size;
        let mut linear = |store: &mut ParamStore<T>, name: String, input, gates, bias| {
            Linear::new(store, &name, input, gates * h, bias, rng)
        };
        match kind {
            UserKind::Lstm => {
                UserLayer::Lstm(Recurrent::build(options, "LSTM", |l, _, input| UserLstm {
                    wx: linear(store, format!("l{l}.wx"), input, 4, true),
                    wh: linear(store, format!("l{l}.wh"), h, 4, false),
                }))
            }
            UserKind::Gru => {
                UserLayer::Gru(Recurrent::build(options, "GRU", |l, _, input| UserGru {
                    wx: linear(store, format!("l{l}.wx"), input, 3, true),
                    wh: linear(store, format!("l{l}.wh"), h, 3, true),
                }))
            }
            UserKind::LayerNormLstm => {
                UserLayer::LayerNormLstm(Recurrent::build(options, "LN-LSTM", |l, _, input| {
                    LayerNormLstm::new(store, &format!("l{l}"), (input, h), rng)
                }))
            }
        }
    }

    /// The outputs `[T, B, H]` of `x` `[T, B, input]`.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        match self {
            UserLayer::Lstm(l) => l.forward(s, x, None, None).output,
            UserLayer::Gru(l) => l.forward(s, x, None, None).output,
            UserLayer::LayerNormLstm(l) => l.forward(s, x, None, None).output,
        }
    }
}
