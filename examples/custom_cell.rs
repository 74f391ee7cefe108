//! Writing a new recurrent cell against the tape: the minimal gated unit (MGU, Zhou et al.
//! 2016) in ~25 lines, gradient-checked, turned into a stacked bidirectional layer by the
//! generic `Recurrent`, and trained as a character language model on tinyshakespeare.
//! docs/custom-cell.md walks through this file.
//!
//!     cargo run --release --example custom_cell

#[path = "common/bundled.rs"]
mod bundled;

use bundled::bundled;
use clap::Parser;
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::data::{read_text, sequential_batches, Vocab};
use recur::nn::optim::{Adam, AdamOptions};
use recur::nn::parallel::use_threads;
use recur::nn::tbptt::{StreamModel, Tbptt, TbpttOptions};
use recur::nn::{
    gradcheck_params, Cell, Embedding, Linear, Mode, ParamId, ParamStore, Recurrent, RnnOptions,
    Session, State,
};
use recur::tape::{concat, Element, Tape, Tensor, Var};
use smallvec::{smallvec, SmallVec};
use std::path::PathBuf;

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

// ---- the cell: everything a new architecture needs ----------------------------------------

/// MGU: f = σ(W_f·[x, h] + b_f), h̃ = tanh(W_h·[x, f·h] + b_h), h' = (1 − f)·h + f·h̃.
#[derive(Clone)]
struct Mgu {
    w_f: ParamId,
    b_f: ParamId,
    w_h: ParamId,
    b_h: ParamId,
    input: usize,
    hidden: usize,
}

impl Mgu {
    fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        input: usize,
        hidden: usize,
        rng: &mut StdRng,
    ) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        let mut add = |name: &str, shape: &[usize]| {
            store.add(
                format!("{prefix}.{name}"),
                Tensor::uniform(shape, -k, k, rng),
            )
        };
        let (w_f, b_f) = (add("w_f", &[hidden, input + hidden]), add("b_f", &[hidden]));
        let (w_h, b_h) = (add("w_h", &[hidden, input + hidden]), add("b_h", &[hidden]));
        Mgu {
            w_f,
            b_f,
            w_h,
            b_h,
            input,
            hidden,
        }
    }
}

impl<T: Element> Cell<T> for Mgu {
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
        let h = state[0];
        let f = concat(&[x, h], 1)
            .linear(s.param(self.w_f), Some(s.param(self.b_f)))
            .sigmoid();
        let candidate = concat(&[x, f * h], 1)
            .linear(s.param(self.w_h), Some(s.param(self.b_h)))
            .tanh();
        smallvec![h + f * (candidate - h)]
    }
}

// ---- a layer of it, and a language model around the layer ---------------------------------

fn mgu_layer<T: Element>(
    store: &mut ParamStore<T>,
    options: RnnOptions,
    rng: &mut StdRng,
) -> Recurrent<Mgu> {
    let hidden = options.hidden_size;
    Recurrent::build(options, "MGU", |layer, reverse, input| {
        let prefix = format!("rnn.l{layer}{}", if reverse { "_reverse" } else { "" });
        Mgu::new(store, &prefix, input, hidden, rng)
    })
}

struct MguLm {
    emb: Embedding,
    rnn: Recurrent<Mgu>,
    out: Linear,
}

impl StreamModel<f32> for MguLm {
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f32>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, f32>]>,
    ) -> (Var<'t, f32>, Vec<Var<'t, f32>>) {
        let steps = inputs.len() / batch;
        let x = self
            .emb
            .forward(s, inputs)
            .reshape(&[steps, batch, self.emb.embedding_dim]);
        let out = self.rnn.forward(s, x, state, None);
        let hidden = out.output.shape()[2];
        (
            self.out
                .forward(s, out.output.reshape(&[steps * batch, hidden])),
            out.final_state.to_vec(),
        )
    }
}

#[derive(Parser, Debug)]
#[command(about = "Write, check and train a new recurrent cell (MGU)")]
struct Args {
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    threads: Option<usize>,
    /// Text to train on (default: the bundled tinyshakespeare).
    #[arg(long)]
    data: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let mut rng = StdRng::seed_from_u64(args.seed);

    // 1. Gradient check of one step, in f64, with respect to x, h and all four parameters.
    let mut store = ParamStore::<f64>::new();
    let cell = Mgu::new(&mut store, "mgu", 3, 4, &mut rng);
    let x = Tensor::uniform(&[2, 3], -1.0, 1.0, &mut rng);
    let h = Tensor::uniform(&[2, 4], -1.0, 1.0, &mut rng);
    let report = gradcheck_params(&store, &[x, h], |s, v| cell.step(s, v[0], &v[1..])[0]);
    println!("cell step: {report}");
    assert!(report.passed);

    // 2. The generic layer makes it stacked, bidirectional and length-aware.
    let mut store = ParamStore::<f64>::new();
    let layer = mgu_layer(
        &mut store,
        RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
        &mut rng,
    );
    let xs = Tensor::uniform(&[5, 2, 3], -1.0, 1.0, &mut rng);
    let report = gradcheck_params(&store, std::slice::from_ref(&xs), |s, v| {
        layer.forward(s, v[0], None, Some(&[5, 3])).output
    });
    println!("2-layer bidirectional MGU with lengths [5, 3]: {report}");
    assert!(report.passed);
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let out = layer.forward(&s, tape.constant(xs), None, Some(&[5, 3]));
    println!(
        "output {:?}, h_n {:?}",
        out.output.shape().as_slice(),
        out.h_n().shape().as_slice()
    );

    // 3. Train it as a character language model (forward direction: a bidirectional LM would
    //    read the characters it has to predict).
    let path = match args.data.clone() {
        Some(path) => path,
        None => bundled("tinyshakespeare/input.txt").unwrap_or_else(|e| exit_with(&e)),
    };
    let text = read_text(&path).unwrap_or_else(|e| exit_with(&e.to_string()));
    let vocab = Vocab::of_chars(&text);
    let ids = vocab.encode_chars(&text);
    let (train, valid) = ids.split_at(ids.len() * 9 / 10);
    let mut store = ParamStore::<f32>::new();
    let model = MguLm {
        emb: Embedding::new(&mut store, "embedding", vocab.len(), 64, None, &mut rng),
        rnn: mgu_layer(
            &mut store,
            RnnOptions::new(64, args.hidden).num_layers(2),
            &mut rng,
        ),
        out: Linear::new(
            &mut store,
            "decoder",
            args.hidden,
            vocab.len(),
            true,
            &mut rng,
        ),
    };
    let threads = use_threads(args.threads);
    let mut driver = Tbptt::new(TbpttOptions {
        k1: 64,
        k2: 64,
        clip: Some(1.0),
        shards: 2,
        threads,
        seed: args.seed,
        ..TbpttOptions::default()
    });
    let mut opt = Adam::new(AdamOptions::adam(2e-3));
    let mut last = None;
    for chunk in sequential_batches(train, 32, 64, args.seed)
        .iter()
        .take(args.steps)
    {
        let r = driver
            .step(&model, &mut store, &mut opt, chunk)
            .unwrap_or_else(|e| panic!("{e}"));
        if r.step % 50 == 0 {
            println!(
                "step {}: loss {:.3}, perplexity {:.2}, {:.0} tokens/s",
                r.step, r.loss, r.perplexity, r.tokens_per_s
            );
        }
        last = Some(r);
    }
    // Validation perplexity on the first 20 000 held-out characters.
    let valid = &valid[..valid.len().min(20_000)];
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let nll = tape.no_grad(|| {
        let (logits, _) = model.forward(&s, &valid[..valid.len() - 1], 1, None);
        logits
            .cross_entropy(&valid[1..], None, recur::tape::Reduction::Mean)
            .item() as f64
    });
    if let Some(r) = last {
        println!(
            "after {} steps: train perplexity {:.2}, valid perplexity {:.2}",
            r.step,
            r.perplexity,
            nll.exp()
        );
    }
}

/// Prints `message` and exits with status 1.
fn exit_with(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
