//! The fused kernels against the composed cell steps (values and every gradient, f64) for
//! each kind, with and without biases, stacked, bidirectional, with variable lengths and
//! initial states; finite differences through the fused op; and the fallback to the composed
//! path where a cell has no kernel.

use crate::check::gradcheck_params;
use crate::params::ParamStore;
use crate::rnn::tests::{rand_tensor, rng, run_values, run_values_with};
use crate::rnn::{AnyCell, Cell, CellKind, Nonlinearity, Recurrent, RnnOptions};
use recur_tape::concat;
use recur_tape::kernels::Precision;

const KINDS: [CellKind; 4] = [
    CellKind::Rnn(Nonlinearity::Tanh),
    CellKind::Rnn(Nonlinearity::Relu),
    CellKind::Lstm,
    CellKind::Gru,
];

fn layer(store: &mut ParamStore<f64>, kind: CellKind, options: RnnOptions) -> Recurrent<AnyCell> {
    let layer = Recurrent::of_kind(store, "rnn", kind, options, &mut rng());
    assert!(layer.cells.iter().all(|c| Cell::<f64>::fused(c).is_some()));
    layer
}

#[test]
fn fused_matches_composed_steps() {
    let cases: Vec<(RnnOptions, Option<Vec<usize>>, bool)> = vec![
        (RnnOptions::new(3, 5), None, false),
        (RnnOptions::new(3, 4).bias(false), None, true),
        (
            RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
            Some(vec![7, 2, 5]),
            true,
        ),
        (
            RnnOptions::new(3, 6).num_layers(3),
            Some(vec![1, 7, 7]),
            false,
        ),
    ];
    let x = rand_tensor(&[7, 3, 3], 11);
    for kind in KINDS {
        for (options, lengths, init) in &cases {
            let mut store = ParamStore::new();
            let fused = layer(&mut store, kind, options.clone());
            let mut composed = fused.clone();
            composed.options.fused = false;
            let a = run_values(&fused, &store, &x, lengths.as_deref(), *init);
            let b = run_values(&composed, &store, &x, lengths.as_deref(), *init);
            assert_close(&a, &b, &format!("{kind} {options:?} {lengths:?}"));
        }
    }
}

/// In mixed precision the fused kernels round the same operands as the composed steps'
/// `linear` ops (weights, inputs, states and, in backward, gate gradients), so values and
/// every gradient still agree to rounding, and checkpointing through time recomputes in
/// bf16 too; bf16 moves them visibly away from full precision.
#[test]
fn bf16_products_round_the_same_operands_fused_and_composed() {
    let x = rand_tensor(&[7, 3, 3], 12);
    let lengths = vec![7, 2, 5];
    for kind in KINDS {
        for (options, lengths) in [
            (RnnOptions::new(3, 5).num_layers(2), None),
            (
                RnnOptions::new(3, 4).bidirectional(true),
                Some(lengths.as_slice()),
            ),
        ] {
            let mut store = ParamStore::new();
            let fused = layer(&mut store, kind, options.clone());
            let mut composed = fused.clone();
            composed.options.fused = false;
            let mut checkpointed = composed.clone();
            checkpointed.options.checkpoint = true;
            let what = format!("{kind} {options:?} bf16");
            let a = run_values_with(&fused, &store, &x, lengths, true, Precision::Bf16);
            let b = run_values_with(&composed, &store, &x, lengths, true, Precision::Bf16);
            let c = run_values_with(&checkpointed, &store, &x, lengths, true, Precision::Bf16);
            assert_close(&a, &b, &what);
            assert_close(&c, &b, &format!("{what} checkpointed"));
            let full = run_values(&fused, &store, &x, lengths, true);
            let largest = a
                .iter()
                .zip(&full)
                .flat_map(|(u, v)| u.data().iter().zip(v.data()).map(|(p, q)| (p - q).abs()))
                .fold(0.0, f64::max);
            assert!(largest > 1e-4, "{what}: bf16 changed nothing ({largest})");
            assert!(largest < 0.1, "{what}: bf16 off by {largest}");
        }
    }
}

/// Values and gradients of `fused` and `composed` agree to rounding.
fn assert_close(a: &[recur_tape::Tensor<f64>], b: &[recur_tape::Tensor<f64>], what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (f, c)) in a.iter().zip(b).enumerate() {
        assert_eq!(f.shape(), c.shape());
        for (&u, &v) in f.data().iter().zip(c.data()) {
            assert!(
                (u - v).abs() <= 1e-12 * (1.0 + v.abs()),
                "{what}: tensor {i}: fused {u} vs composed {v}"
            );
        }
    }
}

#[test]
fn long_sequences_run_in_chunks_with_the_same_results() {
    // 37 rows a step: chunks of 7 steps (256 rows), the last one shorter; with lengths and
    // without (the RNN then reads its previous states in place, across chunk boundaries).
    let (steps, batch) = (20, 37);
    let x = rand_tensor(&[steps, batch, 3], 31);
    let lengths: Vec<usize> = (0..batch).map(|b| 1 + (b * 7) % steps).collect();
    let stack = RnnOptions::new(3, 4).num_layers(3);
    for (kind, options) in [
        (CellKind::Lstm, RnnOptions::new(3, 4).bidirectional(true)),
        (CellKind::Gru, RnnOptions::new(3, 4).bidirectional(true)),
        (
            CellKind::Rnn(Nonlinearity::Relu),
            RnnOptions::new(3, 4).bidirectional(true),
        ),
        (CellKind::Lstm, stack.clone()),
        (CellKind::Rnn(Nonlinearity::Tanh), stack),
    ] {
        let mut store = ParamStore::new();
        let fused = layer(&mut store, kind, options.clone());
        let mut composed = fused.clone();
        composed.options.fused = false;
        for lengths in [Some(&lengths[..]), None] {
            let a = run_values(&fused, &store, &x, lengths, true);
            let b = run_values(&composed, &store, &x, lengths, true);
            let what = format!("{kind} {options:?} in chunks, lengths {lengths:?}");
            assert_close(&a, &b, &what);
        }
    }
}

#[test]
fn fused_layers_pass_gradcheck() {
    let lengths = [4, 2];
    let cases = KINDS.into_iter().flat_map(|kind| {
        [
            (
                kind,
                RnnOptions::new(3, 3).num_layers(2).bidirectional(true),
            ),
            (kind, RnnOptions::new(3, 3).num_layers(3)),
        ]
    });
    for (kind, options) in cases {
        let dirs = if options.bidirectional { 2 } else { 1 };
        let mut store = ParamStore::new();
        let layer = layer(&mut store, kind, options);
        let units = layer.cells.len();
        let mut inputs = vec![rand_tensor(&[4, 2, 3], 1)];
        for (p, &w) in Cell::<f64>::state_sizes(&layer.cells[0]).iter().enumerate() {
            inputs.push(rand_tensor(&[units, 2, w], 2 + p as u64));
        }
        let report = gradcheck_params(&store, &inputs, |s, v| {
            let out = layer.forward(s, v[0], Some(&v[1..]), Some(&lengths));
            let mut parts = vec![out.output.reshape(&[8 * dirs, 3])];
            parts.extend(out.final_state.iter().map(|p| p.reshape(&[2 * units, 3])));
            concat(&parts, 0)
        });
        assert!(report.passed, "{kind}: {report}");
    }
}

#[test]
fn cells_without_a_kernel_run_composed() {
    let mut store = ParamStore::<f64>::new();
    let proj = Recurrent::of_kind(
        &mut store,
        "",
        CellKind::Lstm,
        RnnOptions::new(3, 4).proj_size(2),
        &mut rng(),
    );
    assert!(Cell::<f64>::fused(&proj.cells[0]).is_none());
    let out = run_values(&proj, &store, &rand_tensor(&[5, 2, 3], 3), None, true);
    assert_eq!(out[0].shape(), &[5, 2, 2]);
    assert!(out.iter().all(|t| t.data().iter().all(|v| v.is_finite())));
}

#[test]
fn two_threads_give_bit_identical_results() {
    // Directions side by side, and a stack as a wavefront over chunks of one step.
    let x = rand_tensor(&[9, 4, 3], 21);
    let cases = KINDS.into_iter().flat_map(|kind| {
        [
            (
                kind,
                RnnOptions::new(3, 5).num_layers(2).bidirectional(true),
            ),
            (kind, RnnOptions::new(3, 5).num_layers(3)),
        ]
    });
    for (kind, options) in cases {
        let mut store = ParamStore::new();
        let layer = layer(&mut store, kind, options);
        let run = |threads| {
            crate::parallel::set_threads(threads);
            let values = run_values(&layer, &store, &x, Some(&[9, 3, 7, 1]), true);
            crate::parallel::set_threads(1);
            values
        };
        let (one, two) = (run(1), run(2));
        for (i, (a, b)) in one.iter().zip(&two).enumerate() {
            let bits = |t: &recur_tape::Tensor<f64>| -> Vec<u64> {
                t.data().iter().map(|v| v.to_bits()).collect()
            };
            assert_eq!(
                bits(a),
                bits(b),
                "{kind}: tensor {i} differs with 2 threads"
            );
        }
    }
}

/// In f32 on a bf16 tape, the fused layers (each kind, stacked, and bidirectional with
/// variable lengths) give the same values and gradients, bit for bit, on both bf16 kernels.
#[test]
fn bf16_fused_layers_give_the_same_bits_on_both_kernels() {
    use crate::{Mode, Session};
    use recur_tape::kernels::bf16_panel::Bf16Kernel;
    use recur_tape::{Tape, Tensor};
    if !Bf16Kernel::Native.available() {
        eprintln!("no AVX512_BF16 on this CPU: the native kernel is not compared here");
        return;
    }
    let x = Tensor::<f32>::uniform(&[7, 3, 3], -1.0, 1.0, &mut rng());
    let lengths = [7, 2, 5];
    for kind in KINDS {
        for (options, lengths) in [
            (RnnOptions::new(3, 20).num_layers(2), None),
            (
                RnnOptions::new(3, 17).bidirectional(true),
                Some(&lengths[..]),
            ),
        ] {
            let run = |kernel: Bf16Kernel| {
                kernel.run_with(|| {
                    let mut store = ParamStore::<f32>::new();
                    let layer =
                        Recurrent::of_kind(&mut store, "rnn", kind, options.clone(), &mut rng());
                    let tape = Tape::new();
                    tape.set_product_precision(Precision::Bf16);
                    let s = Session::new(&tape, &store, Mode::Eval, 0);
                    let xv = tape.var(x.clone());
                    let out = layer.forward(&s, xv, None, lengths).output;
                    let grads = tape.backward((out * out).sum());
                    let mut all = vec![out.to_tensor(), grads.wrt(xv)];
                    all.extend(store.ids().map(|id| grads.wrt(s.param(id))));
                    all
                })
            };
            let (native, portable) = (run(Bf16Kernel::Native), run(Bf16Kernel::Portable));
            for (n, p) in native.iter().zip(&portable) {
                let same = n
                    .data()
                    .iter()
                    .zip(p.data())
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{kind} {options:?}");
            }
        }
    }
}
