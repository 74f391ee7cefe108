//! Checkpoints: bit-exact round trips (parameters and optimizer state), a state_dict saved by
//! PyTorch loading under the same names, and each kind of bad file giving its typed error.

use rand::SeedableRng;
use recur::nn::checkpoint::{self, CheckpointError};
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
use recur::nn::{Embedding, Linear, Lstm, ParamGrads, ParamStore, RnnOptions};
use recur::tape::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tiny_lm<T: recur::tape::Element>(seed: u64) -> ParamStore<T> {
    let mut store = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Embedding::new(&mut store, "embedding", 11, 6, Some(0), &mut rng);
    Lstm::new(
        &mut store,
        "rnn",
        RnnOptions::new(6, 8).num_layers(2).bidirectional(true),
        &mut rng,
    );
    Linear::new(&mut store, "fc", 16, 11, true, &mut rng);
    store
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("recur-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn torch_state_dict() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nn/state_dict_tiny_lm.safetensors")
}

#[test]
fn round_trip_is_bit_exact_with_optimizer_state() {
    let store = tiny_lm::<f32>(1);
    let mut opt = Adam::new(AdamOptions::adam(1e-3));
    let mut trained = store.clone();
    let mut grads = ParamGrads::empty(store.len());
    for id in store.ids() {
        grads.set(id, store.get(id).map(|v| v * 0.5 + 0.1));
    }
    opt.step(&mut trained, &grads);
    let path = tmp("round_trip.safetensors");
    let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
    checkpoint::save(&path, &trained, Some(&opt), meta).unwrap();

    let mut loaded = tiny_lm::<f32>(2);
    let mut opt2 = Adam::new(AdamOptions::adam(1e-3));
    let meta = checkpoint::load(&path, &mut loaded, Some(&mut opt2)).unwrap();
    assert_eq!(meta["epoch"], "3");
    for ((n1, a), (n2, b)) in trained.iter().zip(loaded.iter()) {
        assert_eq!(n1, n2);
        assert!(
            a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n1} differs"
        );
    }
    // The restored optimizer continues exactly like the original.
    let (mut p1, mut p2) = (trained.clone(), loaded.clone());
    opt.step(&mut p1, &grads);
    opt2.step(&mut p2, &grads);
    for ((_, a), (_, b)) in p1.iter().zip(p2.iter()) {
        assert_eq!(a, b);
    }
}

#[test]
fn pytorch_state_dict_loads_without_renaming() {
    let mut store = tiny_lm::<f32>(3);
    checkpoint::load(&torch_state_dict(), &mut store, None).unwrap();
    let file = checkpoint::read(&torch_state_dict()).unwrap();
    assert_eq!(file.tensors.len(), store.len());
    for (name, t) in &file.tensors {
        assert_eq!(
            store.get(store.find(name).unwrap()),
            &t.to_float::<f32>().unwrap(),
            "{name}"
        );
    }
    // And what we save is what PyTorch wrote: same names, shapes and bytes.
    let path = tmp("resaved.safetensors");
    checkpoint::save(&path, &store, None, HashMap::new()).unwrap();
    let again = checkpoint::read(&path).unwrap();
    assert_eq!(again.tensors, file.tensors);
}

fn expect_err(path: &Path, store: &mut ParamStore<f32>) -> CheckpointError {
    let before = store.clone();
    let err = checkpoint::load(path, store, None).expect_err("a bad checkpoint must not load");
    for ((_, a), (_, b)) in before.iter().zip(store.iter()) {
        assert_eq!(a, b, "a failed load must leave the parameters unchanged");
    }
    err
}

#[test]
fn bad_files_give_typed_errors() {
    let good = std::fs::read(torch_state_dict()).unwrap();
    let mut store = tiny_lm::<f32>(4);

    let truncated = tmp("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    assert!(matches!(
        expect_err(&truncated, &mut store),
        CheckpointError::Malformed { .. }
    ));

    // A flipped bit in the header's JSON.
    let mut flipped = good.clone();
    flipped[12] ^= 0x40;
    let bitflip = tmp("bitflip.safetensors");
    std::fs::write(&bitflip, &flipped).unwrap();
    assert!(matches!(
        expect_err(&bitflip, &mut store),
        CheckpointError::Malformed { .. }
    ));

    let missing_file = tmp("does-not-exist.safetensors");
    assert!(matches!(
        expect_err(&missing_file, &mut store),
        CheckpointError::Io { .. }
    ));

    // Wrong shape: a model with a wider output layer.
    let mut wide = ParamStore::<f32>::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    Embedding::new(&mut wide, "embedding", 11, 6, Some(0), &mut rng);
    Lstm::new(
        &mut wide,
        "rnn",
        RnnOptions::new(6, 8).num_layers(2).bidirectional(true),
        &mut rng,
    );
    Linear::new(&mut wide, "fc", 16, 12, true, &mut rng);
    match expect_err(&torch_state_dict(), &mut wide) {
        // fc.weight [12, 16] vs [11, 16] or fc.bias [12] vs [11], whichever the file lists first.
        CheckpointError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert!(
                name.starts_with("fc.") && expected[0] == 12 && found[0] == 11,
                "{name} {expected:?} {found:?}"
            );
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }

    // Wrong dtype: the f32 file into an f64 model.
    let mut f64_store = tiny_lm::<f64>(5);
    let err = checkpoint::load(&torch_state_dict(), &mut f64_store, None).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::DtypeMismatch { expected, found, .. } if expected == "F64" && found == "F32"),
        "{err}"
    );

    // Missing key: a model with one more layer than the file.
    let mut bigger = tiny_lm::<f32>(6);
    bigger.add("extra.weight", Tensor::zeros(&[2]));
    assert!(
        matches!(expect_err(&torch_state_dict(), &mut bigger), CheckpointError::MissingKey { name, .. } if name == "extra.weight")
    );

    // Unexpected key: a model with less than the file.
    let mut smaller = ParamStore::<f32>::new();
    Linear::new(&mut smaller, "fc", 16, 11, true, &mut rng);
    let err = expect_err(&torch_state_dict(), &mut smaller);
    assert!(
        matches!(&err, CheckpointError::UnexpectedKey { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("unexpected tensor"), "{err}");
}

#[test]
fn saving_replaces_the_old_file_atomically() {
    let path = tmp("atomic.safetensors");
    let a = tiny_lm::<f32>(7);
    checkpoint::save(&path, &a, None, HashMap::new()).unwrap();
    let b = tiny_lm::<f32>(8);
    checkpoint::save(&path, &b, None, HashMap::new()).unwrap();
    let mut loaded = tiny_lm::<f32>(9);
    checkpoint::load(&path, &mut loaded, None).unwrap();
    assert_eq!(loaded.iter().next().unwrap().1, b.iter().next().unwrap().1);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".atomic.safetensors.tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left behind");
}

#[test]
fn concurrent_saves_to_one_path_do_not_collide() {
    let path = tmp("concurrent.safetensors");
    let stores: Vec<ParamStore<f32>> = (0..4).map(|k| tiny_lm(20 + k)).collect();
    std::thread::scope(|s| {
        for store in &stores {
            let path = &path;
            s.spawn(move || {
                for _ in 0..20 {
                    checkpoint::save(path, store, None, HashMap::new()).unwrap();
                }
            });
        }
    });
    // Whichever write came last, the file is one of the complete checkpoints.
    let mut loaded = tiny_lm::<f32>(30);
    checkpoint::load(&path, &mut loaded, None).unwrap();
    assert!(stores
        .iter()
        .any(|s| s.iter().zip(loaded.iter()).all(|(a, b)| a.1 == b.1)));
}
