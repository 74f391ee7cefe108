//! A layer-norm LSTM written as a user cell (PyTorch fastrnns' LayerNormLSTMCell: layer norm
//! on each of the two gate products and on c), which the tape's `layer_norm` and broadcasting
//! make a few lines, its input product split off as `project_input`: gradchecked as a cell and
//! as a stacked bidirectional layer with lengths, plain and checkpointed through time.

use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::{
    gradcheck_params, Cell, LayerNorm, Linear, ParamStore, Recurrent, RnnOptions, Session, State,
};
use recur::tape::{Element, Tensor, Var};
use smallvec::{smallvec, SmallVec};

#[derive(Clone)]
struct LnLstm {
    wx: Linear,
    wh: Linear,
    ln_x: LayerNorm,
    ln_h: LayerNorm,
    ln_c: LayerNorm,
    input: usize,
    hidden: usize,
}

impl LnLstm {
    fn new(
        store: &mut ParamStore<f64>,
        prefix: &str,
        input: usize,
        hidden: usize,
        rng: &mut StdRng,
    ) -> Self {
        let name = |n: &str| format!("{prefix}.{n}");
        LnLstm {
            wx: Linear::new(store, &name("wx"), input, 4 * hidden, false, rng),
            wh: Linear::new(store, &name("wh"), hidden, 4 * hidden, false, rng),
            ln_x: LayerNorm::new(store, &name("ln_x"), 4 * hidden),
            ln_h: LayerNorm::new(store, &name("ln_h"), 4 * hidden),
            ln_c: LayerNorm::new(store, &name("ln_c"), hidden),
            input,
            hidden,
        }
    }
}

impl<T: Element> Cell<T> for LnLstm {
    fn input_size(&self) -> usize {
        self.input
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden, self.hidden]
    }
    /// The normalised input product depends on x only: the layer makes it for all steps at
    /// once.
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        Some(self.ln_x.forward(s, self.wx.forward(s, x)))
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let gates = x + self.ln_h.forward(s, self.wh.forward(s, state[0]));
        let g = gates.chunk(4, 1);
        let c = self
            .ln_c
            .forward(s, g[1].sigmoid() * state[1] + g[0].sigmoid() * g[2].tanh());
        smallvec![g[3].sigmoid() * c.tanh(), c]
    }
}

#[test]
fn a_layer_norm_lstm_cell_passes_gradcheck_as_a_cell_and_a_layer() {
    let rng = &mut StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f64>::new();
    let cell = LnLstm::new(&mut store, "cell", 3, 4, rng);
    // Non-trivial norm parameters, so that their gradients are checked away from 1 and 0.
    for id in store.ids().collect::<Vec<_>>() {
        let shape = store.get(id).shape().to_vec();
        *store.get_mut(id) = Tensor::uniform(&shape, -0.8, 0.8, rng);
    }
    let inputs = [
        Tensor::uniform(&[2, 3], -1.0, 1.0, rng),
        Tensor::uniform(&[2, 4], -1.0, 1.0, rng),
        Tensor::uniform(&[2, 4], -1.0, 1.0, rng),
    ];
    let report = gradcheck_params(&store, &inputs, |s, v| {
        let next = cell.step(s, v[0], &v[1..]);
        next[0] * 2.0 + next[1]
    });
    assert!(report.passed, "cell: {report}");

    let mut store = ParamStore::<f64>::new();
    let options = RnnOptions::new(3, 4).num_layers(2).bidirectional(true);
    let layer = Recurrent::build(options, "LN-LSTM", 4, |l, r, input| {
        LnLstm::new(&mut store, &format!("rnn{l}{r}"), input, 4, rng)
    });
    let x = Tensor::uniform(&[4, 2, 3], -1.0, 1.0, rng);
    let report = gradcheck_params(&store, std::slice::from_ref(&x), |s, v| {
        layer.forward(s, v[0], None, Some(&[4, 2])).output
    });
    assert!(report.passed, "layer: {report}");
    let mut checkpointed = layer.clone();
    checkpointed.options.checkpoint = true;
    let report = gradcheck_params(&store, std::slice::from_ref(&x), |s, v| {
        checkpointed.forward(s, v[0], None, Some(&[4, 2])).output
    });
    assert!(report.passed, "checkpointed layer: {report}");
}
