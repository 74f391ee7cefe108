//! char_lm's model files and text generation: the checkpoint format (the model's
//! configuration and the vocabulary in the metadata) and sampling with temperature and top-k.

use crate::lm::{LmConfig, RnnLm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use recur::nn::checkpoint;
use recur::nn::data::Vocab;
use recur::nn::{AnyLayer, Mode, PackedLinear, ParamStore, Session, Stepper};
use recur::tape::kernels::Precision;
use recur::tape::{Tape, Tensor};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// How much text to sample, and how.
pub struct Sampling {
    pub length: usize,
    pub temperature: f64,
    /// Only among the k most likely characters (0: all).
    pub top_k: usize,
    /// The weights' precision of the built-in cells' steps and the output layer.
    pub weights: Precision,
}

/// Samples `length` characters after `prefix` (batch 1, no graph); a prefix with characters
/// outside the vocabulary is an error naming them.
pub fn generate(
    model: &RnnLm,
    store: &ParamStore<f32>,
    vocab: &Vocab,
    prefix: &str,
    how: &Sampling,
    rng: &mut ChaCha12Rng,
) -> Result<String, String> {
    let mut text = prefix.to_string();
    let mut inputs: Vec<usize> = vocab
        .try_encode_chars(prefix)
        .map_err(|e| format!("--prefix {prefix:?}: {e}"))?;
    if inputs.is_empty() {
        inputs.push(rng.gen_range(0..vocab.len()));
    }
    let mut next = NextLogits::new(model, store, how.weights);
    for _ in 0..how.length {
        let token = sample(next.after(&inputs), how.temperature, how.top_k, rng);
        text.push_str(vocab.token(token));
        inputs = vec![token];
    }
    Ok(text)
}

/// The model's next-character logits as the text grows: the built-in cells step without a
/// tape (`Stepper`, weights packed once, in the asked precision), the other layers run on a
/// tape per step (in f32).
enum NextLogits<'a> {
    Stepped {
        stepper: Box<Stepper<f32>>,
        head: PackedLinear<f32>,
        logits: Vec<f32>,
    },
    Taped {
        model: &'a RnnLm,
        store: &'a ParamStore<f32>,
        state: Option<Vec<Tensor<f32>>>,
        logits: Vec<f32>,
    },
}

impl<'a> NextLogits<'a> {
    fn new(model: &'a RnnLm, store: &'a ParamStore<f32>, weights: Precision) -> Self {
        let stepper = match &model.rnn {
            AnyLayer::Cell(layer) => Stepper::new(store, layer, weights).ok(),
            _ => None,
        };
        match stepper {
            Some(stepper) => NextLogits::Stepped {
                stepper: Box::new(stepper.with_embedding(store, &model.emb)),
                head: model.out.packed(store, weights),
                logits: vec![0.0; model.out.out_features],
            },
            None => NextLogits::Taped {
                model,
                store,
                state: None,
                logits: Vec::new(),
            },
        }
    }

    /// The logits after the text so far and then `inputs`.
    fn after(&mut self, inputs: &[usize]) -> &[f32] {
        match self {
            NextLogits::Stepped {
                stepper,
                head,
                logits,
            } => {
                let (last, earlier) = inputs.split_last().expect("at least one input");
                for &token in earlier {
                    stepper.step_token(token);
                }
                head.forward(stepper.step_token(*last), logits);
                logits
            }
            NextLogits::Taped {
                model,
                store,
                state,
                logits,
            } => {
                let tape = Tape::new();
                let s = Session::new(&tape, store, Mode::Eval, 0);
                tape.no_grad(|| {
                    let values = model.forward_carrying(&s, inputs, 1, state).value();
                    let width = model.out.out_features;
                    *logits = values.data()[values.numel() - width..].to_vec();
                });
                logits
            }
        }
    }
}

/// Samples from softmax(logits / temperature) restricted to the top k.
pub fn sample(logits: &[f32], temperature: f64, top_k: usize, rng: &mut ChaCha12Rng) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let t = temperature.max(1e-6);
    let max = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / t).exp())
        .collect();
    let mut r = rng.gen::<f64>() * weights.iter().sum::<f64>();
    for (&i, w) in order.iter().zip(&weights) {
        r -= w;
        if r <= 0.0 {
            return i;
        }
    }
    order[order.len() - 1]
}

pub fn metadata(c: &LmConfig, vocab: &Vocab) -> HashMap<String, String> {
    let config = json!({"cell": c.cell.to_string(), "vocab": c.vocab, "embed": c.embed, "hidden": c.hidden,
        "layers": c.layers, "dropout": c.dropout});
    HashMap::from([
        ("config".into(), config.to_string()),
        ("vocab".into(), json!(vocab.tokens()).to_string()),
    ])
}

pub fn load(path: &Path) -> Result<(RnnLm, ParamStore<f32>, Vocab), String> {
    let file = checkpoint::read(path).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("{}: not a char_lm checkpoint ({what})", path.display());
    let cfg: serde_json::Value = serde_json::from_str(
        file.metadata
            .get("config")
            .ok_or_else(|| bad("no config"))?,
    )
    .map_err(|_| bad("config"))?;
    let tokens: Vec<String> =
        serde_json::from_str(file.metadata.get("vocab").ok_or_else(|| bad("no vocab"))?)
            .map_err(|_| bad("vocab"))?;
    let n = |k: &str| cfg[k].as_u64().map(|v| v as usize).ok_or_else(|| bad(k));
    let c = LmConfig {
        cell: cfg["cell"].as_str().ok_or_else(|| bad("cell"))?.parse()?,
        vocab: n("vocab")?,
        embed: n("embed")?,
        hidden: n("hidden")?,
        layers: n("layers")?,
        dropout: 0.0,
    };
    let vocab = Vocab::from_tokens(tokens);
    if vocab.len() != c.vocab {
        return Err(bad("vocabulary size differs from the config"));
    }
    let mut store = ParamStore::new();
    let model = RnnLm::new(&mut store, &c, &mut ChaCha12Rng::seed_from_u64(0));
    checkpoint::load(path, &mut store, None).map_err(|e| e.to_string())?;
    Ok((model, store, vocab))
}
