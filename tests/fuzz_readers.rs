//! Every reader of outside input, fed mutated files in every test run: the fuzz targets of
//! `fuzz/src/lib.rs` (checkpoints, training states, corpora and vocabularies, the eng-fra
//! pairs file, Multi30k) on a few thousand mutations of real inputs each. They must return
//! a value or an error, never panic. The long, coverage-guided campaign runs the same targets
//! under libFuzzer (`cd fuzz && cargo +nightly fuzz run TARGET`); docs/reliability.md has its
//! figures.
//!
//!     RECUR_FUZZ_SECONDS=60 cargo test --release --test fuzz_readers -- --ignored --nocapture
//!
//! runs each target for that long instead; `-- --ignored write_seeds` refreshes the seed
//! inputs under fuzz/seeds/.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
use recur::nn::train_state::TrainState;
use recur::nn::{checkpoint, ParamGrads, ParamStore};
use recur::tape::Tensor;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("checkpoint", targets::checkpoint),
    ("state_file", targets::state_file),
    ("corpus", targets::corpus),
    ("eng_fra", targets::eng_fra),
    ("multi30k", targets::multi30k),
];

/// A path of its own for every call: the tests run in parallel threads of one process, and
/// two of them writing and removing the same seed file raced (a read found it gone).
fn temp_file(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("recur-fuzz-{name}-{}-{call}", std::process::id()))
}

/// A training state like the examples write: weights and Adam's moments, the TBPTT
/// driver's carried tokens and states, a loop's counters, sums, batch order and RNGs.
fn state_seed() -> Vec<u8> {
    let mut store = ParamStore::<f32>::new();
    let w = store.add("w", Tensor::from_vec(vec![0.5; 6], &[2, 3]));
    let mut grads = ParamGrads::empty(1);
    grads.set(w, Tensor::from_vec(vec![0.1; 6], &[2, 3]));
    let mut adam = Adam::new(AdamOptions::adam(0.1));
    adam.step(&mut store, &grads);
    let mut state = TrainState::new();
    state.put_json("config", &serde_json::json!({"hidden": 4}));
    state.put_params(&store, &adam as &dyn Optimizer<f32>);
    state.put_u64s("tbptt.step", &[3, 2]);
    for k in 0..2 {
        state.put_u64s(&format!("tbptt.shard{k}.counts"), &[1, 2, 1]);
        state.put_u64s(&format!("tbptt.shard{k}.history0"), &[1, 2, 3, 4]);
        for j in 0..2 {
            state.put_tensor(
                &format!("tbptt.shard{k}.state{j}.0"),
                &Tensor::<f32>::zeros(&[2, 4]),
            );
        }
    }
    state.put_u64s("progress.counts", &[1, 2, 3, 40, 8]);
    state.put_f64s("progress.sums", &[1.5, 2.5, 3.5]);
    state.put_f64s("progress.history_train", &[1.0, 4.2]);
    state.put_f64s("progress.history_valid", &[1.0, 4.4]);
    state.put_u64s("progress.batch_order", &[3, 1, 4, 0, 2, 5]);
    state.put_u64s("progress.batch_sizes", &[4, 2]);
    for name in ["data", "sample"] {
        state.put_rng(name, &<ChaCha12Rng as SeedableRng>::seed_from_u64(7));
    }
    let path = temp_file("state-seed");
    state.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn checkpoint_seed() -> Vec<u8> {
    let mut store = ParamStore::<f32>::new();
    store.add(
        "rnn.weight_ih_l0",
        Tensor::from_vec(vec![0.25; 12], &[4, 3]),
    );
    store.add("rnn.bias_ih_l0", Tensor::from_vec(vec![-1.0; 4], &[4]));
    let path = temp_file("checkpoint-seed");
    checkpoint::save(&path, &store, None, Default::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// Real inputs for each target, mutated from.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match target {
        "checkpoint" => vec![checkpoint_seed()],
        "state_file" => vec![state_seed()],
        "corpus" => {
            let text = std::fs::read(root.join("data/tinyshakespeare/input.txt")).unwrap();
            vec![
                text[..1500].to_vec(),
                b" the cat sat \n on the mat \n".to_vec(),
                br#"["<unk>","a","b","\u00e9"]"#.to_vec(),
            ]
        }
        "eng_fra" => {
            let gz = std::fs::read(root.join("data/eng-fra/eng-fra.txt.gz")).unwrap();
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
                .unwrap();
            // Lines the tutorial's filter keeps ("I am ...", "He is ...") and some it drops.
            let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            let kept: Vec<&[u8]> = lines
                .iter()
                .filter(|l| l.starts_with(b"I am ") || l.starts_with(b"He is "))
                .take(30)
                .chain(lines.iter().take(10))
                .copied()
                .collect();
            let plain = kept.join(&b'\n');
            let mut zipped = GzEncoder::new(Vec::new(), flate2::Compression::default());
            zipped.write_all(&plain).unwrap();
            vec![plain, zipped.finish().unwrap()]
        }
        "multi30k" => vec![
            b"A man in a red shirt .\nTwo dogs play.\n\0Ein Mann im roten Hemd .\nZwei Hunde spielen.\n"
                .to_vec(),
        ],
        _ => unreachable!(),
    }
}

/// One random change: flip bits, overwrite, insert, delete, truncate, duplicate a span, or
/// write an extreme number.
fn mutate(bytes: &mut Vec<u8>, rng: &mut StdRng) {
    let len = bytes.len().max(1);
    match rng.gen_range(0..7) {
        0 => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..len);
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => {
            let i = rng.gen_range(0..len);
            if let Some(b) = bytes.get_mut(i) {
                *b = rng.gen();
            }
        }
        2 => {
            let i = rng.gen_range(0..=bytes.len());
            let insert: Vec<u8> = (0..rng.gen_range(1..9)).map(|_| rng.gen()).collect();
            bytes.splice(i..i, insert);
        }
        3 => {
            let i = rng.gen_range(0..len);
            let end = (i + rng.gen_range(1..17)).min(bytes.len());
            if i < end {
                bytes.drain(i..end);
            }
        }
        4 => bytes.truncate(rng.gen_range(0..len)),
        5 => {
            let i = rng.gen_range(0..len).min(bytes.len());
            let end = (i + rng.gen_range(1..64)).min(bytes.len());
            let span = bytes[i..end].to_vec();
            bytes.splice(i..i, span);
        }
        _ => {
            // An ASCII number where digits were: huge sizes, offsets and counts.
            let digits = bytes.iter().position(|b| b.is_ascii_digit());
            if let Some(i) = digits
                .filter(|_| rng.gen_bool(0.5))
                .or(Some(rng.gen_range(0..len)))
            {
                let number = [
                    "18446744073709551615",
                    "9223372036854775808",
                    "0",
                    "-1",
                    "4294967296",
                ][rng.gen_range(0..5)];
                let i = i.min(bytes.len());
                bytes.splice(i..i, number.bytes());
            }
        }
    }
}

/// Runs `target` on mutations of its seeds until `budget` runs out or `runs` inputs are
/// done; returns the number of inputs. A panic fails with the input that caused it.
fn fuzz(name: &str, target: Target, runs: usize, budget: Duration, seed: u64) -> usize {
    let seeds = seeds(name);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut done = 0;
    while done < runs && started.elapsed() < budget {
        let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
        for _ in 0..rng.gen_range(1..5) {
            mutate(&mut input, &mut rng);
        }
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let path = temp_file(&format!("crash-{name}"));
            std::fs::write(&path, &input).unwrap();
            panic!("{name}: a panic on the input saved in {}", path.display());
        }
        done += 1;
    }
    done
}

#[test]
fn the_seed_inputs_are_read_successfully() {
    let state = TrainState::parse(Path::new("seed"), &state_seed()).unwrap();
    assert_eq!(state.u64s("progress.batch_sizes").unwrap(), [4, 2]);
    for (name, target) in TARGETS {
        for seed in seeds(name) {
            target(&seed);
        }
    }
}

#[test]
fn every_reader_survives_mutated_inputs() {
    for (k, (name, target)) in TARGETS.into_iter().enumerate() {
        let runs = fuzz(name, target, 2_000, Duration::from_secs(20), k as u64);
        assert_eq!(runs, 2_000, "{name}");
    }
}

#[test]
#[ignore]
fn long_campaign() {
    let seconds: u64 = std::env::var("RECUR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for (k, (name, target)) in TARGETS.into_iter().enumerate() {
        let runs = fuzz(
            name,
            target,
            usize::MAX,
            Duration::from_secs(seconds),
            1000 + k as u64,
        );
        println!("{name}: {runs} mutated inputs in {seconds} s, no panic");
    }
}

#[test]
#[ignore]
fn write_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, _) in TARGETS {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for (i, seed) in seeds(name).into_iter().enumerate() {
            std::fs::write(dir.join(name).join(format!("seed{i}")), seed).unwrap();
        }
    }
}
