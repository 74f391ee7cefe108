//! The stepper against the layer on the tape: the same outputs and states, step by step.

use super::*;
use crate::rnn::{AnyCell, Nonlinearity, RnnOptions};
use crate::session::{Mode, Session};
use crate::{Linear, ParamStore};
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur_tape::Tape;

const KINDS: [CellKind; 4] = [
    CellKind::Lstm,
    CellKind::Gru,
    CellKind::Rnn(Nonlinearity::Tanh),
    CellKind::Rnn(Nonlinearity::Relu),
];

/// The layer's outputs `[steps, hidden]` and final state over `xs` from `initial`, on the tape.
fn on_tape<T: Element>(
    store: &ParamStore<T>,
    layer: &Recurrent<AnyCell>,
    xs: &Tensor<T>,
    initial: &[Tensor<T>],
) -> (Vec<T>, Vec<Tensor<T>>) {
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Eval, 0);
    let init: Vec<_> = initial.iter().map(|t| s.constant(t.clone())).collect();
    let out = layer.forward(&s, s.constant(xs.clone()), Some(&init), None);
    let state = out.final_state.iter().map(|v| v.to_tensor()).collect();
    (out.output.to_tensor().data().to_vec(), state)
}

fn build<T: Element>(
    kind: CellKind,
    options: RnnOptions,
    seed: u64,
) -> (ParamStore<T>, Recurrent<AnyCell>, StdRng) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut store = ParamStore::new();
    let layer = Recurrent::of_kind(&mut store, "rnn", kind, options, &mut rng);
    (store, layer, rng)
}

#[test]
fn steps_match_the_layer_for_every_cell_depth_and_bias() {
    let (input, hidden, steps) = (5, 7, 6);
    for kind in KINDS {
        for (layers, bias) in [(1, true), (3, true), (2, false)] {
            let options = RnnOptions::new(input, hidden).num_layers(layers).bias(bias);
            let (store, layer, mut rng) = build::<f64>(kind, options, 3);
            let xs = Tensor::uniform(&[steps, 1, input], -1.0, 1.0, &mut rng);
            let parts = state_parts(kind);
            let initial: Vec<Tensor<f64>> = (0..parts)
                .map(|_| Tensor::uniform(&[layers, 1, hidden], -0.5, 0.5, &mut rng))
                .collect();
            let (outputs, final_state) = on_tape(&store, &layer, &xs, &initial);
            let mut stepper = Stepper::new(&store, &layer, Precision::Full).unwrap();
            stepper.set_state(&initial).unwrap();
            for t in 0..steps {
                let h = stepper
                    .step(&xs.data()[t * input..(t + 1) * input])
                    .to_vec();
                for (a, b) in h.iter().zip(&outputs[t * hidden..(t + 1) * hidden]) {
                    assert!(
                        (a - b).abs() < 1e-12,
                        "{kind} {layers} layers step {t}: {a} vs {b}"
                    );
                }
            }
            for (a, b) in stepper.state().iter().zip(&final_state) {
                assert_eq!(a.shape(), b.shape());
                for (x, y) in a.data().iter().zip(b.data()) {
                    assert!((x - y).abs() < 1e-12, "{kind}: final state {x} vs {y}");
                }
            }
            stepper.reset();
            assert!(stepper
                .state()
                .iter()
                .all(|t| t.data().iter().all(|&v| v == 0.0)));
        }
    }
}

#[test]
fn a_folded_embedding_table_steps_as_the_embedding_rows_do() {
    let (vocab, width, hidden) = (11, 6, 5);
    for kind in KINDS {
        let (mut store, layer, mut rng) =
            build::<f64>(kind, RnnOptions::new(width, hidden).num_layers(2), 5);
        let emb = Embedding::new(&mut store, "emb", vocab, width, None, &mut rng);
        let mut table = Stepper::new(&store, &layer, Precision::Full)
            .unwrap()
            .with_embedding(&store, &emb);
        let mut rows = Stepper::new(&store, &layer, Precision::Full)
            .unwrap()
            .with_embedding_within(&store, &emb, 0);
        assert!(matches!(table.tokens, Some(TokenInput::Table { .. })));
        assert!(matches!(rows.tokens, Some(TokenInput::Rows { .. })));
        let mut plain = Stepper::new(&store, &layer, Precision::Full).unwrap();
        let weights = store.get(emb.weight).data().to_vec();
        for token in [3, 0, 10, 3, 7] {
            let a = table.step_token(token).to_vec();
            let b = rows.step_token(token).to_vec();
            let c = plain
                .step(&weights[token * width..(token + 1) * width])
                .to_vec();
            assert_eq!(b, c, "{kind}: the embedding's rows are the plain input");
            for (x, y) in a.iter().zip(&b) {
                // The table adds the bias to the product once, as the plain step does.
                assert!((x - y).abs() < 1e-14, "{kind}: table {x} vs rows {y}");
            }
        }
        assert!(table.bytes_per_step() < rows.bytes_per_step());
    }
}

#[test]
fn bf16_steps_stay_within_bf16_precision_of_full_ones() {
    let (vocab, width, hidden) = (65, 64, 64);
    for kind in KINDS {
        let (mut store, layer, mut rng) =
            build::<f32>(kind, RnnOptions::new(width, hidden).num_layers(2), 9);
        let emb = Embedding::new(&mut store, "emb", vocab, width, None, &mut rng);
        let mut full = Stepper::new(&store, &layer, Precision::Full)
            .unwrap()
            .with_embedding(&store, &emb);
        let mut half = Stepper::new(&store, &layer, Precision::Bf16)
            .unwrap()
            .with_embedding(&store, &emb);
        assert!(half.bytes_per_step() * 10 < full.bytes_per_step() * 6);
        let mut largest = 0.0f32;
        for t in 0..40 {
            let token = t * 17 % vocab;
            let a = full.step_token(token).to_vec();
            let b = half.step_token(token);
            largest = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(largest, f32::max);
        }
        assert!(largest > 0.0, "{kind}: bf16 changed nothing");
        assert!(largest < 0.05, "{kind}: bf16 off by {largest}");
    }
}

#[test]
fn layers_that_cannot_step_and_wrong_states_are_refused() {
    let (store, layer, _) =
        build::<f32>(CellKind::Gru, RnnOptions::new(3, 4).bidirectional(true), 1);
    let err = Stepper::new(&store, &layer, Precision::Full).err().unwrap();
    assert!(err.contains("bidirectional"), "{err}");
    let (store, layer, _) = build::<f32>(CellKind::Lstm, RnnOptions::new(3, 4).proj_size(2), 1);
    let err = Stepper::new(&store, &layer, Precision::Full).err().unwrap();
    assert!(err.contains("projections"), "{err}");
    let (store, layer, _) = build::<f32>(CellKind::Lstm, RnnOptions::new(3, 4).num_layers(2), 1);
    let mut stepper = Stepper::new(&store, &layer, Precision::Full).unwrap();
    let err = stepper.set_state(&[Tensor::zeros(&[2, 1, 4])]).unwrap_err();
    assert_eq!(err, "Stepper::set_state: 1 state parts, the lstm has 2");
    let err = stepper
        .set_state(&[Tensor::zeros(&[2, 1, 4]), Tensor::zeros(&[1, 1, 4])])
        .unwrap_err();
    assert!(
        err.contains("state part 1 has shape [1, 1, 4], expected [2, 1, 4]"),
        "{err}"
    );
}

#[test]
fn a_packed_linear_computes_the_linear_layer() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut store = ParamStore::<f64>::new();
    for bias in [true, false] {
        let fc = Linear::new(
            &mut store,
            if bias { "a" } else { "b" },
            9,
            40,
            bias,
            &mut rng,
        );
        let x = Tensor::uniform(&[1, 9], -1.0, 1.0, &mut rng);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Eval, 0);
        let expected = fc.forward(&s, s.constant(x.clone())).to_tensor();
        let mut y = vec![0.0; 40];
        fc.packed(&store, Precision::Full).forward(x.data(), &mut y);
        for (a, b) in y.iter().zip(expected.data()) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }
}

/// With two threads the large products' rows are shared out (a 2×256 LSTM's 1024×256
/// weights are over `map_parts`' threshold), and every step is bit for bit the same.
#[test]
fn two_threads_step_bit_for_bit_as_one() {
    for precision in [Precision::Full, Precision::Bf16] {
        let (mut store, layer, mut rng) =
            build::<f32>(CellKind::Lstm, RnnOptions::new(256, 256).num_layers(2), 4);
        let emb = Embedding::new(&mut store, "emb", 65, 256, None, &mut rng);
        let run = |threads| {
            crate::parallel::set_threads(threads);
            let mut stepper = Stepper::new(&store, &layer, precision)
                .unwrap()
                .with_embedding(&store, &emb);
            let steps: Vec<Vec<u32>> = (0..12)
                .map(|t| {
                    let h = stepper.step_token(t * 5 % 65);
                    h.iter().map(|v| v.to_bits()).collect()
                })
                .collect();
            crate::parallel::set_threads(1);
            steps
        };
        assert_eq!(run(1), run(2), "{precision:?}");
    }
}
