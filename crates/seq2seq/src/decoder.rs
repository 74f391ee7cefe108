//! The decoder: a stack of cells (the built-in kinds or any [`Cell`]) run one step at a time. The encoder's context reaches it
//! as its initial state, as an extra input at every step, or both; or through attention
//! (Bahdanau: the context joins the input; Luong: it is combined with the output).

use crate::attention::{Attention, AttentionKind, Memory};
use crate::batch::PAD;
use crate::encoder::CellSlot;
use rand::Rng;
use recur_nn::rnn::layer_suffix;
use recur_nn::{AnyCell, Cell, CellKind, Dropout, Embedding, Linear, ParamStore, Session, State};
use recur_tape::{concat, Element, Var};
use std::fmt;
use std::str::FromStr;

/// How a decoder without attention receives the encoder's summary of the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextMode {
    /// As the decoder's initial hidden state (Sutskever et al. 2014).
    InitialState,
    /// Concatenated to the input at every step, and to the output (Cho et al. 2014).
    EveryStep,
    /// Both.
    Both,
}

impl FromStr for ContextMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "init" | "initial" => Ok(ContextMode::InitialState),
            "every" | "every-step" => Ok(ContextMode::EveryStep),
            "both" => Ok(ContextMode::Both),
            other => Err(format!(
                "unknown context mode {other:?} (expected init, every or both)"
            )),
        }
    }
}

impl fmt::Display for ContextMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextMode::InitialState => "init",
            ContextMode::EveryStep => "every",
            ContextMode::Both => "both",
        })
    }
}

/// Everything the decoder reads from the encoder at each step.
pub struct Context<'t, T: Element> {
    /// Attention memory over the encoder outputs.
    pub memory: Option<Memory<'t, T>>,
    /// The encoder's final top-layer hidden state `[B, H]`.
    pub summary: Var<'t, T>,
}

/// The decoder of a [`Seq2Seq`](crate::Seq2Seq) model: an embedding, a stack of cells run
/// one step at a time (so that decoding can feed back its own tokens), optional attention
/// over the encoder's outputs, and the output layer.
#[derive(Clone, Debug)]
pub struct Decoder<C = AnyCell> {
    embedding: Embedding,
    cells: Vec<C>,
    /// Attention over the encoder's outputs, if the model has it.
    pub attention: Option<Attention>,
    /// Luong: h̃ = tanh(W_c·[context; h]).
    combine: Option<Linear>,
    out: Linear,
    /// How the encoder's summary reaches it without attention.
    pub context: ContextMode,
    dropout: Dropout,
}

/// Sizes and choices of a decoder.
#[derive(Clone, Copy, Debug)]
pub struct DecoderSpec {
    /// Target vocabulary size.
    pub vocab: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden size of every layer.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Width of the encoder outputs attention reads.
    pub memory_width: usize,
    /// Attention, if any.
    pub attention: Option<AttentionKind>,
    /// How the summary reaches the decoder without attention.
    pub context: ContextMode,
    /// Dropout on the embedding and between layers, in training.
    pub dropout: f64,
}

impl Decoder {
    /// A decoder over the built-in cells of `cell`'s kind.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        cell: CellKind,
        spec: DecoderSpec,
        rng: &mut impl Rng,
    ) -> Self {
        Decoder::build(store, prefix, spec, rng, |store, slot, rng| {
            slot.built_in(store, cell, rng)
        })
    }
}

impl<C> Decoder<C> {
    /// A decoder whose cells `make(store, slot, rng)` builds, layer by layer; the first
    /// reads the embedding (and the context, as `spec` says), the others the layer below.
    pub fn build<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        prefix: &str,
        spec: DecoderSpec,
        rng: &mut R,
        mut make: impl FnMut(&mut ParamStore<T>, CellSlot<'_>, &mut R) -> C,
    ) -> Self {
        let DecoderSpec {
            vocab,
            embed,
            hidden,
            layers,
            memory_width,
            attention,
            context,
            dropout,
        } = spec;
        let every_step = attention.is_none() && context != ContextMode::InitialState;
        let embedding = Embedding::new(
            store,
            &format!("{prefix}.embedding"),
            vocab,
            embed,
            Some(PAD),
            rng,
        );
        let input = embed
            + if attention == Some(AttentionKind::Bahdanau) {
                memory_width
            } else {
                0
            }
            + if every_step { hidden } else { 0 };
        let rnn_prefix = format!("{prefix}.rnn");
        let cells = (0..layers)
            .map(|l| {
                let slot = CellSlot {
                    prefix: &rnn_prefix,
                    suffix: &layer_suffix(l, false),
                    input: if l == 0 { input } else { hidden },
                    hidden,
                };
                make(store, slot, rng)
            })
            .collect();
        let attention = attention.map(|k| {
            Attention::new(
                store,
                &format!("{prefix}.attention"),
                k,
                hidden,
                memory_width,
                rng,
            )
        });
        let luong = attention
            .as_ref()
            .is_some_and(|a| a.kind != AttentionKind::Bahdanau);
        let combine = luong.then(|| {
            Linear::new(
                store,
                &format!("{prefix}.combine"),
                memory_width + hidden,
                hidden,
                false,
                rng,
            )
        });
        let features = match attention.as_ref().map(|a| a.kind) {
            Some(AttentionKind::Bahdanau) => hidden + memory_width,
            Some(_) => hidden,
            None => hidden + if every_step { hidden } else { 0 },
        };
        let out = Linear::new(store, &format!("{prefix}.out"), features, vocab, true, rng);
        Decoder {
            embedding,
            cells,
            attention,
            combine,
            out,
            context,
            dropout: Dropout::new(dropout),
        }
    }

    /// The widths of its cells' state parts.
    pub fn state_sizes<T: Element>(&self) -> Vec<usize>
    where
        C: Cell<T>,
    {
        self.cells[0].state_sizes().to_vec()
    }

    /// Whether the decoder starts from the encoder's final state (else from zeros).
    pub fn starts_from_encoder(&self) -> bool {
        self.attention.is_some() || self.context != ContextMode::EveryStep
    }

    /// Zeros for every layer's state.
    pub fn zero_state<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        rows: usize,
    ) -> Vec<State<'t, T>>
    where
        C: Cell<T>,
    {
        self.cells
            .iter()
            .map(|c| Cell::<T>::zero_state(c, s, rows))
            .collect()
    }

    /// One step: logits `[B, vocab]` for the next token after `inputs`, and the new state.
    pub fn step<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        inputs: &[usize],
        state: &[State<'t, T>],
        ctx: &Context<'t, T>,
    ) -> (Var<'t, T>, Vec<State<'t, T>>)
    where
        C: Cell<T>,
    {
        let embedded = self.dropout.forward(s, self.embedding.forward(s, inputs));
        let kind = self.attention.as_ref().map(|a| a.kind);
        let attend = |query: Var<'t, T>| {
            let a = self.attention.as_ref().expect("attention configured");
            a.attend(
                s,
                ctx.memory.as_ref().expect("attention needs a memory"),
                query,
            )
            .0
        };
        let every_step = kind.is_none() && self.context != ContextMode::InitialState;
        let bahdanau_ctx =
            (kind == Some(AttentionKind::Bahdanau)).then(|| attend(state[state.len() - 1][0]));
        let mut x = match (bahdanau_ctx, every_step) {
            (Some(c), _) => concat(&[embedded, c], 1),
            (None, true) => concat(&[embedded, ctx.summary], 1),
            (None, false) => embedded,
        };
        let mut next = Vec::with_capacity(self.cells.len());
        for (l, cell) in self.cells.iter().enumerate() {
            let st = cell.step(s, x, &state[l]);
            x = if l + 1 < self.cells.len() {
                self.dropout.forward(s, st[0])
            } else {
                st[0]
            };
            next.push(st);
        }
        let top = x;
        let features = match (kind, bahdanau_ctx) {
            (Some(AttentionKind::Bahdanau), Some(c)) => concat(&[top, c], 1),
            (Some(_), _) => {
                let c = attend(top);
                self.combine
                    .as_ref()
                    .expect("luong combines")
                    .forward(s, concat(&[c, top], 1))
                    .tanh()
            }
            (None, _) if every_step => concat(&[top, ctx.summary], 1),
            (None, _) => top,
        };
        (self.out.forward(s, self.dropout.forward(s, features)), next)
    }
}
