//! The fuzz targets: every reader of input from outside (checkpoints, training states, text
//! corpora and the vocabularies built from them, the eng-fra pairs file, Multi30k files) fed
//! arbitrary bytes, then everything a program does next with what it read. Each must return
//! a value or an error, never panic, hang or allocate without bound. Shared by the libFuzzer
//! binaries (`fuzz_targets/`) and the in-suite mutation tests (`tests/fuzz_readers.rs`).

#[allow(dead_code)]
#[path = "../../examples/translate/data.rs"]
mod translate_data;
#[allow(dead_code)]
#[path = "../../examples/translate/progress.rs"]
mod translate_progress;

use recur::nn::checkpoint;
use recur::nn::data::{min_stream_len, sequential_batches, text_of, words_of, Vocab};
use recur::nn::optim::{Adam, AdamOptions};
use recur::nn::tbptt::{Tbptt, TbpttOptions};
use recur::nn::train_state::TrainState;
use recur::nn::ParamStore;
use recur::tape::Tensor;
use std::path::Path;

/// A safetensors checkpoint.
pub fn checkpoint(bytes: &[u8]) {
    let _ = checkpoint::parse(Path::new("fuzz"), bytes);
}

/// A training state, and the restores a resuming run makes from it.
pub fn state_file(bytes: &[u8]) {
    let Ok(state) = TrainState::parse(Path::new("fuzz"), bytes) else {
        return;
    };
    let mut store = ParamStore::<f32>::new();
    store.add("w", Tensor::zeros(&[2, 3]));
    let _ = state.restore_params(&mut store, &mut Adam::new(AdamOptions::adam(0.1)));
    let mut driver = Tbptt::<f32>::new(TbpttOptions {
        k1: 2,
        k2: 4,
        shards: 2,
        ..TbpttOptions::default()
    });
    let _ = driver.load_state(&state, "tbptt", 50);
    let _ = state.rng("sample");
    let _ = state.check_config("config", &serde_json::json!({"hidden": 4}));
    let _ = state.f64s("progress.sums");
    let _ = state.indices("progress.batch_order", 100);
    let _ = state.tensor::<f64>("progress.sums");
    let mut adam = Adam::new(AdamOptions::adam(0.1));
    let _ = translate_progress::restore(
        Path::new("fuzz"),
        &serde_json::json!({}),
        &mut store,
        &mut adam,
        100,
    );
}

/// A text corpus: its characters and words, the vocabularies and batches built from them,
/// and the token lists checkpoints store.
pub fn corpus(bytes: &[u8]) {
    if let Ok(tokens) = serde_json::from_slice::<Vec<String>>(bytes) {
        let vocab = Vocab::from_tokens(tokens);
        for id in 0..vocab.len() {
            assert_eq!(vocab.get(vocab.token(id)), Some(id));
        }
    }
    let Ok(text) = text_of(Path::new("fuzz"), bytes.to_vec()) else {
        return;
    };
    let chars = Vocab::of_chars(&text);
    let ids = chars.encode_chars(&text);
    assert!(ids.iter().all(|&i| i < chars.len()));
    let _ = chars.try_encode_chars("ROMEO:");
    if ids.len() >= min_stream_len(2, 3) {
        for batch in sequential_batches(&ids, 2, 3, 1) {
            assert_eq!(batch.inputs.len(), batch.targets.len());
        }
    }
    let words = words_of(&text);
    let vocab = Vocab::build(&words, 2, &["<unk>"]);
    assert_eq!(vocab.encode(&words).len(), words.len());
}

/// The eng-fra pairs file, gzipped (as bundled) or plain, filtered and in full, split and
/// turned into vocabularies.
pub fn eng_fra(bytes: &[u8]) {
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let Ok(text) = translate_data::text_of("fuzz", bytes, gzip) else {
        return;
    };
    for full in [false, true] {
        if let Ok(pairs) = translate_data::eng_fra_pairs("fuzz", &text, full) {
            let corpus = translate_data::split(pairs);
            assert!(!corpus.test.is_empty() && !corpus.valid.is_empty());
            let vocab = Vocab::build(corpus.train.iter().flat_map(|(s, _)| s.split(' ')), 1, &[]);
            assert!(!vocab.is_empty());
        }
    }
}

/// One Multi30k part: a source and a target text, split at the first NUL byte.
pub fn multi30k(bytes: &[u8]) {
    let at = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let (src, tgt) = (&bytes[..at], bytes.get(at + 1..).unwrap_or_default());
    let (Ok(src), Ok(tgt)) = (
        translate_data::text_of("src", src, false),
        translate_data::text_of("tgt", tgt, false),
    ) else {
        return;
    };
    if let Ok(pairs) = translate_data::multi30k_pairs("fuzz", &src, &tgt) {
        assert!(pairs.iter().all(|(s, t)| !s.is_empty() && !t.is_empty()));
    }
}
