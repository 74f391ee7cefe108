//! The same work as benches/torch_lm_bench.py and torch_small_bench.py, printing the
//! same JSON line per run, so recur and PyTorch compare line by line:
//!
//!     cargo run --release --example lm_bench -- THREADS [NAME ...] [--parallel batch|layers]
//!
//! NAME: char-small, zaremba-small, char-large, long-unroll, gru-medium, rnn-medium (one LM
//! training step: embedding → recurrent layers → linear → cross-entropy → backward → clip 1.0
//! → SGD 0.1; any LM case with the suffix -bf16, e.g. char-large-bf16, runs in mixed
//! precision, only when named), or timeseries-rnn32-b1-t100, custom-lstm-cell-char-small,
//! generate-lstm256x2-200chars (-bf16: bf16 weights); read-bandwidth (one thread's read
//! rate by buffer size, only when named); and the linear-recurrence cases of torch_scan_bench.py:
//! scan-op-b16-t512-h1024 (the scan op alone), mingru-char-t512, minlstm-char-t512 and
//! lstm-char-t512 (LM steps as above); custom-lstm-layer-char-small, custom-lstm-layer-char-large,
//! custom-gru-layer-gru-medium and lnlstm-char-small, user cells (custom.rs) through the generic
//! layer, as LM steps of the built-in cases' sizes. No NAME runs all. `benches/compare.sh` runs both sides.
//!
//! An LM run cuts the batch into one data-parallel shard per thread (`--parallel batch`, the
//! default; one thread runs the whole batch), or runs the whole batch with the threads inside
//! the recurrent layers, so that stacked layers run as a wavefront (`--parallel layers`).
//! Either way `parallel::set_threads(THREADS)` lets the gradient sum, clipping and optimizer
//! step use all threads.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recur::nn::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use recur::nn::parallel::{map_shards, set_threads, shard_range};
use recur::nn::{
    AnyLayer, CellKind, Embedding, LayerKind, Linear, Lstm, Mode, Nonlinearity, ParamGrads,
    ParamStore, Rnn, RnnOptions, Session, Stepper,
};
use recur::tape::kernels::Precision;
use recur::tape::{stack, Reduction, Tape, Tensor, Var};
use std::time::Instant;

mod custom;
mod roofline;
mod scan;

use custom::{UserKind, UserLayer};

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

/// How an LM run uses its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parallel {
    /// One data-parallel shard of the batch per thread, their gradients summed.
    Batch,
    /// The whole batch at once, the threads inside the recurrent layers
    /// (`parallel::set_threads`): stacked layers as a wavefront.
    Layers,
}

/// The recurrent layers of an LM case: built in, or a user's cell in `Recurrent<C>`.
#[derive(Clone, Copy)]
enum Model {
    Layer(LayerKind),
    User(UserKind),
}

/// The model's recurrent layers, built.
enum Layers {
    Built(AnyLayer),
    User(UserLayer),
}

impl Layers {
    fn new(
        store: &mut ParamStore<f32>,
        model: Model,
        options: RnnOptions,
        rng: &mut StdRng,
    ) -> Self {
        match model {
            Model::Layer(kind) => Layers::Built(AnyLayer::new(store, "rnn", kind, options, rng)),
            Model::User(kind) => Layers::User(UserLayer::new(store, kind, options, rng)),
        }
    }

    fn forward<'t>(&self, s: &Session<'t, '_, f32>, x: Var<'t, f32>) -> Var<'t, f32> {
        match self {
            Layers::Built(l) => l.forward(s, x, None, None).output,
            Layers::User(l) => l.forward(s, x),
        }
    }
}

struct LmConfig {
    name: &'static str,
    cell: Model,
    vocab: usize,
    batch: usize,
    steps: usize,
    hidden: usize,
    layers: usize,
}

const CONFIGS: [LmConfig; 13] = [
    LmConfig {
        name: "char-small",
        cell: Model::Layer(LayerKind::Cell(CellKind::Lstm)),
        vocab: 65,
        batch: 32,
        steps: 35,
        hidden: 128,
        layers: 1,
    },
    LmConfig {
        name: "zaremba-small",
        cell: Model::Layer(LayerKind::Cell(CellKind::Lstm)),
        vocab: 10000,
        batch: 20,
        steps: 35,
        hidden: 200,
        layers: 2,
    },
    LmConfig {
        name: "char-large",
        cell: Model::Layer(LayerKind::Cell(CellKind::Lstm)),
        vocab: 65,
        batch: 64,
        steps: 100,
        hidden: 512,
        layers: 2,
    },
    LmConfig {
        name: "long-unroll",
        cell: Model::Layer(LayerKind::Cell(CellKind::Lstm)),
        vocab: 65,
        batch: 8,
        steps: 1000,
        hidden: 128,
        layers: 1,
    },
    LmConfig {
        name: "gru-medium",
        cell: Model::Layer(LayerKind::Cell(CellKind::Gru)),
        vocab: 65,
        batch: 32,
        steps: 100,
        hidden: 256,
        layers: 2,
    },
    LmConfig {
        name: "rnn-medium",
        cell: Model::Layer(LayerKind::Cell(CellKind::Rnn(Nonlinearity::Tanh))),
        vocab: 65,
        batch: 32,
        steps: 100,
        hidden: 256,
        layers: 2,
    },
    LmConfig {
        name: "mingru-char-t512",
        // minGRU and minLSTM in the paper's positive form, as torch_scan_bench.py.
        cell: Model::Layer(LayerKind::MinGru { positive: true }),
        vocab: 65,
        batch: 16,
        steps: 512,
        hidden: 256,
        layers: 2,
    },
    LmConfig {
        name: "minlstm-char-t512",
        cell: Model::Layer(LayerKind::MinLstm { positive: true }),
        vocab: 65,
        batch: 16,
        steps: 512,
        hidden: 256,
        layers: 2,
    },
    LmConfig {
        name: "lstm-char-t512",
        cell: Model::Layer(LayerKind::Cell(CellKind::Lstm)),
        vocab: 65,
        batch: 16,
        steps: 512,
        hidden: 256,
        layers: 2,
    },
    // A user's cells through `Recurrent<C>`, against the built-in layers of the same sizes.
    LmConfig {
        name: "custom-lstm-layer-char-small",
        cell: Model::User(UserKind::Lstm),
        vocab: 65,
        batch: 32,
        steps: 35,
        hidden: 128,
        layers: 1,
    },
    LmConfig {
        name: "custom-lstm-layer-char-large",
        cell: Model::User(UserKind::Lstm),
        vocab: 65,
        batch: 64,
        steps: 100,
        hidden: 512,
        layers: 2,
    },
    LmConfig {
        name: "custom-gru-layer-gru-medium",
        cell: Model::User(UserKind::Gru),
        vocab: 65,
        batch: 32,
        steps: 100,
        hidden: 256,
        layers: 2,
    },
    LmConfig {
        name: "lnlstm-char-small",
        cell: Model::User(UserKind::LayerNormLstm),
        vocab: 65,
        batch: 32,
        steps: 35,
        hidden: 128,
        layers: 1,
    },
];

const SMALL: [&str; 3] = [
    "timeseries-rnn32-b1-t100",
    "custom-lstm-cell-char-small",
    "generate-lstm256x2-200chars",
];

/// An LM case's name with this suffix runs it in mixed precision: every product's operands
/// rounded to bf16, sums and everything else f32 (`Tape::set_product_precision`).
const BF16_SUFFIX: &str = "-bf16";

/// generate-lstm256x2-200chars with bf16 weights.
const GENERATE_BF16: &str = "generate-lstm256x2-200chars-bf16";

/// Seconds per call of `f` after `warmup` calls, over `reps` calls.
pub(crate) fn time_per(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn random_ids(n: usize, vocab: usize, rng: &mut StdRng) -> Vec<usize> {
    (0..n).map(|_| rng.gen_range(0..vocab)).collect()
}

fn lm(c: &LmConfig, threads: usize, parallel: Parallel, products: Precision) {
    let shards = match parallel {
        Parallel::Batch => threads,
        Parallel::Layers => 1,
    };
    // Inside the shards' workers ops see one thread; outside them (summing the shards'
    // gradients, clipping, the optimizer step) they share all of them.
    set_threads(threads);
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f32>::new();
    let emb = Embedding::new(&mut store, "emb", c.vocab, c.hidden, None, &mut rng);
    let options = RnnOptions::new(c.hidden, c.hidden).num_layers(c.layers);
    let rnn = Layers::new(&mut store, c.cell, options, &mut rng);
    let out = Linear::new(&mut store, "out", c.hidden, c.vocab, true, &mut rng);
    let (x, y) = (
        random_ids(c.steps * c.batch, c.vocab, &mut rng),
        random_ids(c.steps * c.batch, c.vocab, &mut rng),
    );
    let mut opt = Sgd::new(SgdOptions::new(0.1));
    let mut step = || {
        let parts = map_shards(shards, threads, |k| {
            let rows = shard_range(c.batch, shards, k);
            let pick = |ids: &[usize]| -> Vec<usize> {
                (0..c.steps)
                    .flat_map(|t| ids[t * c.batch + rows.start..t * c.batch + rows.end].to_vec())
                    .collect()
            };
            let b = rows.len();
            let tape = Tape::new();
            tape.set_product_precision(products);
            let s = Session::new(&tape, &store, Mode::Train, 0);
            let h = rnn.forward(
                &s,
                emb.forward(&s, &pick(&x)).reshape(&[c.steps, b, c.hidden]),
            );
            let logits = out.forward(&s, h.reshape(&[c.steps * b, c.hidden]));
            // Each shard's share of the batch mean, so the shards add up to the full mean.
            let loss = logits.cross_entropy(&pick(&y), None, Reduction::Sum)
                * (1.0 / (c.steps * c.batch) as f32);
            s.backward(loss)
        });
        let mut grads = ParamGrads::sum(parts, store.len());
        grads.clip_global_norm(1.0);
        opt.step(&mut store, &grads);
    };
    // Five timed steps for the large ones (as the reference scripts' T = 512 cases).
    let reps = if c.hidden < 400 && c.steps * c.batch < 8192 {
        20
    } else {
        5
    };
    let dt = time_per(2, reps, &mut step);
    let suffix = match products {
        Precision::Full => "",
        Precision::Bf16 => BF16_SUFFIX,
    };
    println!(
        "{{\"config\": \"{}{suffix}\", \"threads\": {threads}, \"tokens_per_s\": {}, \"step_ms\": {:.2}}}",
        c.name,
        ((c.batch * c.steps) as f64 / dt).round(),
        dt * 1e3
    );
}

fn timeseries() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f32>::new();
    let rnn = Rnn::new(
        &mut store,
        "rnn",
        RnnOptions::new(1, 32).batch_first(true),
        Nonlinearity::Tanh,
        &mut rng,
    );
    let head = Linear::new(&mut store, "head", 32, 1, true, &mut rng);
    let x = Tensor::uniform(&[1, 100, 1], -1.0, 1.0, &mut rng);
    let y = Tensor::uniform(&[1, 100, 1], -1.0, 1.0, &mut rng);
    let mut opt = Adam::new(AdamOptions::adam(0.02));
    let dt = time_per(3, 200, || {
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let h = rnn.forward(&s, tape.constant(x.clone()), None, None).output;
        let pred = head.forward(&s, h);
        let grads = s.backward(pred.mse_loss(tape.constant(y.clone()), Reduction::Mean));
        opt.step(&mut store, &grads);
    });
    println!(
        "{{\"case\": \"timeseries-rnn32-b1-t100\", \"step_us\": {}}}",
        (dt * 1e6).round()
    );
}

fn custom_cell() {
    let (v, b, t_len, h) = (65, 32, 35, 128);
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f32>::new();
    let emb = Embedding::new(&mut store, "emb", v, h, None, &mut rng);
    let wx = Linear::new(&mut store, "wx", h, 4 * h, true, &mut rng);
    let wh = Linear::new(&mut store, "wh", h, 4 * h, false, &mut rng);
    let out = Linear::new(&mut store, "out", h, v, true, &mut rng);
    let (xi, yi) = (
        random_ids(t_len * b, v, &mut rng),
        random_ids(t_len * b, v, &mut rng),
    );
    let mut opt = Sgd::new(SgdOptions::new(0.1));
    let dt = time_per(3, 20, || {
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let e = emb.forward(&s, &xi);
        let (mut hs, mut c) = (
            tape.constant(Tensor::zeros(&[b, h])),
            tape.constant(Tensor::zeros(&[b, h])),
        );
        let mut outs = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let g =
                (wx.forward(&s, e.slice(0, t * b..(t + 1) * b)) + wh.forward(&s, hs)).chunk(4, 1);
            c = g[1].sigmoid() * c + g[0].sigmoid() * g[2].tanh();
            hs = g[3].sigmoid() * c.tanh();
            outs.push(hs);
        }
        let logits = out.forward(&s, stack(&outs, 0).reshape(&[t_len * b, h]));
        let mut grads = s.backward(logits.cross_entropy(&yi, None, Reduction::Mean));
        grads.clip_global_norm(1.0);
        opt.step(&mut store, &grads);
    });
    println!(
        "{{\"case\": \"custom-lstm-cell-char-small\", \"step_ms\": {:.2}, \"tokens_per_s\": {}}}",
        dt * 1e3,
        ((b * t_len) as f64 / dt).round()
    );
}

/// Greedy generation of 200 characters, batch 1, with a 2×256 LSTM: the stepper (weights
/// packed once, the embedding folded into the first layer's input projection) and the
/// output layer, in `precision`; with several threads each large product's rows are shared
/// out over them.
fn generate(precision: Precision, threads: usize) {
    set_threads(threads);
    let mut rng = StdRng::seed_from_u64(0);
    let mut store = ParamStore::<f32>::new();
    let lstm = Lstm::new(
        &mut store,
        "lstm",
        RnnOptions::new(256, 256).num_layers(2),
        &mut rng,
    );
    let emb = Embedding::new(&mut store, "emb", 65, 256, None, &mut rng);
    let out = Linear::new(&mut store, "out", 256, 65, true, &mut rng);
    let mut stepper = Stepper::new(&store, &lstm, precision)
        .expect("an LSTM steps")
        .with_embedding(&store, &emb);
    let head = out.packed(&store, precision);
    let mut logits = vec![0.0; 65];
    let dt = time_per(2, 20, || {
        stepper.reset();
        let mut token = 0;
        for _ in 0..200 {
            head.forward(stepper.step_token(token), &mut logits);
            token = (0..65)
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                .expect("65 logits");
        }
    });
    let case = match precision {
        Precision::Full => SMALL[2],
        Precision::Bf16 => GENERATE_BF16,
    };
    println!(
        "{{\"case\": \"{case}\", \"chars_per_s\": {}, \"weight_bytes_per_char\": {}}}",
        (200.0 / dt).round(),
        stepper.bytes_per_step() + head.bytes()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) if n > 0 => n,
        None => 2,
        _ => {
            eprintln!("usage: lm_bench THREADS [NAME ...] [--parallel batch|layers]");
            std::process::exit(2);
        }
    };
    let mut parallel = Parallel::Batch;
    let mut names: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        if arg != "--parallel" {
            names.push(arg);
            continue;
        }
        parallel = match args.next().as_deref() {
            Some("batch") => Parallel::Batch,
            Some("layers") => Parallel::Layers,
            other => {
                eprintln!("--parallel takes batch or layers, not {other:?}");
                std::process::exit(2);
            }
        };
    }
    let bf16_names: Vec<String> = CONFIGS
        .iter()
        .map(|c| format!("{}{BF16_SUFFIX}", c.name))
        .collect();
    let all: Vec<&str> = CONFIGS
        .iter()
        .map(|c| c.name)
        .chain(SMALL)
        .chain([GENERATE_BF16])
        .chain([scan::OP_CASE, roofline::CASE])
        .collect();
    for n in &names {
        if !all.contains(&n.as_str()) && !bf16_names.contains(n) {
            eprintln!("unknown benchmark {n:?}; known: {}", all.join(", "));
            std::process::exit(2);
        }
    }
    let wanted = |n: &str| names.is_empty() || names.iter().any(|m| m == n);
    for c in CONFIGS.iter().filter(|c| wanted(c.name)) {
        lm(c, threads, parallel, Precision::Full);
    }
    // Mixed precision only when named.
    for (c, name) in CONFIGS.iter().zip(&bf16_names) {
        if names.contains(name) {
            lm(c, threads, parallel, Precision::Bf16);
        }
    }
    if wanted(SMALL[0]) {
        timeseries();
    }
    if wanted(SMALL[1]) {
        custom_cell();
    }
    if wanted(SMALL[2]) {
        generate(Precision::Full, threads);
    }
    if wanted(GENERATE_BF16) {
        generate(Precision::Bf16, threads);
    }
    if wanted(scan::OP_CASE) {
        scan::scan_op(threads);
    }
    if names.iter().any(|n| n == roofline::CASE) {
        roofline::read_bandwidth();
    }
}
