//! What a translate checkpoint stores besides the weights (the model's configuration, both
//! vocabularies, the text normalisation) so that `--translate` can rebuild the model, and
//! the conversions between sentences and token ids.

use recur::nn::data::Vocab;
use recur::seq2seq::{AttentionKind, Seq2SeqConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

pub fn attention_kind(name: &str) -> Result<Option<AttentionKind>, String> {
    if name == "none" {
        Ok(None)
    } else {
        name.parse().map(Some)
    }
}

/// Everything needed to rebuild the model from a checkpoint, stored in its metadata.
pub struct Saved {
    pub config: Seq2SeqConfig,
    pub src_vocab: Vocab,
    pub tgt_vocab: Vocab,
    pub normalization: String,
}

pub fn config_json(s: &Saved) -> HashMap<String, String> {
    let c = &s.config;
    let model = json!({
        "cell": c.cell.to_string(), "src_vocab": c.src_vocab, "tgt_vocab": c.tgt_vocab, "embed": c.embed,
        "hidden": c.hidden, "layers": c.layers, "bidirectional": c.bidirectional,
        "attention": c.attention.map_or("none".to_string(), |a| a.to_string()), "context": c.context.to_string(),
        "dropout": c.dropout,
    });
    HashMap::from([
        ("model".to_string(), model.to_string()),
        (
            "src_vocab".to_string(),
            json!(s.src_vocab.tokens()).to_string(),
        ),
        (
            "tgt_vocab".to_string(),
            json!(s.tgt_vocab.tokens()).to_string(),
        ),
        ("normalization".to_string(), s.normalization.clone()),
    ])
}

pub fn saved_from(meta: &HashMap<String, String>, path: &Path) -> Result<Saved, String> {
    let bad = |what: &str| format!("{}: not a translate checkpoint ({what})", path.display());
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| bad(&format!("no {k:?} metadata")))
    };
    let m: Value = serde_json::from_str(get("model")?).map_err(|_| bad("model is not JSON"))?;
    let vocab = |k: &str| -> Result<Vocab, String> {
        let tokens: Vec<String> =
            serde_json::from_str(get(k)?).map_err(|_| bad(&format!("{k} is not a token list")))?;
        Ok(Vocab::from_tokens(tokens))
    };
    let n = |k: &str| m[k].as_u64().map(|v| v as usize).ok_or_else(|| bad(k));
    let s = |k: &str| m[k].as_str().ok_or_else(|| bad(k));
    let config = Seq2SeqConfig {
        cell: s("cell")?.parse()?,
        src_vocab: n("src_vocab")?,
        tgt_vocab: n("tgt_vocab")?,
        embed: n("embed")?,
        hidden: n("hidden")?,
        layers: n("layers")?,
        bidirectional: m["bidirectional"]
            .as_bool()
            .ok_or_else(|| bad("bidirectional"))?,
        attention: attention_kind(s("attention")?)?,
        context: s("context")?.parse()?,
        dropout: m["dropout"].as_f64().unwrap_or(0.0),
    };
    Ok(Saved {
        config,
        src_vocab: vocab("src_vocab")?,
        tgt_vocab: vocab("tgt_vocab")?,
        normalization: get("normalization")?.clone(),
    })
}

pub fn encode(vocab: &Vocab, sentence: &str) -> Vec<usize> {
    vocab.encode(sentence.split(' ').filter(|w| !w.is_empty()))
}

pub fn decode(vocab: &Vocab, ids: &[usize]) -> String {
    ids.iter()
        .map(|&i| vocab.token(i))
        .collect::<Vec<_>>()
        .join(" ")
}
