//! Ops know when backward will not run: under `no_grad` the fused LSTM saves nothing for
//! backward (its gates, previous states and a stack's layer inputs), so a long sequence costs
//! its outputs and a few chunk-sized buffers, as measured by a counting allocator.

use rand::SeedableRng;
use recur::nn::{Lstm, Mode, ParamStore, RnnOptions, Session};
use recur::tape::{Tape, Tensor};
use std::sync::Mutex;

#[global_allocator]
static ALLOCATOR: recur::memory::CountingAllocator = recur::memory::CountingAllocator;

/// Measurements must not overlap: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

const STEPS: usize = 2000;
const BATCH: usize = 8;
const HIDDEN: usize = 64;

/// Peak bytes allocated above the start by a fused LSTM's forward over `[STEPS, BATCH,
/// HIDDEN]` with `layers` layers, recorded for backward or under `no_grad`.
fn forward_peak(layers: usize, recording: bool) -> usize {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut store = ParamStore::<f32>::new();
    let options = RnnOptions::new(HIDDEN, HIDDEN).num_layers(layers);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let lstm = Lstm::new(&mut store, "lstm", options, &mut rng);
    let x = Tensor::uniform(&[STEPS, BATCH, HIDDEN], -1.0, 1.0, &mut rng);
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let x = tape.constant(x);
    let base = recur::memory::start_peak();
    let out = if recording {
        lstm.forward(&s, x, None, None).output
    } else {
        tape.no_grad(|| lstm.forward(&s, x, None, None).output)
    };
    assert_eq!(out.requires_grad(), recording);
    recur::memory::peak_since(base)
}

#[test]
fn the_fused_lstm_saves_nothing_under_no_grad() {
    let outputs = STEPS * BATCH * HIDDEN * std::mem::size_of::<f32>();
    for layers in [1, 2] {
        let (with_grad, without) = (forward_peak(layers, true), forward_peak(layers, false));
        println!(
            "{layers} layer(s): outputs {:.1} MB; peak {:.1} MB recording, {:.1} MB under no_grad",
            outputs as f64 / 1e6,
            with_grad as f64 / 1e6,
            without as f64 / 1e6
        );
        // The gates (5 values per unit) and previous states (2) of every step, and a
        // stack's layer inputs, when recording.
        assert!(with_grad > 6 * outputs, "{layers} layers: {with_grad}");
        // The outputs (a stack's lower layers hand theirs on chunk by chunk) and buffers of
        // one chunk of steps.
        assert!(
            without < outputs + outputs / 2,
            "{layers} layers: {without} bytes under no_grad for {outputs} of outputs"
        );
    }
}
