//! Very long unrolls: an LSTM over T = 100 000 steps trains (forward + backward) in an
//! ordinary test thread, and checkpointing through time keeps its peak memory far below the
//! plain path's, as measured by a counting allocator.

use rand::SeedableRng;
use recur::nn::{Lstm, Mode, ParamStore, RnnOptions, Session};
use recur::tape::{Tape, Tensor};
use std::sync::Mutex;

#[global_allocator]
static ALLOCATOR: recur::memory::CountingAllocator = recur::memory::CountingAllocator;

/// Measurements must not overlap: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

const HIDDEN: usize = 8;

/// Forward + backward of a 1-layer LSTM over `steps` (batch 1), composed from cell steps so
/// that the plain and checkpointed paths record the same ops; returns the gradient norm of
/// the recurrent weights and the peak bytes allocated above the starting point.
fn unroll(steps: usize, checkpoint: bool) -> (f64, usize) {
    let mut store = ParamStore::<f64>::new();
    let lstm = Lstm::new(
        &mut store,
        "",
        RnnOptions::new(2, HIDDEN)
            .checkpoint(checkpoint)
            .fused(false),
        &mut rand::rngs::StdRng::seed_from_u64(0),
    );
    let x = Tensor::from_vec(
        (0..steps * 2).map(|i| ((i as f64) * 0.37).sin()).collect(),
        &[steps, 1, 2],
    );
    let base = recur::memory::start_peak();
    let norm = {
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let out = lstm.forward(&s, tape.constant(x), None, None);
        let loss = out.h_n().sum() + out.output.mean();
        let g = tape
            .backward(loss)
            .wrt(s.param(store.find("weight_hh_l0").unwrap()));
        g.data().iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    (norm, recur::memory::peak_since(base))
}

#[test]
fn an_lstm_trains_over_100_000_steps_in_a_normal_thread() {
    let _serial = SERIAL.lock().unwrap();
    let (norm, _) = unroll(100_000, true);
    assert!(norm.is_finite() && norm > 0.0);
}

#[test]
fn checkpointing_through_time_bounds_peak_memory() {
    let _serial = SERIAL.lock().unwrap();
    let (g_plain, plain) = unroll(10_000, false);
    let (g_ckpt, ckpt) = unroll(10_000, true);
    assert_eq!(g_plain.to_bits(), g_ckpt.to_bits(), "same gradients");
    let (_, ckpt_long) = unroll(100_000, true);
    let state = HIDDEN * 8;
    println!(
        "peak memory: plain T=10k {:.1} MB; checkpointed T=10k {:.1} MB, T=100k {:.1} MB ({} state-sized rows per step)",
        plain as f64 / 1e6,
        ckpt as f64 / 1e6,
        ckpt_long as f64 / 1e6,
        ckpt_long / 100_000 / state
    );
    // What remains O(T) is the layer's own output sequence (and its gradient), ~6 copies of
    // B·H values per step; everything the recurrence needs for backward is O(√T).
    assert!(
        ckpt * 8 < plain,
        "checkpointing should cut peak memory many times: {ckpt} vs {plain}"
    );
    assert!(
        ckpt_long < plain,
        "T = 100k checkpointed must stay below plain T = 10k: {ckpt_long} vs {plain}"
    );
    assert!(
        ckpt_long / 100_000 < 8 * state,
        "per-step memory must be a few output rows, not activations"
    );
}
