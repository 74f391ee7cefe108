//! A recursive (tree-structured) network on the dynamic tape: random arithmetic expressions
//! over digits with +, − and ×, evaluated mod 10. Leaves are embedded, every inner node is
//! composed from its children's states by one shared cell, and a classifier reads the root.
//! Each tree builds its own graph, whatever its shape.
//!
//!     cargo run --release --example tree_rnn

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
use recur::nn::parallel::{map_shards, shard_range, use_threads};
use recur::nn::{Embedding, Linear, Mode, ParamGrads, ParamStore, Session};
use recur::tape::{concat, Reduction, Tape, Var};

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
}

enum Expr {
    Digit(usize),
    Apply(Op, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// A random tree of depth at most `depth` (depth 0 is a digit).
    fn random(depth: usize, rng: &mut StdRng) -> Expr {
        if depth == 0 || rng.gen_bool(0.3) {
            return Expr::Digit(rng.gen_range(0..10));
        }
        let op = [Op::Add, Op::Sub, Op::Mul][rng.gen_range(0..3)];
        Expr::Apply(
            op,
            Box::new(Expr::random(depth - 1, rng)),
            Box::new(Expr::random(depth - 1, rng)),
        )
    }

    fn value(&self) -> usize {
        match self {
            Expr::Digit(d) => *d,
            Expr::Apply(op, a, b) => {
                let (a, b) = (a.value(), b.value());
                match op {
                    Op::Add => (a + b) % 10,
                    Op::Sub => (a + 10 - b) % 10,
                    Op::Mul => (a * b) % 10,
                }
            }
        }
    }

    fn depth(&self) -> usize {
        match self {
            Expr::Digit(_) => 0,
            Expr::Apply(_, a, b) => 1 + a.depth().max(b.depth()),
        }
    }

    fn show(&self) -> String {
        match self {
            Expr::Digit(d) => d.to_string(),
            Expr::Apply(op, a, b) => {
                let sym = match op {
                    Op::Add => "+",
                    Op::Sub => "-",
                    Op::Mul => "*",
                };
                format!("({} {sym} {})", a.show(), b.show())
            }
        }
    }
}

/// Leaf embeddings, an operator embedding, the shared composition cell and the classifier.
struct TreeNet {
    digits: Embedding,
    ops: Embedding,
    compose_hidden: Linear,
    compose_out: Linear,
    classify: Linear,
}

impl TreeNet {
    fn new(store: &mut ParamStore<f32>, hidden: usize, rng: &mut StdRng) -> Self {
        TreeNet {
            digits: Embedding::new(store, "digits", 10, hidden, None, rng),
            ops: Embedding::new(store, "ops", 3, hidden, None, rng),
            compose_hidden: Linear::new(store, "compose.hidden", 3 * hidden, 2 * hidden, true, rng),
            compose_out: Linear::new(store, "compose.out", 2 * hidden, hidden, true, rng),
            classify: Linear::new(store, "classify", hidden, 10, true, rng),
        }
    }

    /// The state of a subtree `[1, hidden]`: h = tanh(W₂·relu(W₁·[h_left; h_right; e_op])).
    fn encode<'t>(&self, s: &Session<'t, '_, f32>, e: &Expr) -> Var<'t, f32> {
        match e {
            Expr::Digit(d) => self.digits.forward(s, &[*d]),
            Expr::Apply(op, a, b) => {
                let x = concat(
                    &[
                        self.encode(s, a),
                        self.encode(s, b),
                        self.ops.forward(s, &[*op as usize]),
                    ],
                    1,
                );
                self.compose_out
                    .forward(s, self.compose_hidden.forward(s, x).relu())
                    .tanh()
            }
        }
    }

    fn logits<'t>(&self, s: &Session<'t, '_, f32>, e: &Expr) -> Var<'t, f32> {
        self.classify.forward(s, self.encode(s, e))
    }
}

#[derive(Parser, Debug)]
#[command(about = "Learn to evaluate arithmetic expression trees mod 10 with a recursive network")]
struct Args {
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 3)]
    max_depth: usize,
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let threads = use_threads(args.threads);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let test: Vec<Expr> = (0..2000)
        .map(|_| Expr::random(args.max_depth, &mut rng))
        .collect();
    let mut store = ParamStore::new();
    let net = TreeNet::new(&mut store, args.hidden, &mut rng);
    let mut opt = Adam::new(AdamOptions::adam(args.lr));
    println!(
        "expressions over digits with + - * mod 10, depth ≤ {}; shared composition cell of width {}; {} parameters",
        args.max_depth,
        args.hidden,
        store.num_elements()
    );
    for step in 1..=args.steps {
        let batch: Vec<Expr> = (0..args.batch_size)
            .map(|_| Expr::random(args.max_depth, &mut rng))
            .collect();
        let parts = map_shards(2, threads, |k| {
            let tape = Tape::new();
            let s = Session::new(&tape, &store, Mode::Train, 0);
            let trees = &batch[shard_range(batch.len(), 2, k)];
            let losses: Vec<Var<f32>> = trees
                .iter()
                .map(|e| {
                    net.logits(&s, e)
                        .cross_entropy(&[e.value()], None, Reduction::Sum)
                })
                .collect();
            let loss = losses
                .into_iter()
                .reduce(|a, b| a + b)
                .expect("non-empty shard");
            (loss.item(), s.backward(loss))
        });
        let (losses, shards): (Vec<f32>, Vec<_>) = parts.into_iter().unzip();
        let total: f32 = losses.iter().sum();
        let mut grads = ParamGrads::sum(shards, store.len());
        grads.scale(1.0 / args.batch_size as f32);
        grads.clip_global_norm(5.0);
        opt.step(&mut store, &grads);
        if step % 500 == 0 {
            println!(
                "step {step}: loss {:.3}, test accuracy {:.1}%",
                total / args.batch_size as f32,
                100.0 * accuracy(&net, &store, &test)
            );
        }
    }
    println!("\ntest accuracy by depth (chance is 10%):");
    for depth in 0..=args.max_depth {
        let subset: Vec<&Expr> = test.iter().filter(|e| e.depth() == depth).collect();
        if !subset.is_empty() {
            println!(
                "  depth {depth}: {:.1}% of {}",
                100.0 * accuracy_of(&net, &store, &subset),
                subset.len()
            );
        }
    }
    println!(
        "test accuracy = {:.1}% (2000 held-out trees)",
        100.0 * accuracy(&net, &store, &test)
    );
    println!("\nexamples:");
    for e in test.iter().filter(|e| e.depth() >= 2).take(5) {
        println!(
            "  {} = {} (mod 10), predicted {}",
            e.show(),
            e.value(),
            predict(&net, &store, e)
        );
    }
}

fn predict(net: &TreeNet, store: &ParamStore<f32>, e: &Expr) -> usize {
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Eval, 0);
    tape.no_grad(|| {
        let logits = net.logits(&s, e).to_tensor();
        (0..10)
            .max_by(|&a, &b| logits.data()[a].total_cmp(&logits.data()[b]))
            .expect("10 classes")
    })
}

fn accuracy_of(net: &TreeNet, store: &ParamStore<f32>, trees: &[&Expr]) -> f64 {
    trees
        .iter()
        .filter(|e| predict(net, store, e) == e.value())
        .count() as f64
        / trees.len().max(1) as f64
}

fn accuracy(net: &TreeNet, store: &ParamStore<f32>, trees: &[Expr]) -> f64 {
    accuracy_of(net, store, &trees.iter().collect::<Vec<_>>())
}
