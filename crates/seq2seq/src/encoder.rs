//! The encoder: embedding, then a stacked, optionally bidirectional recurrent layer over the
//! source with its lengths, so padding never reaches the states: the built-in RNN/LSTM/GRU or
//! any [`Cell`]. Bidirectional final states are combined into one state per layer by a
//! learned bridge per state part, tanh(W·[h_fwd; h_bwd]).

use crate::batch::{Batch, PAD};
use rand::Rng;
use recur_nn::rnn::layer_suffix;
use recur_nn::{
    AnyCell, Cell, CellKind, Dropout, Embedding, Linear, ParamStore, Recurrent, RnnOptions,
    Session, State,
};
use recur_tape::{concat, Element, Var};

/// Where a cell of a seq2seq model goes: the prefix and suffix of its parameters' names
/// (PyTorch's: `encoder.rnn` and `_l1_reverse` make `encoder.rnn.weight_ih_l1_reverse`), its
/// input width and its hidden size.
#[derive(Clone, Copy, Debug)]
pub struct CellSlot<'a> {
    /// Goes before the parameter's name (`encoder.rnn`).
    pub prefix: &'a str,
    /// Goes after it (`_l1_reverse`).
    pub suffix: &'a str,
    /// Width of the cell's input.
    pub input: usize,
    /// The cell's hidden size.
    pub hidden: usize,
}

impl CellSlot<'_> {
    /// The built-in cell of `kind` for this slot, with biases, under PyTorch's names.
    pub fn built_in<T: Element>(
        self,
        store: &mut ParamStore<T>,
        kind: CellKind,
        rng: &mut impl Rng,
    ) -> AnyCell {
        let (input, hidden) = (self.input, self.hidden);
        AnyCell::new(
            store,
            self.prefix,
            self.suffix,
            kind,
            input,
            hidden,
            true,
            rng,
        )
    }
}

/// The encoder of a [`Seq2Seq`](crate::Seq2Seq) model: an embedding and a (bidirectional)
/// [`Recurrent`] layer over the padded source, with bridges from both directions' final
/// states to the decoder's width.
#[derive(Clone, Debug)]
pub struct Encoder<C = AnyCell> {
    embedding: Embedding,
    rnn: Recurrent<C>,
    /// One bridge per state part (h, and c for LSTM) when bidirectional.
    bridges: Vec<Linear>,
    dropout: Dropout,
    hidden: usize,
    layers: usize,
}

/// What the decoder gets from the encoder.
pub struct Encoded<'t, T: Element> {
    /// `[B, S, K]`, K = hidden · directions; zero past each row's length.
    pub outputs: Var<'t, T>,
    /// Per layer, the final state parts `[B, hidden]`.
    pub state: Vec<State<'t, T>>,
    /// Each source row's length.
    pub lengths: Vec<usize>,
}

impl Encoder {
    /// An encoder over the built-in cells of `cell`'s kind.
    #[allow(clippy::too_many_arguments)]
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        cell: CellKind,
        vocab: usize,
        embed: usize,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        dropout: f64,
        rng: &mut impl Rng,
    ) -> Self {
        Encoder::build(
            store,
            prefix,
            EncoderSpec {
                vocab,
                embed,
                hidden,
                layers,
                bidirectional,
                dropout,
            },
            rng,
            |store, slot, rng| slot.built_in(store, cell, rng),
        )
    }
}

/// Sizes and choices of an encoder.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSpec {
    /// Source vocabulary size.
    pub vocab: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden size of each direction.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Read the source both ways.
    pub bidirectional: bool,
    /// Dropout on the embedding and between layers, in training.
    pub dropout: f64,
}

impl<C> Encoder<C> {
    /// An encoder whose cells `make(store, slot, rng)` builds, one per layer and direction
    /// in PyTorch's order; every part of their state is `hidden` wide.
    pub fn build<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        prefix: &str,
        spec: EncoderSpec,
        rng: &mut R,
        mut make: impl FnMut(&mut ParamStore<T>, CellSlot<'_>, &mut R) -> C,
    ) -> Self
    where
        C: Cell<T>,
    {
        let EncoderSpec {
            vocab,
            embed,
            hidden,
            layers,
            bidirectional,
            dropout,
        } = spec;
        let embedding = Embedding::new(
            store,
            &format!("{prefix}.embedding"),
            vocab,
            embed,
            Some(PAD),
            rng,
        );
        let options = RnnOptions::new(embed, hidden)
            .num_layers(layers)
            .bidirectional(bidirectional)
            .dropout(dropout);
        let rnn_prefix = format!("{prefix}.rnn");
        let rnn = Recurrent::build(options, "encoder", |layer, reverse, input| {
            let suffix = layer_suffix(layer, reverse);
            let slot = CellSlot {
                prefix: &rnn_prefix,
                suffix: &suffix,
                input,
                hidden,
            };
            make(store, slot, rng)
        });
        let sizes = rnn.cells[0].state_sizes();
        assert!(
            sizes.iter().all(|&w| w == hidden),
            "encoder: every state part must be {hidden} wide (the hidden size), the cell's are {sizes:?}"
        );
        let bridges = if bidirectional {
            (0..sizes.len())
                .map(|p| {
                    Linear::new(
                        store,
                        &format!("{prefix}.bridge{p}"),
                        2 * hidden,
                        hidden,
                        true,
                        rng,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Encoder {
            embedding,
            rnn,
            bridges,
            dropout: Dropout::new(dropout),
            hidden,
            layers,
        }
    }

    /// The widths of its cells' state parts.
    pub fn state_sizes<T: Element>(&self) -> Vec<usize>
    where
        C: Cell<T>,
    {
        self.rnn.cells[0].state_sizes().to_vec()
    }

    /// Width of each encoder output vector.
    pub fn output_size(&self) -> usize {
        self.hidden * self.rnn.directions()
    }

    /// Encodes the batch's sources.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, batch: &Batch) -> Encoded<'t, T>
    where
        C: Cell<T> + Clone + 'static,
    {
        let (steps, rows) = (batch.src_steps, batch.rows);
        let embedded = self.embedding.forward(s, &batch.src).reshape(&[
            steps,
            rows,
            self.embedding.embedding_dim,
        ]);
        let embedded = self.dropout.forward(s, embedded);
        let out = self
            .rnn
            .forward(s, embedded, None, Some(&batch.src_lengths));
        let dirs = self.rnn.directions();
        let state = (0..self.layers)
            .map(|l| {
                out.final_state
                    .iter()
                    .enumerate()
                    .map(|(p, part)| {
                        let unit = |u: usize| part.slice(0, u..u + 1).reshape(&[rows, self.hidden]);
                        if dirs == 2 {
                            self.bridges[p]
                                .forward(s, concat(&[unit(2 * l), unit(2 * l + 1)], 1))
                                .tanh()
                        } else {
                            unit(l)
                        }
                    })
                    .collect()
            })
            .collect();
        Encoded {
            outputs: out.output.transpose(0, 1),
            state,
            lengths: batch.src_lengths.clone(),
        }
    }
}
