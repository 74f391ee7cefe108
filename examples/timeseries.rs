//! The notes' time-series task: an RNN with 32 hidden units learns a noisy periodic signal
//! (generated here), predicting the next value with MSE. Prints the test MSE next to the
//! trivial baseline (repeat the last value) and plots predictions against the truth.
//!
//!     cargo run --release --example timeseries

#[path = "common/plot.rs"]
mod plot;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recur::nn::init::normal;
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
use recur::nn::{Linear, Mode, Nonlinearity, ParamStore, Rnn, RnnOptions, Session};
use recur::tape::{Reduction, Tape, Tensor, Var};
use std::path::PathBuf;
use std::process::ExitCode;

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

#[derive(Parser, Debug)]
#[command(
    about = "Fit an RNN to a noisy periodic signal and compare with the repeat-last baseline"
)]
struct Args {
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Length of the generated signal; the last 20% is the test set.
    #[arg(long, default_value_t = 2000)]
    length: usize,
    /// Standard deviation of the Gaussian noise added to the signal.
    #[arg(long, default_value_t = 0.1)]
    noise: f64,
    /// Training windows: this many steps each.
    #[arg(long, default_value_t = 50)]
    window: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 400)]
    steps: usize,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the SVG goes.
    #[arg(long, default_value = "runs/timeseries")]
    out: PathBuf,
}

struct Model {
    rnn: Rnn,
    head: Linear,
}

impl Model {
    /// Predictions `[T, B]` of x_{t+1} from x_1..x_t for inputs `[T, B]`.
    fn forward<'t>(&self, s: &Session<'t, '_, f32>, x: Var<'t, f32>) -> Var<'t, f32> {
        let shape = x.shape();
        let (steps, batch) = (shape[0], shape[1]);
        let out = self
            .rnn
            .forward(s, x.reshape(&[steps, batch, 1]), None, None)
            .output;
        let hidden = out.shape()[2];
        self.head
            .forward(s, out.reshape(&[steps * batch, hidden]))
            .reshape(&[steps, batch])
    }
}

/// Two sines (periods 50 and 17) plus Gaussian noise.
fn signal(n: usize, noise: f64, rng: &mut StdRng) -> Vec<f32> {
    let eps: Tensor<f64> = normal(&[n], rng);
    (0..n)
        .map(|t| {
            let t = t as f64;
            let clean = (2.0 * std::f64::consts::PI * t / 50.0).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * t / 17.0).sin();
            (clean + noise * eps.data()[t as usize]) as f32
        })
        .collect()
}

/// Time-major `[window, batch]` tensors of inputs and next values from random offsets.
fn windows(
    series: &[f32],
    window: usize,
    batch: usize,
    rng: &mut StdRng,
) -> (Tensor<f32>, Tensor<f32>) {
    let starts: Vec<usize> = (0..batch)
        .map(|_| rng.gen_range(0..series.len() - window - 1))
        .collect();
    let take = |shift: usize| {
        (0..window)
            .flat_map(|t| starts.iter().map(move |&s| series[s + t + shift]))
            .collect::<Vec<_>>()
    };
    (
        Tensor::from_vec(take(0), &[window, batch]),
        Tensor::from_vec(take(1), &[window, batch]),
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let series = signal(args.length, args.noise, &mut rng);
    let split = args.length * 4 / 5;
    if split <= args.window + 1 || args.length - split < 2 {
        return Err(format!(
            "--length {} is too short for --window {}",
            args.length, args.window
        ));
    }
    let (train, test) = series.split_at(split);
    let mut store = ParamStore::new();
    let model = Model {
        rnn: Rnn::new(
            &mut store,
            "rnn",
            RnnOptions::new(1, args.hidden),
            Nonlinearity::Tanh,
            &mut rng,
        ),
        head: Linear::new(&mut store, "head", args.hidden, 1, true, &mut rng),
    };
    println!(
        "signal: {} points (sin period 50 + 0.5·sin period 17 + N(0, {}²)), train {} / test {}; RNN({}) + Linear, {} parameters",
        args.length,
        args.noise,
        train.len(),
        test.len(),
        args.hidden,
        store.num_elements()
    );
    let mut opt = Adam::new(AdamOptions::adam(args.lr));
    for step in 1..=args.steps {
        let (x, y) = windows(train, args.window, args.batch_size, &mut rng);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, step as u64);
        let loss = model
            .forward(&s, tape.constant(x))
            .mse_loss(tape.constant(y), Reduction::Mean);
        let value = loss.item();
        if !value.is_finite() {
            return Err(format!("loss became {value} at step {step}"));
        }
        let mut grads = s.backward(loss);
        grads.clip_global_norm(1.0);
        opt.step(&mut store, &grads);
        if step % 100 == 0 {
            println!("step {step}: train MSE {value:.5}");
        }
    }
    // One-step-ahead predictions over the test part, the network warmed up on the train part.
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let predictions = tape.no_grad(|| {
        let x = tape.constant(Tensor::from_vec(
            series[..series.len() - 1].to_vec(),
            &[series.len() - 1, 1],
        ));
        model.forward(&s, x).to_tensor().into_vec()
    });
    let targets = &series[split..];
    let predicted = &predictions[split - 1..];
    let mse = |p: &[f32]| {
        p.iter()
            .zip(targets)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / targets.len() as f64
    };
    let model_mse = mse(predicted);
    let baseline_mse = mse(&series[split - 1..series.len() - 1]);
    println!("test MSE = {model_mse:.5} (RNN)   baseline (repeat last value) = {baseline_mse:.5}   noise floor = {:.5}", args.noise * args.noise);
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let svg = args.out.join("timeseries.svg");
    let points = |v: &[f32]| {
        v.iter()
            .enumerate()
            .map(|(i, &y)| ((split + i) as f64, y as f64))
            .take(200)
            .collect()
    };
    plot::line_chart(
        &svg,
        "timeseries: one-step-ahead prediction on the test part",
        "t",
        "x",
        &[
            plot::Series {
                name: "truth",
                points: points(targets),
            },
            plot::Series {
                name: "RNN prediction",
                points: points(predicted),
            },
        ],
    )?;
    println!("wrote {}", svg.display());
    Ok(())
}
