//! The linear-recurrence layers (minGRU, minLSTM, LRU, RG-LRU, QRNN) against PyTorch
//! references written as plain per-step loops (tests/fixtures/scan, from
//! tools/scan_fixtures.py; f64, ≤ 1e-10 relative): outputs, final states and every gradient,
//! stacked, bidirectional and with variable lengths; and the layer's three ways of running a
//! scan cell (whole sequence, step by step, checkpointed through time) against each other.

use rand::SeedableRng;
use recur::nn::checkpoint::{self, TensorFile};
use recur::nn::{
    Lru, LruOptions, MinGru, MinLstm, Mode, ParamStore, Qrnn, RecurrentOutput, RgLru, RnnOptions,
    Session,
};
use recur::tape::{Tape, Tensor, Var};
use serde_json::Value;
use std::path::PathBuf;

const CASES: [&str; 12] = [
    "mingru_h0",
    "mingru_bi_lengths",
    "mingru_positive_stack",
    "minlstm_h0",
    "minlstm_bi_lengths",
    "minlstm_positive",
    "rglru_h0",
    "rglru_bi_lengths",
    "lru_h0",
    "lru_bi_lengths",
    "qrnn_h0",
    "qrnn_bi_lengths",
];

fn fixture(name: &str) -> (TensorFile, Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scan")
        .join(format!("{name}.safetensors"));
    let file = checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let cfg = serde_json::from_str(&file.metadata["config"]).unwrap();
    (file, cfg)
}

fn get(file: &TensorFile, name: &str) -> Tensor<f64> {
    file.get(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
        .to_float()
        .unwrap()
}

fn relative_error(ours: &Tensor<f64>, want: &Tensor<f64>) -> f64 {
    assert_eq!(ours.shape(), want.shape());
    let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    ours.max_abs_diff(want) / scale.max(1e-300)
}

fn assert_close(what: &str, ours: &Tensor<f64>, want: &Tensor<f64>, tol: f64) {
    let err = relative_error(ours, want);
    assert!(err <= tol, "{what}: relative error {err:.3e}");
}

/// One of the five layers behind one interface, so every case runs the same checks.
enum Layer {
    MinGru(MinGru),
    MinLstm(MinLstm),
    RgLru(RgLru),
    Lru(Lru),
    Qrnn(Qrnn),
}

/// What a run returns: output, final state parts, and the gradients of the fixture's loss
/// with respect to the input, each initial part and each parameter (in store order).
struct Run {
    output: Tensor<f64>,
    finals: Vec<Tensor<f64>>,
    grads: Vec<Tensor<f64>>,
}

impl Layer {
    fn build(
        cfg: &Value,
        store: &mut ParamStore<f64>,
        configure: impl Fn(RnnOptions) -> RnnOptions,
    ) -> Layer {
        let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let options = configure(
            RnnOptions::new(n("input_size"), n("hidden_size"))
                .num_layers(n("num_layers"))
                .bidirectional(cfg["bidirectional"].as_bool().unwrap()),
        );
        let positive = cfg["positive"].as_bool().unwrap();
        let rng = &mut rand::rngs::StdRng::seed_from_u64(0);
        match cfg["kind"].as_str().unwrap() {
            "mingru" => Layer::MinGru(MinGru::new(store, "rnn", options, positive, rng)),
            "minlstm" => Layer::MinLstm(MinLstm::new(store, "rnn", options, positive, rng)),
            "rglru" => Layer::RgLru(RgLru::new(store, "rnn", options, rng)),
            "lru" => Layer::Lru(Lru::new(
                store,
                "rnn",
                options,
                &LruOptions::new(n("state_size")),
                rng,
            )),
            "qrnn" => Layer::Qrnn(Qrnn::new(store, "rnn", options, rng)),
            other => panic!("unknown kind {other}"),
        }
    }

    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f64>,
        x: Var<'t, f64>,
        initial: Option<&[Var<'t, f64>]>,
        lengths: Option<&[usize]>,
    ) -> RecurrentOutput<'t, f64> {
        match self {
            Layer::MinGru(l) => l.forward(s, x, initial, lengths),
            Layer::MinLstm(l) => l.forward(s, x, initial, lengths),
            Layer::RgLru(l) => l.forward(s, x, initial, lengths),
            Layer::Lru(l) => l.forward(s, x, initial, lengths),
            Layer::Qrnn(l) => l.forward(s, x, initial, lengths),
        }
    }

    fn run(&self, store: &ParamStore<f64>, file: &TensorFile, lengths: Option<&[usize]>) -> Run {
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Train, 0);
        let x = tape.var(get(file, "input"));
        let init: Vec<Var<'_, f64>> = (0..)
            .map_while(|k| file.get(&format!("init.{k}")).map(|_| k))
            .map(|k| tape.var(get(file, &format!("init.{k}"))))
            .collect();
        let out = self.forward(&s, x, Some(&init), lengths);
        let mut loss = (out.output * tape.constant(get(file, "grad_output"))).sum();
        for (k, f) in out.final_state.iter().enumerate() {
            loss = loss + (*f * tape.constant(get(file, &format!("grad_final.{k}")))).sum();
        }
        let params: Vec<_> = store.ids().map(|id| s.param(id)).collect();
        let g = tape.backward(loss);
        let grads = [x]
            .iter()
            .chain(&init)
            .chain(&params)
            .map(|&v| {
                g.get(v)
                    .cloned()
                    .unwrap_or_else(|| Tensor::zeros(&v.shape()))
            })
            .collect();
        Run {
            output: out.output.to_tensor(),
            finals: out.final_state.iter().map(|v| v.to_tensor()).collect(),
            grads,
        }
    }
}

fn load(
    name: &str,
    configure: impl Fn(RnnOptions) -> RnnOptions,
) -> (Layer, ParamStore<f64>, TensorFile, Option<Vec<usize>>) {
    let (file, cfg) = fixture(name);
    let mut store = ParamStore::new();
    let layer = Layer::build(&cfg, &mut store, configure);
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        *store.get_mut(id) = get(&file, &name);
    }
    let steps = cfg["steps"].as_u64().unwrap() as usize;
    let lengths: Vec<usize> = cfg["lengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let lengths = lengths.iter().any(|&l| l < steps).then_some(lengths);
    (layer, store, file, lengths)
}

#[test]
fn scan_layers_match_pytorch() {
    for name in CASES {
        let (layer, store, file, lengths) = load(name, |o| o);
        let r = layer.run(&store, &file, lengths.as_deref());
        assert_close(
            &format!("{name} output"),
            &r.output,
            &get(&file, "output"),
            1e-10,
        );
        for (k, f) in r.finals.iter().enumerate() {
            assert_close(
                &format!("{name} final.{k}"),
                f,
                &get(&file, &format!("final.{k}")),
                1e-10,
            );
        }
        let mut names = vec!["grad.input".to_string()];
        names.extend((0..r.finals.len()).map(|k| format!("grad.init.{k}")));
        names.extend(store.ids().map(|id| format!("grad.{}", store.name(id))));
        assert_eq!(names.len(), r.grads.len());
        for (n, g) in names.iter().zip(&r.grads) {
            assert_close(&format!("{name} {n}"), g, &get(&file, n), 1e-10);
        }
    }
}

/// Step by step (`fused(false)`: the cell's `step`, one scan step at a time) and checkpointed
/// through time give the whole-sequence form's values and gradients.
#[test]
fn steps_and_checkpoints_equal_the_whole_sequence() {
    for name in CASES {
        let (layer, store, file, lengths) = load(name, |o| o);
        let whole = layer.run(&store, &file, lengths.as_deref());
        for (how, configure) in [
            (
                "step by step",
                (|o: RnnOptions| o.fused(false)) as fn(RnnOptions) -> RnnOptions,
            ),
            ("checkpointed", |o: RnnOptions| o.checkpoint(true)),
        ] {
            let (other, store, file, lengths) = load(name, configure);
            let r = other.run(&store, &file, lengths.as_deref());
            assert_close(
                &format!("{name} {how} output"),
                &r.output,
                &whole.output,
                1e-12,
            );
            for (a, b) in r.finals.iter().zip(&whole.finals) {
                assert_close(&format!("{name} {how} final"), a, b, 1e-12);
            }
            for (a, b) in r.grads.iter().zip(&whole.grads) {
                assert_close(&format!("{name} {how} gradient"), a, b, 1e-12);
            }
        }
    }
}

/// A sequence run in two pieces, the second from the first's final state (truncated BPTT,
/// generation), gives the outputs of one run over the whole sequence, for every layer.
#[test]
fn final_states_continue_a_sequence() {
    for name in ["mingru_h0", "minlstm_h0", "rglru_h0", "lru_h0", "qrnn_h0"] {
        let (file, cfg) = fixture(name);
        let mut store = ParamStore::new();
        let layer = Layer::build(&cfg, &mut store, |o| o.num_layers(2));
        let x = get(&file, "input");
        let run = |x: &Tensor<f64>, init: Option<&[Tensor<f64>]>| {
            let tape = Tape::new();
            let s = Session::new(&tape, &store, Mode::Eval, 0);
            let init: Option<Vec<Var<'_, f64>>> =
                init.map(|i| i.iter().map(|t| tape.constant(t.clone())).collect());
            let out = layer.forward(&s, tape.constant(x.clone()), init.as_deref(), None);
            let finals: Vec<Tensor<f64>> = out.final_state.iter().map(|v| v.to_tensor()).collect();
            (out.output.to_tensor(), finals)
        };
        let steps = x.shape()[0];
        let piece = |range: std::ops::Range<usize>| {
            let tape = Tape::new();
            tape.constant(x.clone()).slice(0, range).to_tensor()
        };
        let (whole, _) = run(&x, None);
        let (first, state) = run(&piece(0..2), None);
        let (second, _) = run(&piece(2..steps), Some(&state));
        let joined: Vec<f64> = first.data().iter().chain(second.data()).copied().collect();
        let err = whole
            .data()
            .iter()
            .zip(&joined)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err < 1e-12,
            "{name}: continued sequence differs by {err:.3e}"
        );
    }
}
