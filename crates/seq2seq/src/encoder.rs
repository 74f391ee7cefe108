//! The encoder: embedding, then a stacked, optionally bidirectional RNN/LSTM/GRU over the
//! source with its lengths, so padding never reaches the states. Bidirectional final states
//! are combined into one state per layer by a learned bridge, tanh(W·[h_fwd; h_bwd]).

use crate::batch::{Batch, PAD};
use rand::Rng;
use recur_nn::{
    AnyCell, CellKind, Dropout, Embedding, Linear, ParamStore, Recurrent, RnnOptions, Session,
    State,
};
use recur_tape::{concat, Element, Var};

#[derive(Clone, Debug)]
pub struct Encoder {
    embedding: Embedding,
    rnn: Recurrent<AnyCell>,
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
    pub lengths: Vec<usize>,
}

impl Encoder {
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
        let rnn = Recurrent::of_kind(store, &format!("{prefix}.rnn"), cell, options, 0, rng);
        let parts = if cell == CellKind::Lstm { 2 } else { 1 };
        let bridges = if bidirectional {
            (0..parts)
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

    /// Width of each encoder output vector.
    pub fn output_size(&self) -> usize {
        self.hidden * self.rnn.directions()
    }

    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, batch: &Batch) -> Encoded<'t, T> {
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
