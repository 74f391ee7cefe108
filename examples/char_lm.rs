//! Character-level language model on tinyshakespeare (or any UTF-8 file): an LSTM (or GRU,
//! RNN, minGRU, minLSTM, LRU, RG-LRU, QRNN) trained with truncated BPTT, reporting train and validation perplexity, plotting them
//! to SVG, saving a checkpoint, and generating text with temperature and top-k.
//!
//!     cargo run --release --example char_lm
//!     cargo run --release --example char_lm -- --generate --checkpoint runs/char_lm/latest/char_lm.safetensors --prefix "ROMEO:"
//!     cargo run --release --example char_lm -- --resume runs/char_lm/latest/state.safetensors

#[macro_use]
#[path = "common/dist.rs"]
mod dist;
#[path = "common/bundled.rs"]
mod bundled;
#[path = "common/char_model.rs"]
mod char_model;
#[path = "common/lm.rs"]
mod lm;
#[path = "common/plot.rs"]
mod plot;
#[path = "common/run.rs"]
mod run;

use bundled::bundled;
use char_model::{generate, load, metadata, Sampling};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use lm::{evaluate, say, LmConfig, LmProgress, LmRun, RnnLm};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use recur::nn::checkpoint;
use recur::nn::data::{min_stream_len, read_text, sequential_batches, Vocab};
use recur::nn::distributed::DataParallel;
use recur::nn::optim::{Adam, AdamOptions};
use recur::nn::parallel::use_threads;
use recur::nn::tbptt::{Tbptt, TbpttOptions};
use recur::nn::train_state::sha256_hex;
use recur::nn::{LayerKind, ParamStore};
use run::{mark_bf16, products, saved_on_signal, Signals};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

#[derive(Parser, Debug)]
#[command(about = "Train a character language model, or generate text from a checkpoint")]
struct Args {
    /// lstm, gru, rnn, rnn_relu, or a linear recurrence: mingru, minlstm, lru, rglru, qrnn
    /// (mingru_g and minlstm_g: the paper's positive candidate g(·)).
    #[arg(long, default_value = "lstm")]
    cell: LayerKind,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 64)]
    embed: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Unroll length: tokens per row between updates (k1 = k2).
    #[arg(long, default_value_t = 64)]
    num_steps: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Stop training after this many seconds.
    #[arg(long, default_value_t = 200.0)]
    time_budget: f64,
    /// Evaluate validation perplexity (and save) every this many steps.
    #[arg(long, default_value_t = 150)]
    eval_every: usize,
    /// Print the training loss every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Data-parallel shards of each batch (fixed, so results do not depend on --threads or
    /// on the number of MPI ranks; at least the number of ranks).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Worker threads (default: the number of cores); results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Each run writes into a new folder DIR/version_N (DIR/latest points at the newest):
    /// the last and the best-validation weights, the training state and the SVG.
    #[arg(long, default_value = "runs/char_lm")]
    out: PathBuf,
    /// Also save the training state every this many steps (default: at every evaluation);
    /// 0: only at epoch ends and on SIGINT/SIGTERM.
    #[arg(long)]
    save_every: Option<usize>,
    /// Continue the run whose training state is PATH, exactly as if it had not stopped
    /// (same flags as that run; --epochs, --steps, --time-budget and --threads may differ).
    #[arg(long, value_name = "PATH", conflicts_with = "checkpoint")]
    resume: Option<PathBuf>,
    /// Train on this UTF-8 text file instead of tinyshakespeare.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only generate, from --checkpoint.
    #[arg(long)]
    generate: bool,
    /// With --generate: the model to sample from. When training: start from these weights
    /// (fine-tuning; a training state's weights work too).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Text the sample continues (default: "ROMEO:" if the corpus has its characters); its
    /// characters must all be in the corpus.
    #[arg(long)]
    prefix: Option<String>,
    /// Characters to generate.
    #[arg(long, default_value_t = 400)]
    length: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample only among the k most likely characters (0 = all).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// Mixed precision: every matrix product (forward and backward) takes operands rounded
    /// to bf16 and sums in f32; weights, states, losses and the optimizer stay f32 (evaluation
    /// too). Samples (and --generate) use bf16 weights.
    #[arg(long)]
    bf16: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let across = dist::join();
    let result = if args.generate {
        generate_only(&args).map(|()| None)
    } else {
        train(&args, &across)
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(signal)) => ExitCode::from(128 + signal as u8),
        Err(e) => dist::fail(&across, &e),
    }
}

/// What a sample continues: `--prefix` if every character of it is in the vocabulary (an
/// error naming those that are not, otherwise), else "ROMEO:" if they all are, else nothing
/// (the sample then starts from a random character).
fn prefix_of(args: &Args, vocab: &Vocab) -> Result<String, String> {
    match &args.prefix {
        Some(prefix) => vocab
            .try_encode_chars(prefix)
            .map(|_| prefix.clone())
            .map_err(|e| format!("--prefix {prefix:?}: {e}")),
        None => {
            let default = "ROMEO:";
            let known = vocab.try_encode_chars(default).is_ok();
            Ok(if known { default } else { "" }.to_string())
        }
    }
}

fn sampling(args: &Args) -> Sampling {
    Sampling {
        length: args.length,
        temperature: args.temperature,
        top_k: args.top_k,
        weights: products(args.bf16),
    }
}

fn generate_only(args: &Args) -> Result<(), String> {
    let path = args
        .checkpoint
        .as_ref()
        .ok_or("--generate needs --checkpoint PATH")?;
    let (model, store, vocab) = load(path)?;
    let prefix = prefix_of(args, &vocab)?;
    println!(
        "{}",
        generate(
            &model,
            &store,
            &vocab,
            &prefix,
            &sampling(args),
            &mut ChaCha12Rng::seed_from_u64(args.seed)
        )?
    );
    Ok(())
}

/// The settings a resumed run must share with the run that saved the state.
fn run_config(args: &Args, c: &LmConfig, data_sha256: &str) -> serde_json::Value {
    let mut config = json!({"cell": c.cell.to_string(), "vocab": c.vocab, "embed": c.embed, "hidden": c.hidden,
        "layers": c.layers, "dropout": c.dropout, "batch_size": args.batch_size,
        "num_steps": args.num_steps, "lr": args.lr, "clip": args.clip, "seed": args.seed,
        "eval_every": args.eval_every, "shards": args.shards, "log_every": args.log_every, "data_sha256": data_sha256});
    mark_bf16(&mut config, args.bf16);
    config
}

/// Trains; `Ok(Some(signal))` if SIGINT or SIGTERM stopped it (after saving the state).
fn train(args: &Args, across: &Rc<DataParallel>) -> Result<Option<i32>, String> {
    let started = Instant::now();
    let threads = use_threads(args.threads);
    let alone = across.size() == 1;
    let signals = dist::start(across, args.shards, args.resume.is_some())?;
    let path = match &args.data {
        Some(path) => path.clone(),
        None => bundled("tinyshakespeare/input.txt")?,
    };
    let text = read_text(&path).map_err(|e| e.to_string())?;
    let vocab = Vocab::of_chars(&text);
    let prefix = prefix_of(args, &vocab)?;
    let ids = vocab.encode_chars(&text);
    let split = ids.len() * 9 / 10;
    let (train_ids, valid_ids) = ids.split_at(split);
    let need = min_stream_len(args.batch_size, args.num_steps);
    for (part, share, ids) in [
        ("training", "first 90%", train_ids),
        ("validation", "last 10%", valid_ids),
    ] {
        if ids.len() < need {
            return Err(format!(
                "{}: its {part} part (the {share}) has {} characters; one batch of {} rows × {} \
                 steps needs {need}, so the file needs at least {} characters (or a smaller \
                 --batch-size / --num-steps)",
                path.display(),
                ids.len(),
                args.batch_size,
                args.num_steps,
                10 * need
            ));
        }
    }
    let config = LmConfig {
        cell: args.cell,
        vocab: vocab.len(),
        embed: args.embed,
        hidden: args.hidden,
        layers: args.layers,
        dropout: args.dropout,
    };
    let settings = run_config(args, &config, &sha256_hex(text.as_bytes()));
    let mut rng = ChaCha12Rng::seed_from_u64(args.seed);
    let mut store = ParamStore::new();
    let model = RnnLm::new(&mut store, &config, &mut rng);
    report!(
        "data: {} ({} characters, {} distinct); train {} / valid {}",
        path.display(),
        ids.len(),
        vocab.len(),
        train_ids.len(),
        valid_ids.len()
    );
    report!(
        "model: {} {}×{}, embed {}, {} parameters; batch {} × {} steps, Adam {}, {} threads",
        config.cell,
        config.layers,
        config.hidden,
        config.embed,
        store.num_elements(),
        args.batch_size,
        args.num_steps,
        args.lr,
        threads
    );
    let options = TbpttOptions {
        k1: args.num_steps,
        k2: args.num_steps,
        clip: Some(args.clip),
        shards: args.shards,
        threads,
        seed: args.seed,
        checkpoint: false,
        products: products(args.bf16),
    };
    let mut lm = LmRun {
        store,
        opt: Box::new(Adam::new(AdamOptions::adam(args.lr))),
        driver: Tbptt::new(options),
        progress: LmProgress::default(),
        rng,
    };
    let run = lm.begin(
        args.resume.as_deref(),
        args.checkpoint.as_deref(),
        &settings,
        vocab.len(),
        across,
        &args.out,
    )?;
    report!("writing to {}", run.dir.display());
    let ckpt = run.join("char_lm.safetensors");
    let best = run.join("char_lm.best.safetensors");
    let state_path = run.join("state.safetensors");
    let save_every = args.save_every.unwrap_or(args.eval_every);
    let elapsed = |p: &LmProgress| p.elapsed + started.elapsed().as_secs_f64();
    let max_steps = args.steps.unwrap_or(usize::MAX);
    let save_weights = |path: &Path, store: &ParamStore<f32>| {
        checkpoint::save(path, store, None, metadata(&config, &vocab))
            .map_err(|e| format!("{e}; training stopped (the previous file is intact)"))
    };
    // Remembers the best validation perplexity and keeps that model beside the last one.
    let evaluated = |lm: &mut LmRun, valid: f64| -> Result<(), String> {
        save_weights(&ckpt, &lm.store)?;
        if valid < lm.progress.best_valid {
            lm.progress.best_valid = valid;
            save_weights(&best, &lm.store)?;
        }
        Ok(())
    };
    let mut done = false;
    while lm.progress.epoch <= args.epochs && !done {
        let epoch = lm.progress.epoch;
        let chunks = sequential_batches(
            train_ids,
            args.batch_size,
            args.num_steps,
            args.seed + epoch as u64,
        );
        if lm.progress.next_chunk == 0 {
            lm.driver.reset();
        }
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
        for chunk in remaining {
            let report = lm
                .driver
                .step(&model, &mut lm.store, lm.opt.as_mut(), chunk)
                .map_err(|e| {
                    bar.abandon();
                    format!("{e}; the last good checkpoint is {}", ckpt.display())
                })?;
            let p = &mut lm.progress;
            p.next_chunk += 1;
            p.loss_sum += report.loss;
            p.n += 1;
            p.window_sum += report.loss;
            p.window_n += 1;
            let step = report.step;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3}  {:.0} tokens/s  |g| {:.2}",
                report.loss, report.tokens_per_s, report.grad_norm
            ));
            if step % args.log_every == 0 && !dist::quiet() {
                say(
                    &bar,
                    format!(
                        "step {step}: loss {:.4}, perplexity {:.2}",
                        report.loss, report.perplexity
                    ),
                );
            }
            if step % args.eval_every == 0 && across.is_root() {
                let valid = evaluate(
                    &model,
                    &lm.store,
                    valid_ids,
                    args.batch_size,
                    args.num_steps,
                )
                .exp();
                p.train_curve
                    .push((step as f64, (p.window_sum / p.window_n as f64).exp()));
                (p.window_sum, p.window_n) = (0.0, 0);
                p.valid_curve.push((step as f64, valid));
                say(
                    &bar,
                    format!(
                        "step {step}: valid perplexity {valid:.2} ({:.0} s)",
                        elapsed(p)
                    ),
                );
                evaluated(&mut lm, valid)?;
            }
            let signal = signals.as_ref().and_then(Signals::received);
            let save_every = if alone { save_every } else { 0 };
            if signal.is_some() || (save_every > 0 && step % save_every == 0) {
                lm.save(&state_path, &settings, elapsed(&lm.progress))?;
            }
            if let Some(signal) = signal {
                bar.abandon();
                report!("{}", saved_on_signal(signal, step, &state_path));
                return Ok(Some(signal));
            }
            // Every rank stops at the same step: rank 0's clock decides.
            let over = elapsed(&lm.progress) > args.time_budget;
            if step >= max_steps || across.root_decides(over) {
                done = true;
                break;
            }
        }
        bar.finish_and_clear();
        if !across.is_root() {
            lm.progress.next_epoch();
            continue;
        }
        let p = &mut lm.progress;
        let train_ppl = (p.loss_sum / p.n.max(1) as f64).exp();
        let valid_ppl = evaluate(
            &model,
            &lm.store,
            valid_ids,
            args.batch_size,
            args.num_steps,
        )
        .exp();
        report!(
            "epoch {epoch}: train perplexity {train_ppl:.2}, valid perplexity {valid_ppl:.2} ({} steps, {:.0} s)",
            lm.driver.steps(),
            elapsed(p)
        );
        if p.window_n > 0 {
            p.train_curve.push((
                lm.driver.steps() as f64,
                (p.window_sum / p.window_n as f64).exp(),
            ));
            (p.window_sum, p.window_n) = (0.0, 0);
        }
        p.valid_curve.push((lm.driver.steps() as f64, valid_ppl));
        p.next_epoch();
        evaluated(&mut lm, valid_ppl)?;
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
    let LmRun {
        store,
        progress,
        mut rng,
        ..
    } = lm;
    let svg = run.join("char_lm_perplexity.svg");
    let plotted = plot::line_chart(
        &svg,
        "char_lm: perplexity per character",
        "optimizer step",
        "perplexity",
        &[
            plot::Series {
                name: "train",
                points: progress.train_curve,
            },
            plot::Series {
                name: "valid",
                points: progress.valid_curve,
            },
        ],
    );
    let best = if progress.best_valid.is_finite() {
        format!(
            "{} (best validation perplexity {:.2})",
            best.display(),
            progress.best_valid
        )
    } else {
        "no best model (validation perplexity was never finite: the run diverged)".into()
    };
    let svg = match plotted {
        Ok(()) => svg.display().to_string(),
        Err(e) => format!("no plot ({e})"),
    };
    let state = if alone {
        format!("{}, ", state_path.display())
    } else {
        String::new()
    };
    println!(
        "wrote {}, {best}, {state}{svg} ({:.0} s)",
        ckpt.display(),
        progress.elapsed + started.elapsed().as_secs_f64()
    );
    println!(
        "\nsample (temperature {}, top-k {}):\n",
        args.temperature, args.top_k
    );
    println!(
        "{}",
        generate(&model, &store, &vocab, &prefix, &sampling(args), &mut rng)?
    );
    Ok(None)
}
