//! French→English translation: a GRU encoder-decoder with Bahdanau attention trained on the
//! PyTorch tutorial's eng-fra pairs (bundled in data/), reporting BLEU and sample
//! translations in about five minutes on 2 cores.
//!
//!     cargo run --release --example translate
//!     cargo run --release --example translate -- --translate "je suis content ." --checkpoint runs/translate/latest/translate.safetensors
//!
//! Data: Sentence pairs from Tatoeba (tatoeba.org), via www.manythings.org/anki, CC BY 2.0 FR.

#[path = "../common/bundled.rs"]
mod bundled;
mod data;
mod eval;
#[path = "../common/plot.rs"]
mod plot;
mod progress;
#[path = "../common/run.rs"]
mod run;
#[macro_use]
#[path = "../common/dist.rs"]
mod dist;
mod saved;

use bundled::bundled;
use clap::Parser;
use eval::{mean_loss, translate_beam, translate_greedy};
use indicatif::{ProgressBar, ProgressStyle};
use progress::Progress;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use recur::nn::checkpoint;
use recur::nn::data::Vocab;
use recur::nn::distributed::DataParallel;
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
use recur::nn::parallel::{map_shards, shard_range, use_threads};
use recur::nn::train_state::sha256_hex;
use recur::nn::{CellKind, Mode, ParamGrads, ParamStore, Session};
use recur::seq2seq::{
    beam_search, bucket_batches, corpus_bleu, corpus_chrf, AttentionKind, Batch, BeamOptions,
    ContextMode, Seq2Seq, Seq2SeqConfig, TeacherForcing, SPECIALS,
};
use recur::tape::Tape;
use run::{mark_bf16, products, saved_on_signal, RunDir, Signals};
use saved::{attention_kind, config_json, decode, encode, saved_from, Saved};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Reuses the large buffers every training step frees (see `recur::memory`).
#[global_allocator]
static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;

#[derive(Parser, Debug)]
#[command(
    about = "Train a French→English translation model and report BLEU, or translate with a checkpoint"
)]
struct Args {
    /// Recurrent cell: gru, lstm, rnn or rnn_relu.
    #[arg(long, default_value = "gru")]
    cell: CellKind,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 256)]
    embed: usize,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Bidirectional encoder.
    #[arg(long)]
    bidirectional: bool,
    /// bahdanau, dot, general, or none.
    #[arg(long, default_value = "bahdanau")]
    attention: String,
    /// Without attention, how the decoder gets the source: init, every or both.
    #[arg(long, default_value = "both")]
    context: ContextMode,
    /// always, never, 0.5, seq:0.5, linear:K:C[:MIN], exp:K or sigmoid:K.
    #[arg(long, default_value = "always")]
    teacher_forcing: TeacherForcing,
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Global gradient-norm clipping threshold.
    #[arg(long, default_value_t = 5.0)]
    clip: f64,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Stop training after this many seconds (the epoch in progress ends early).
    #[arg(long, default_value_t = 240.0)]
    time_budget: f64,
    /// Beam width for the beam-search BLEU and for --translate (1 = greedy only).
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Length-normalisation exponent of beam search.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    #[arg(long, default_value_t = 20)]
    max_len: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Data-parallel shards of each batch (fixed, so results do not depend on --threads or
    /// on the number of MPI ranks; at least the number of ranks).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Each run writes into a new folder DIR/version_N (DIR/latest points at the newest): the
    /// last and the best-validation weights, the training state and the loss-curve SVG.
    #[arg(long, default_value = "runs/translate")]
    out: PathBuf,
    /// Also save the training state every this many steps (0: only at epoch ends and on
    /// SIGINT/SIGTERM).
    #[arg(long, default_value_t = 200)]
    save_every: usize,
    /// Continue the run whose training state is PATH, exactly as if it had not stopped (same
    /// flags; --epochs, --time-budget and --threads may differ).
    #[arg(long, value_name = "PATH", conflicts_with = "checkpoint")]
    resume: Option<PathBuf>,
    /// Train on all 135k pairs instead of the tutorial's 11,445.
    #[arg(long)]
    full: bool,
    /// Mixed precision: every matrix product of training (forward and backward) takes
    /// operands rounded to bf16 and sums in f32; weights, losses, the optimizer, evaluation
    /// and decoding stay f32.
    #[arg(long)]
    bf16: bool,
    /// Train on a Multi30k directory (train/val/test_2016_flickr files) instead of eng-fra.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The eng-fra pairs file (gzip, tab-separated; default: the bundled
    /// data/eng-fra/eng-fra.txt.gz).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "de")]
    src: String,
    #[arg(long, default_value = "en")]
    tgt: String,
    /// Translate this sentence ("-" reads lines from stdin) with --checkpoint, no training.
    #[arg(long)]
    translate: Option<String>,
    /// With --translate: the model. When training: start from these weights (fine-tuning).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let across = dist::join();
    let result = if args.translate.is_some() {
        translate(&args).map(|()| None)
    } else {
        train(&args, &across)
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(signal)) => ExitCode::from(128 + signal as u8),
        Err(e) => dist::fail(&across, &e),
    }
}

/// The settings a resumed run must share with the run that saved the state.
fn run_config(args: &Args, saved: &Saved, data_sha256: &str) -> Value {
    let mut config = config_json(saved);
    config.remove("src_vocab");
    config.remove("tgt_vocab");
    let mut fields = json!({"batch_size": args.batch_size, "lr": args.lr, "clip": args.clip,
        "seed": args.seed, "shards": args.shards, "teacher_forcing": args.teacher_forcing.to_string(),
        "max_len": args.max_len, "data_sha256": data_sha256});
    for (k, v) in config {
        fields[k] = Value::String(v);
    }
    mark_bf16(&mut fields, args.bf16);
    fields
}

/// Trains; `Ok(Some(signal))` if SIGINT or SIGTERM stopped it (after saving the state).
fn train(args: &Args, across: &DataParallel) -> Result<Option<i32>, String> {
    let threads = use_threads(args.threads);
    let started = Instant::now();
    let alone = across.size() == 1;
    let signals = dist::start(across, args.shards, args.resume.is_some())?;
    let local = across.local_shards(args.shards);
    let (corpus, normalization) = match &args.data_dir {
        Some(dir) => (data::multi30k(dir, &args.src, &args.tgt)?, "plain"),
        None => {
            let path = match &args.data {
                Some(path) => path.clone(),
                None => bundled("eng-fra/eng-fra.txt.gz")?,
            };
            (data::split(data::eng_fra(&path, args.full)?), "tutorial")
        }
    };
    let src_vocab = Vocab::build(
        corpus.train.iter().flat_map(|(s, _)| s.split(' ')),
        1,
        &SPECIALS,
    );
    let tgt_vocab = Vocab::build(
        corpus.train.iter().flat_map(|(_, t)| t.split(' ')),
        1,
        &SPECIALS,
    );
    let encode_all = |pairs: &data::Pairs| -> Vec<(Vec<usize>, Vec<usize>)> {
        pairs
            .iter()
            .map(|(s, t)| (encode(&src_vocab, s), encode(&tgt_vocab, t)))
            .collect()
    };
    let (train, valid, test) = (
        encode_all(&corpus.train),
        encode_all(&corpus.valid),
        encode_all(&corpus.test),
    );
    report!(
        "data: {} train / {} valid / {} test pairs; vocabulary {} source, {} target words",
        train.len(),
        valid.len(),
        test.len(),
        src_vocab.len(),
        tgt_vocab.len()
    );
    let config = Seq2SeqConfig {
        cell: args.cell,
        src_vocab: src_vocab.len(),
        tgt_vocab: tgt_vocab.len(),
        embed: args.embed,
        hidden: args.hidden,
        layers: args.layers,
        bidirectional: args.bidirectional,
        attention: attention_kind(&args.attention)?,
        context: args.context,
        dropout: args.dropout,
    };
    if config.attention == Some(AttentionKind::Dot) && args.bidirectional {
        return Err("dot attention needs equal decoder and encoder widths; use --attention general with --bidirectional".into());
    }
    let mut digest = String::new();
    for (src, tgt) in corpus.train.iter().chain(&corpus.valid).chain(&corpus.test) {
        digest.push_str(&format!("{src}\t{tgt}\n"));
    }
    let data_sha256 = sha256_hex(digest.as_bytes());
    let mut rng = ChaCha12Rng::seed_from_u64(args.seed);
    let mut store = ParamStore::<f32>::new();
    let model = Seq2Seq::new(&mut store, config.clone(), &mut rng);
    report!(
        "model: {} encoder-decoder, {} attention, hidden {}, {} layer(s){}, {} parameters; {} threads",
        config.cell,
        args.attention,
        config.hidden,
        config.layers,
        if config.bidirectional { ", bidirectional encoder" } else { "" },
        store.num_elements(),
        threads
    );
    let saved = Saved {
        config,
        src_vocab,
        tgt_vocab,
        normalization: normalization.to_string(),
    };
    let settings = run_config(args, &saved, &data_sha256);
    let mut opt = Adam::new(AdamOptions::adam(args.lr));
    let (mut p, run) = match &args.resume {
        Some(path) => {
            let p = progress::restore(path, &settings, &mut store, &mut opt, train.len())?;
            report!(
                "resuming {} after step {} (epoch {})",
                path.display(),
                p.step,
                p.epoch
            );
            (p, RunDir::of_state(path))
        }
        None => {
            if let Some(weights) = &args.checkpoint {
                checkpoint::load(weights, &mut store, None).map_err(|e| e.to_string())?;
                report!("starting from the weights of {}", weights.display());
            }
            // Every rank starts from rank 0's weights; rank 0 writes.
            across.broadcast_params(&mut store);
            let run = if across.is_root() {
                RunDir::create(&args.out)?
            } else {
                RunDir::of_state(&args.out.join("rank-0-writes-here"))
            };
            (Progress::new(rng), run)
        }
    };
    report!("writing to {}", run.dir.display());
    let ckpt = run.join("translate.safetensors");
    let best = run.join("translate.best.safetensors");
    let state_path = run.join("state.safetensors");
    let save_weights = |path: &Path, store: &ParamStore<f32>| {
        checkpoint::save(path, store, None, config_json(&saved))
            .map_err(|e| format!("{e}; training stopped (the previous file is intact)"))
    };
    let elapsed = |p: &Progress| p.elapsed + started.elapsed().as_secs_f64();
    let valid_refs: Vec<&str> = corpus.valid.iter().map(|(_, t)| t.as_str()).collect();
    'epochs: while p.epoch <= args.epochs {
        let epoch = p.epoch;
        if p.batches.is_empty() {
            p.batches = bucket_batches(&train, args.batch_size, &mut p.rng);
        }
        let bar = if dist::quiet() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(p.batches.len() as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        bar.set_position(p.next_batch as u64);
        let epoch_start = Instant::now();
        let pairs_before = p.pairs_seen;
        while p.next_batch < p.batches.len() {
            // Every rank stops at the same step: rank 0's clock decides.
            let over = elapsed(&p) > args.time_budget;
            if across.root_decides(over) {
                bar.finish_and_clear();
                report!(
                    "time budget of {:.0} s reached during epoch {epoch}",
                    args.time_budget
                );
                break 'epochs;
            }
            let pairs: Vec<(&[usize], &[usize])> = p.batches[p.next_batch]
                .iter()
                .map(|&i| (train[i].0.as_slice(), train[i].1.as_slice()))
                .collect();
            let batch = Batch::new(&pairs);
            let tokens = batch.target_tokens();
            let step = p.step;
            let results = map_shards(local.len(), threads, |i| {
                let k = local.start + i;
                let shard = batch.rows(shard_range(batch.rows, args.shards, k));
                let tape = Tape::new();
                tape.set_product_precision(products(args.bf16));
                let seed = args.seed ^ ((step as u64) << 8) ^ k as u64;
                let s = Session::new(&tape, &store, Mode::Train, seed);
                let loss = model.loss(
                    &s,
                    &shard,
                    &args.teacher_forcing,
                    step,
                    &mut StdRng::seed_from_u64(seed),
                );
                (loss.item() as f64, s.backward(loss))
            });
            let (losses, shards): (Vec<f64>, Vec<_>) = results.into_iter().unzip();
            let (loss_sum, mut grads): (f64, _) = if alone {
                (losses.iter().sum(), ParamGrads::sum(shards, store.len()))
            } else {
                let local: Vec<Option<f64>> = losses.into_iter().map(Some).collect();
                let all = across.gather_values(&local, args.shards);
                let shards = shards.into_iter().map(Some).collect();
                let grads = across.sum_grads(shards, &store, args.shards);
                (all.into_iter().flatten().sum(), grads)
            };
            grads.scale(1.0 / tokens as f32);
            let norm = grads.clip_global_norm(args.clip as f32);
            if !loss_sum.is_finite() || !norm.is_finite() {
                bar.finish_and_clear();
                return Err(format!(
                    "training stopped at step {step}: loss {loss_sum} / gradient norm {norm} is not finite (last good checkpoint: {})",
                    ckpt.display()
                ));
            }
            opt.step(&mut store, &grads);
            p.step += 1;
            p.next_batch += 1;
            p.epoch_loss += loss_sum;
            p.epoch_tokens += tokens;
            p.pairs_seen += batch.rows;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3}  {:.0} pairs/s",
                p.epoch_loss / p.epoch_tokens as f64,
                (p.pairs_seen - pairs_before) as f64 / epoch_start.elapsed().as_secs_f64()
            ));
            let signal = signals.as_ref().and_then(Signals::received);
            let save_every = if alone { args.save_every } else { 0 };
            if signal.is_some() || (save_every > 0 && p.step % save_every == 0) {
                progress::save(&state_path, &settings, &store, &opt, &p, elapsed(&p))?;
            }
            if let Some(signal) = signal {
                bar.abandon();
                report!("{}", saved_on_signal(signal, p.step, &state_path));
                return Ok(Some(signal));
            }
        }
        bar.finish_and_clear();
        if !across.is_root() {
            p.next_epoch();
            continue;
        }
        let train_loss = p.epoch_loss / p.epoch_tokens.max(1) as f64;
        let valid_loss = mean_loss(&model, &store, &valid);
        let sources: Vec<Vec<usize>> = valid.iter().map(|(s, _)| s.clone()).collect();
        let hyps: Vec<String> = translate_greedy(&model, &store, &sources, args.max_len)
            .iter()
            .map(|h| decode(&saved.tgt_vocab, h))
            .collect();
        let bleu = corpus_bleu(&hyps, &valid_refs).score;
        report!(
            "epoch {epoch:>2}: train loss {train_loss:.3}, valid loss {valid_loss:.3} (ppl {:.1}), valid BLEU {bleu:.2}, {:.0} pairs/s, {:.0} s",
            valid_loss.exp(),
            (p.pairs_seen - pairs_before) as f64 / epoch_start.elapsed().as_secs_f64(),
            elapsed(&p)
        );
        p.history_train.push((epoch as f64, train_loss));
        p.history_valid.push((epoch as f64, valid_loss));
        p.next_epoch();
        save_weights(&ckpt, &store)?;
        if valid_loss < p.best_valid {
            p.best_valid = valid_loss;
            save_weights(&best, &store)?;
        }
        if alone {
            progress::save(&state_path, &settings, &store, &opt, &p, elapsed(&p))?;
        }
    }
    if !across.is_root() {
        return Ok(None);
    }
    if let Some(line) = dist::exchange_summary(across) {
        report!("{line}");
    }
    save_weights(&ckpt, &store)?;
    if alone {
        progress::save(&state_path, &settings, &store, &opt, &p, elapsed(&p))?;
    }
    // The state is saved: a signal from now on ends the program as usual.
    drop(signals);

    let test_refs: Vec<&str> = corpus.test.iter().map(|(_, t)| t.as_str()).collect();
    let sources: Vec<Vec<usize>> = test.iter().map(|(s, _)| s.clone()).collect();
    let greedy_out: Vec<String> = translate_greedy(&model, &store, &sources, args.max_len)
        .iter()
        .map(|h| decode(&saved.tgt_vocab, h))
        .collect();
    report!(
        "test BLEU = {:.2} (greedy, {} sentences)",
        corpus_bleu(&greedy_out, &test_refs).score,
        test.len()
    );
    report!(
        "test chrF2 = {:.2} (greedy)",
        corpus_chrf(&greedy_out, &test_refs)
    );
    if args.beam > 1 {
        let opts = BeamOptions {
            width: args.beam,
            alpha: args.alpha,
            max_len: args.max_len,
        };
        let beam_out: Vec<String> = translate_beam(&model, &store, &sources, opts, threads)
            .iter()
            .map(|h| decode(&saved.tgt_vocab, h))
            .collect();
        report!(
            "test BLEU = {:.2} (beam {}, alpha {})",
            corpus_bleu(&beam_out, &test_refs).score,
            args.beam,
            args.alpha
        );
    }
    report!("\nsample test translations (greedy):");
    for i in (0..test.len()).step_by((test.len() / 10).max(1)).take(10) {
        report!(
            "  source:    {}\n  reference: {}\n  output:    {}\n",
            corpus.test[i].0,
            corpus.test[i].1,
            greedy_out[i]
        );
    }
    let total = elapsed(&p);
    let svg = run.join("translate_loss.svg");
    plot::line_chart(
        &svg,
        "translate: cross-entropy per target token",
        "epoch",
        "loss",
        &[
            plot::Series {
                name: "train",
                points: p.history_train,
            },
            plot::Series {
                name: "valid",
                points: p.history_valid,
            },
        ],
    )?;
    report!(
        "wrote {}, {}, {}{}; total time {:.0} s",
        ckpt.display(),
        best.display(),
        if alone {
            format!("{}, ", state_path.display())
        } else {
            String::new()
        },
        svg.display(),
        total
    );
    Ok(None)
}

fn translate(args: &Args) -> Result<(), String> {
    let path = args
        .checkpoint
        .as_ref()
        .ok_or("--translate needs --checkpoint PATH")?;
    let file = checkpoint::read(path).map_err(|e| e.to_string())?;
    let saved = saved_from(&file.metadata, path)?;
    let mut store = ParamStore::<f32>::new();
    let model = Seq2Seq::new(
        &mut store,
        saved.config.clone(),
        &mut StdRng::seed_from_u64(0),
    );
    checkpoint::load(path, &mut store, None).map_err(|e| e.to_string())?;
    let opts = BeamOptions {
        width: args.beam.max(1),
        alpha: args.alpha,
        max_len: args.max_len,
    };
    let run = |line: &str| {
        let normalized = if saved.normalization == "tutorial" {
            data::normalize(line)
        } else {
            line.trim().to_lowercase()
        };
        let unknown: Vec<&str> = normalized
            .split(' ')
            .filter(|w| !w.is_empty() && saved.src_vocab.get(w).is_none())
            .collect();
        if !unknown.is_empty() {
            eprintln!("note: not in the training vocabulary, read as <unk>: {unknown:?}");
        }
        let ids = encode(&saved.src_vocab, &normalized);
        if ids.is_empty() {
            println!();
            return;
        }
        let best = beam_search(&model, &store, &ids, opts).remove(0);
        println!("{}", decode(&saved.tgt_vocab, &best.tokens));
    };
    match args.translate.as_deref() {
        Some("-") => {
            for line in std::io::stdin().lock().lines() {
                run(&line.map_err(|e| format!("stdin: {e}"))?);
            }
        }
        Some(text) => run(text),
        None => unreachable!("translate mode has a sentence"),
    }
    Ok(())
}
