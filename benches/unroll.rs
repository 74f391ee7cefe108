//! Cost against unroll length: forward + backward of RNN, LSTM and GRU layers (by default
//! batch 8, hidden 128, input 128, f32, T in 10, 100, 1 000, 10 000): fused (the default
//! sequence kernels), composed (every step's ops on the tape) and checkpointed through time.
//! Criterion reports throughput in elements/s where one element is one time step (time per
//! step = 1 / throughput). Before timing, the peak memory of one pass is printed for every
//! benchmark the filter selects, measured by the counting global allocator below.
//!
//!     cargo bench --bench unroll                       # everything
//!     cargo bench --bench unroll -- lstm/fused         # criterion's filter: memory and timing
//!     UNROLL_T=50,500 UNROLL_B=32 UNROLL_H=256 UNROLL_CELL=gru cargo bench --bench unroll
//!
//! `UNROLL_T` (a comma-separated list of lengths), `UNROLL_B`, `UNROLL_H` and `UNROLL_CELL`
//! (rnn, lstm, gru, comma-separated) set the workload; the benchmark ids stay
//! `unroll/{cell}/{mode}/{T}`, so a filter selects the same way for any sizes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use recur::nn::{CellKind, Mode, Nonlinearity, ParamStore, Recurrent, RnnOptions, Session};
use recur::tape::{Tape, Tensor};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

const CELLS: [(&str, CellKind); 3] = [
    ("rnn", CellKind::Rnn(Nonlinearity::Tanh)),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];

/// The workload: from the environment, else the defaults above.
struct Workload {
    batch: usize,
    hidden: usize,
    steps: Vec<usize>,
    cells: Vec<(&'static str, CellKind)>,
}

impl Workload {
    fn from_env() -> Self {
        let list = |name: &str, default: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_else(|_| default.to_string())
                .split(',')
                .map(|v| v.trim().to_lowercase())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let number = |name: &str, v: &str| -> usize {
            v.parse()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| panic!("{name}: {v:?} is not a positive whole number"))
        };
        let one = |name: &str, default: &str| {
            number(
                name,
                &std::env::var(name).unwrap_or_else(|_| default.to_string()),
            )
        };
        let cells = list("UNROLL_CELL", "rnn,lstm,gru")
            .iter()
            .map(|c| {
                *CELLS
                    .iter()
                    .find(|(n, _)| n == c)
                    .unwrap_or_else(|| panic!("UNROLL_CELL: {c:?} is not one of rnn, lstm, gru"))
            })
            .collect();
        Workload {
            batch: one("UNROLL_B", "8"),
            hidden: one("UNROLL_H", "128"),
            steps: list("UNROLL_T", "10,100,1000,10000")
                .iter()
                .map(|t| number("UNROLL_T", t))
                .collect(),
            cells,
        }
    }
}

/// Criterion's filter (the first free argument after `--`), if any: the memory pass prints
/// only the benchmarks whose ids contain it, as criterion times only those.
fn filter() -> Option<String> {
    // Criterion's options that take a value; everything else starting with `-` is a flag.
    const WITH_VALUE: [&str; 13] = [
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--output-format",
        "--color",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

/// Whether the benchmark `unroll/{id}` is selected by `filter`.
fn selected(filter: &Option<String>, id: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| format!("unroll/{id}").contains(f.as_str()))
}

/// The three ways a layer can run: (name, fused, checkpointed).
const MODES: [(&str, bool, bool); 3] = [
    ("fused", true, false),
    ("composed", false, false),
    ("checkpointed", false, true),
];

fn layer(
    w: &Workload,
    kind: CellKind,
    fused: bool,
    checkpoint: bool,
) -> (Recurrent<recur::nn::AnyCell>, ParamStore<f32>) {
    let mut store = ParamStore::new();
    let options = RnnOptions::new(w.hidden, w.hidden)
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

fn input(w: &Workload, steps: usize) -> Tensor<f32> {
    Tensor::uniform(
        &[steps, w.batch, w.hidden],
        -1.0,
        1.0,
        &mut rand::rngs::StdRng::seed_from_u64(1),
    )
}

fn print_memory(w: &Workload, filter: &Option<String>) {
    println!(
        "peak memory of one forward + backward (B = {}, H = {}, f32):",
        w.batch, w.hidden
    );
    println!("{:<6} {:>8} {:<13} {:>10}", "cell", "T", "mode", "MB");
    for &(name, kind) in &w.cells {
        for &steps in &w.steps {
            let modes: Vec<_> = MODES
                .iter()
                .filter(|(mode, ..)| selected(filter, &format!("{name}/{mode}/{steps}")))
                .collect();
            if modes.is_empty() {
                continue;
            }
            let x = input(w, steps);
            for &&(mode, fused, checkpoint) in &modes {
                let (l, store) = layer(w, kind, fused, checkpoint);
                let base = recur::memory::start_peak();
                pass(&l, &store, &x);
                let mb = recur::memory::peak_since(base) as f64 / 1e6;
                println!("{name:<6} {steps:>8} {mode:<13} {mb:>10.2}");
            }
        }
    }
}

fn bench_unroll(c: &mut Criterion) {
    let w = Workload::from_env();
    print_memory(&w, &filter());
    let mut group = c.benchmark_group("unroll");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    for &(name, kind) in &w.cells {
        for &steps in &w.steps {
            let x = input(&w, steps);
            group.throughput(Throughput::Elements(steps as u64));
            for (mode, fused, checkpoint) in MODES {
                let (l, store) = layer(&w, kind, fused, checkpoint);
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
