//! Reliability: a process killed mid-write leaves the previous checkpoint intact, and
//! training is bit-for-bit deterministic for a seed, at 1 and 2 threads.

use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::checkpoint;
use recur::nn::data::sequential_batches;
use recur::nn::optim::{Adam, AdamOptions};
use recur::nn::tbptt::{StreamModel, Tbptt, TbpttOptions};
use recur::nn::{Embedding, Gru, Linear, ParamStore, RnnOptions, Session};
use recur::tape::{Tensor, Var};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const WRITER: &str = "RECUR_CRASH_TEST_WRITER";

/// A store big enough that a write takes a while (~16 MB).
fn big_store(fill: f32) -> ParamStore<f32> {
    let mut store = ParamStore::new();
    for k in 0..4 {
        store.add(format!("w{k}"), Tensor::full(&[1000, 1000], fill));
    }
    store
}

#[test]
fn a_writer_killed_mid_write_leaves_a_complete_checkpoint() {
    if let Ok(path) = std::env::var(WRITER) {
        // Child: overwrite the checkpoint forever, each time with a different value.
        for i in 1.. {
            checkpoint::save(
                std::path::Path::new(&path),
                &big_store(i as f32),
                None,
                HashMap::new(),
            )
            .unwrap();
        }
    }
    let dir = std::env::temp_dir().join(format!("recur-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&path, &big_store(0.0), None, HashMap::new()).unwrap();
    let mut seen = Vec::new();
    for round in 0..6 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_writer_killed_mid_write_leaves_a_complete_checkpoint",
                "--nocapture",
            ])
            .env(WRITER, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut store = big_store(-1.0);
        checkpoint::load(&path, &mut store, None).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let v = store.get(store.find("w0").unwrap()).data()[0];
        assert!(
            store.iter().all(|(_, t)| t.data().iter().all(|&x| x == v)),
            "round {round}: a torn checkpoint"
        );
        seen.push(v);
    }
    assert!(
        seen.iter().any(|&v| v > 0.0),
        "the writer never completed a save: {seen:?}"
    );
}

struct SmallLm {
    emb: Embedding,
    rnn: Gru,
    out: Linear,
}

impl StreamModel<f32> for SmallLm {
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f32>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, f32>]>,
    ) -> (Var<'t, f32>, Vec<Var<'t, f32>>) {
        let steps = inputs.len() / batch;
        let x = self.emb.forward(s, inputs).reshape(&[steps, batch, 8]);
        let out = self.rnn.forward(s, x, state, None);
        (
            self.out
                .forward(s, out.output.reshape(&[steps * batch, 16])),
            out.final_state.to_vec(),
        )
    }
}

/// Trains a small GRU language model for 30 updates; returns the losses and the weights.
fn train(threads: usize, seed: u64, checkpoint: bool) -> (Vec<u64>, Vec<Vec<u32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut store = ParamStore::new();
    let model = SmallLm {
        emb: Embedding::new(&mut store, "emb", 11, 8, None, &mut rng),
        rnn: Gru::new(
            &mut store,
            "rnn",
            RnnOptions::new(8, 16).num_layers(2).dropout(0.3),
            &mut rng,
        ),
        out: Linear::new(&mut store, "out", 16, 11, true, &mut rng),
    };
    let stream: Vec<usize> = (0..4000).map(|i| (i * i + i / 7) % 11).collect();
    let mut driver = Tbptt::new(TbpttOptions {
        k1: 10,
        k2: 20,
        clip: Some(1.0),
        shards: 2,
        threads,
        seed,
        checkpoint,
        ..TbpttOptions::default()
    });
    let mut opt = Adam::new(AdamOptions::adam(0.01));
    let losses = sequential_batches(&stream, 12, 10, seed)
        .iter()
        .take(30)
        .map(|c| {
            driver
                .step(&model, &mut store, &mut opt, c)
                .unwrap()
                .loss
                .to_bits()
        })
        .collect();
    let weights = store
        .iter()
        .map(|(_, t)| t.data().iter().map(|v| v.to_bits()).collect())
        .collect();
    (losses, weights)
}

#[test]
fn training_is_bit_identical_across_runs_and_thread_counts() {
    let one = train(1, 7, false);
    assert_eq!(one, train(1, 7, false), "two runs with one thread differ");
    assert_eq!(one, train(2, 7, false), "one and two threads differ");
    assert_eq!(
        one,
        train(2, 7, true),
        "checkpointing through time changed the training"
    );
    assert_ne!(one.0, train(1, 8, false).0, "the seed must matter");
}
