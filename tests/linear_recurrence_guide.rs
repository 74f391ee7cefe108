//! The code of docs/linear-recurrences.md, gradchecked: a Mamba-style selective scan built
//! from `linear_scan`, and a new member of the family written as a user cell.

use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::{
    gradcheck_params, Cell, ParamId, ParamStore, Recurrent, RnnOptions, Session, State,
};
use recur::tape::{assert_gradcheck, stack, Element, ScanOptions, Tape, Tensor, Var};
use smallvec::{smallvec, SmallVec};

// --- docs: selective scan ---
/// A Mamba-style selective scan (S6: diagonal A, N states per channel): Δ, B and C are read
/// from x_t, then h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·x_t·B_t and y_t = C_t·h_t, for x [T, B, D].
fn selective_scan<'t, T: Element>(
    x: Var<'t, T>,
    w_delta: Var<'t, T>,
    w_b: Var<'t, T>,
    w_c: Var<'t, T>,
    a_log: Var<'t, T>,
) -> Var<'t, T> {
    let (s, n) = (x.shape(), a_log.shape()[1]);
    let (steps, batch, d) = (s[0], s[1], s[2]);
    let delta = x.linear(w_delta, None).softplus(); // [T, B, D]
    let (b, c) = (x.linear(w_b, None), x.linear(w_c, None)); // [T, B, N]
    let per_state = |v: Var<'t, T>| stack(&vec![v; n], 3); // [T, B, D] → [T, B, D, N]
    let per_channel = |v: Var<'t, T>| stack(&vec![v; d], 2); // [T, B, N] → [T, B, D, N]
    let a = (per_state(delta) * -a_log.exp()).exp(); // A = −exp(a_log), [D, N]
    let u = per_state(delta * x) * per_channel(b);
    let flat = [steps, batch, d * n];
    let h = a
        .reshape(&flat)
        .linear_scan(u.reshape(&flat), None, &ScanOptions::default());
    (h.reshape(&[steps, batch, d, n]) * per_channel(c)).sum_axis(3) // [T, B, D]
}
// --- end ---

// --- docs: cell ---
/// An "exponential moving average" unit: a = σ(W_a·x + b_a), h_t = a ⊙ h_{t−1} + (1 − a) ⊙ W_v·x.
#[derive(Clone)]
struct EmaCell {
    w: ParamId,
    b: ParamId,
    input: usize,
    hidden: usize,
}

impl<T: Element> Cell<T> for EmaCell {
    fn input_size(&self) -> usize {
        self.input
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden]
    }
    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        let x = x.reshape(&[1, x.shape()[0], self.input]);
        self.sequence(s, x, state, None, false)
            .expect("runs whole sequences")
            .1
    }
    fn sequence<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> Option<(Var<'t, T>, State<'t, T>)> {
        let g = x.linear(s.param(self.w), Some(s.param(self.b))).chunk(2, 2);
        let a = g[0].sigmoid();
        let options = ScanOptions {
            lengths: lengths.map(|l| l.to_vec()),
            reverse,
            threads: 1,
        };
        let h = a.linear_scan((-a + T::one()) * g[1], Some(state[0]), &options);
        let last = if reverse { 0 } else { x.shape()[0] - 1 }; // (without lengths)
        Some((
            h,
            smallvec![h
                .slice(0, last..last + 1)
                .reshape(&[x.shape()[1], self.hidden])],
        ))
    }
}
// --- end ---

#[test]
fn selective_scan_passes_gradcheck() {
    let mut rng = StdRng::seed_from_u64(0);
    let (steps, batch, d, n) = (4, 2, 3, 2);
    let inputs = [
        Tensor::uniform(&[steps, batch, d], -1.0, 1.0, &mut rng),
        Tensor::uniform(&[d, d], -1.0, 1.0, &mut rng),
        Tensor::uniform(&[n, d], -1.0, 1.0, &mut rng),
        Tensor::uniform(&[n, d], -1.0, 1.0, &mut rng),
        Tensor::uniform(&[d, n], -1.0, 1.0, &mut rng),
    ];
    assert_gradcheck(
        |_: &Tape<f64>, v| selective_scan(v[0], v[1], v[2], v[3], v[4]),
        &inputs,
    );
    // Against the recurrence written out for one channel and state.
    let tape = Tape::new();
    let v: Vec<_> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
    let y = selective_scan(v[0], v[1], v[2], v[3], v[4]).to_tensor();
    let x = &inputs[0];
    let dot = |w: &Tensor<f64>, row: usize, t: usize, b: usize| -> f64 {
        (0..d).map(|k| w.at(&[row, k]) * x.at(&[t, b, k])).sum()
    };
    for (b, ch) in [(0, 0), (1, 2)] {
        let mut h = [0.0; 2];
        for t in 0..steps {
            let delta = (1.0 + dot(&inputs[1], ch, t, b).exp()).ln();
            let mut want = 0.0;
            for (s, h) in h.iter_mut().enumerate() {
                let a = (-delta * inputs[4].at(&[ch, s]).exp()).exp();
                *h = a * *h + delta * x.at(&[t, b, ch]) * dot(&inputs[2], s, t, b);
                want += dot(&inputs[3], s, t, b) * *h;
            }
            approx::assert_relative_eq!(y.at(&[t, b, ch]), want, max_relative = 1e-12);
        }
    }
}

#[test]
fn a_user_scan_cell_is_a_layer() {
    let mut store = ParamStore::<f64>::new();
    let rng = &mut StdRng::seed_from_u64(1);
    let layer = Recurrent::build(
        RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
        "EMA",
        |l, r, input| {
            let w = store.add(
                format!("w{l}{r}"),
                Tensor::uniform(&[8, input], -0.5, 0.5, rng),
            );
            let b = store.add(format!("b{l}{r}"), Tensor::uniform(&[8], -0.5, 0.5, rng));
            EmaCell {
                w,
                b,
                input,
                hidden: 4,
            }
        },
    );
    let x = Tensor::uniform(&[5, 2, 3], -1.0, 1.0, rng);
    let report = gradcheck_params(&store, std::slice::from_ref(&x), |s, v| {
        layer.forward(s, v[0], None, None).output
    });
    assert!(report.passed, "{report}");
    // The whole-sequence form equals stepping the cell.
    let mut stepped = layer.clone();
    stepped.options.fused = false;
    let tape = Tape::new();
    let s = Session::new(&tape, &store, recur::nn::Mode::Eval, 0);
    let (a, b) = (
        layer.forward(&s, tape.constant(x.clone()), None, None),
        stepped.forward(&s, tape.constant(x), None, None),
    );
    assert!(a.output.to_tensor().max_abs_diff(&b.output.to_tensor()) < 1e-12);
}
