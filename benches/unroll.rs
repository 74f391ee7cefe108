//! Cost against unroll length: forward + backward of RNN, LSTM and GRU layers (batch 8,
//! hidden 128, input 128, f32) for T in 10, 100, 1 000, 10 000: fused (the default sequence
//! kernels), composed (every step's ops on the tape) and checkpointed through time. Criterion reports throughput in elements/s where one element is one time
//! step (time per step = 1 / throughput). Before timing, the peak memory of one pass per T is
//! printed, measured by the counting global allocator below.
//!
//!     cargo bench --bench unroll

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use recur::nn::{CellKind, Mode, Nonlinearity, ParamStore, Recurrent, RnnOptions, Session};
use recur::tape::{Tape, Tensor};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

const BATCH: usize = 8;
const HIDDEN: usize = 128;
const STEPS: [usize; 4] = [10, 100, 1_000, 10_000];
const CELLS: [(&str, CellKind); 3] = [
    ("rnn", CellKind::Rnn(Nonlinearity::Tanh)),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];

/// The three ways a layer can run: (name, fused, checkpointed).
const MODES: [(&str, bool, bool); 3] = [
    ("fused", true, false),
    ("composed", false, false),
    ("checkpointed", false, true),
];

fn layer(
    kind: CellKind,
    fused: bool,
    checkpoint: bool,
) -> (Recurrent<recur::nn::AnyCell>, ParamStore<f32>) {
    let mut store = ParamStore::new();
    let options = RnnOptions::new(HIDDEN, HIDDEN)
        .fused(fused)
        .checkpoint(checkpoint);
    let l = Recurrent::of_kind(
        &mut store,
        "",
        kind,
        options,
        &mut rand::rngs::StdRng::seed_from_u64(0),
    );
    (l, store)
}

/// One forward + backward pass over `x`.
fn pass(l: &Recurrent<recur::nn::AnyCell>, store: &ParamStore<f32>, x: &Tensor<f32>) -> f32 {
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Train, 0);
    let out = l.forward(&s, tape.constant(x.clone()), None, None);
    let loss = out.output.mean();
    let grads = s.backward(loss);
    grads.global_norm()
}

fn input(steps: usize) -> Tensor<f32> {
    Tensor::uniform(
        &[steps, BATCH, HIDDEN],
        -1.0,
        1.0,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    )
}

fn print_memory() {
    println!("peak memory of one forward + backward (B = {BATCH}, H = {HIDDEN}, f32):");
    println!(
        "{:<6} {:>8} {:>14} {:>14} {:>16}",
        "cell", "T", "fused MB", "composed MB", "checkpointed MB"
    );
    for (name, kind) in CELLS {
        for steps in STEPS {
            let x = input(steps);
            let mut row = Vec::new();
            for (_, fused, checkpoint) in MODES {
                let (l, store) = layer(kind, fused, checkpoint);
                let base = recur::memory::start_peak();
                pass(&l, &store, &x);
                row.push(recur::memory::peak_since(base) as f64 / 1e6);
            }
            println!(
                "{name:<6} {steps:>8} {:>14.2} {:>14.2} {:>16.2}",
                row[0], row[1], row[2]
            );
        }
    }
}

fn bench_unroll(c: &mut Criterion) {
    print_memory();
    let mut group = c.benchmark_group("unroll");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    for (name, kind) in CELLS {
        for steps in STEPS {
            let x = input(steps);
            group.throughput(Throughput::Elements(steps as u64));
            for (mode, fused, checkpoint) in MODES {
                let (l, store) = layer(kind, fused, checkpoint);
                group.bench_function(BenchmarkId::new(format!("{name}/{mode}"), steps), |b| {
                    b.iter(|| pass(&l, &store, &x))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_unroll);
criterion_main!(benches);
