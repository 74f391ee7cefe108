//! Attention over encoder outputs with padding masked: Bahdanau (additive,
//! v·tanh(W_q·q + W_k·h_j)) and Luong (dot q·h_j, general q·W·h_j).

use rand::Rng;
use recur_nn::{Linear, ParamStore, Session};
use recur_tape::{Element, Tensor, Var};
use std::fmt;
use std::str::FromStr;

/// How the decoder scores the encoder's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// Additive attention (Bahdanau et al. 2015), queried with the previous decoder state.
    Bahdanau,
    /// Luong et al. 2015 "dot": score = q·h_j (decoder hidden = encoder output width).
    Dot,
    /// Luong et al. 2015 "general": score = (W·q)·h_j.
    General,
}

impl FromStr for AttentionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bahdanau" | "additive" => Ok(AttentionKind::Bahdanau),
            "dot" => Ok(AttentionKind::Dot),
            "general" => Ok(AttentionKind::General),
            other => Err(format!(
                "unknown attention {other:?} (expected bahdanau, dot or general)"
            )),
        }
    }
}

impl fmt::Display for AttentionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttentionKind::Bahdanau => "bahdanau",
            AttentionKind::Dot => "dot",
            AttentionKind::General => "general",
        })
    }
}

/// An attention layer of one [`AttentionKind`], with its parameters.
#[derive(Clone, Debug)]
pub struct Attention {
    /// Which scoring.
    pub kind: AttentionKind,
    query: Option<Linear>,
    key: Option<Linear>,
    score: Option<Linear>,
}

/// Encoder outputs prepared for attention, batch-major `[B, S, K]`, with the padding mask.
pub struct Memory<'t, T: Element> {
    /// The encoder's outputs `[B, S, K]`.
    pub outputs: Var<'t, T>,
    lengths: Vec<usize>,
    /// Bahdanau: W_k·h_j, time-major `[S, B, A]`; Luong: outputs transposed `[B, K, S]`.
    keys: Var<'t, T>,
    mask: Tensor<T>,
    masked_score: Var<'t, T>,
}

impl<'t, T: Element> Memory<'t, T> {
    /// Each source row's length (positions past it get no attention).
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }
}

impl Attention {
    /// Attention from decoder states of width `query` over encoder outputs of width `keys`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        kind: AttentionKind,
        query: usize,
        keys: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let name = |n: &str| format!("{prefix}.{n}");
        match kind {
            AttentionKind::Bahdanau => Attention {
                kind,
                query: Some(Linear::new(store, &name("query"), query, query, true, rng)),
                key: Some(Linear::new(store, &name("key"), keys, query, false, rng)),
                score: Some(Linear::new(store, &name("score"), query, 1, false, rng)),
            },
            AttentionKind::Dot => {
                assert_eq!(
                    query, keys,
                    "dot attention: decoder width {query} must equal encoder output width {keys} (use general)"
                );
                Attention {
                    kind,
                    query: None,
                    key: None,
                    score: None,
                }
            }
            AttentionKind::General => Attention {
                kind,
                query: Some(Linear::new(store, &name("query"), query, keys, false, rng)),
                key: None,
                score: None,
            },
        }
    }

    /// Prepares batch-major encoder outputs `[B, S, K]` whose rows have `lengths`.
    pub fn memory<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        outputs: Var<'t, T>,
        lengths: &[usize],
    ) -> Memory<'t, T> {
        let shape = outputs.shape();
        let (rows, steps) = (shape[0], shape[1]);
        let keys = match self.kind {
            AttentionKind::Bahdanau => self
                .key
                .as_ref()
                .expect("bahdanau has keys")
                .forward(s, outputs.transpose(0, 1)),
            AttentionKind::Dot | AttentionKind::General => outputs.transpose(1, 2),
        };
        let mask = Tensor::from_vec(
            lengths
                .iter()
                .flat_map(|&l| (0..steps).map(move |j| if j < l { T::one() } else { T::zero() }))
                .collect(),
            &[rows, steps],
        );
        let masked_score = s.constant(Tensor::full(&[rows, steps], T::of(-1e9)));
        Memory {
            outputs,
            lengths: lengths.to_vec(),
            keys,
            mask,
            masked_score,
        }
    }

    /// Context vectors `[B, K]` and attention weights `[B, S]` for queries `[B, H]`.
    pub fn attend<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        memory: &Memory<'t, T>,
        query: Var<'t, T>,
    ) -> (Var<'t, T>, Var<'t, T>) {
        let shape = memory.outputs.shape();
        let (rows, steps, width) = (shape[0], shape[1], shape[2]);
        let scores = match self.kind {
            AttentionKind::Bahdanau => {
                let q = self
                    .query
                    .as_ref()
                    .expect("bahdanau has a query")
                    .forward(s, query);
                let e = (memory.keys + q).tanh();
                self.score
                    .as_ref()
                    .expect("bahdanau has a score")
                    .forward(s, e)
                    .reshape(&[steps, rows])
                    .t()
            }
            AttentionKind::Dot | AttentionKind::General => {
                let q = match &self.query {
                    Some(w) => w.forward(s, query),
                    None => query,
                };
                q.reshape(&[rows, 1, width])
                    .matmul(memory.keys)
                    .reshape(&[rows, steps])
            }
        };
        let weights = scores
            .where_mask(&memory.mask, memory.masked_score)
            .softmax();
        let context = weights
            .reshape(&[rows, 1, steps])
            .matmul(memory.outputs)
            .reshape(&[rows, width]);
        (context, weights)
    }
}
