//! `Seq2Seq`: an encoder and a decoder with one configuration, the teacher-forced training
//! loss, and the bridge from encoder to decoder shared by training and decoding.

use crate::attention::AttentionKind;
use crate::batch::{Batch, PAD};
use crate::decoder::{Context, ContextMode, Decoder, DecoderSpec};
use crate::encoder::{CellSlot, Encoder, EncoderSpec};
use crate::teacher_forcing::TeacherForcing;
use rand::Rng;
use recur_nn::{AnyCell, Cell, CellKind, ParamStore, Session, State};
use recur_tape::{Element, Reduction, Var};

/// The sizes and choices of a [`Seq2Seq`] model.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2SeqConfig {
    /// The built-in cell of encoder and decoder ([`Seq2Seq::new`]).
    pub cell: CellKind,
    /// Source vocabulary size.
    pub src_vocab: usize,
    /// Target vocabulary size.
    pub tgt_vocab: usize,
    /// Embedding width of both sides.
    pub embed: usize,
    /// Hidden size of both sides (each encoder direction's).
    pub hidden: usize,
    /// Stacked layers on each side.
    pub layers: usize,
    /// A bidirectional encoder.
    pub bidirectional: bool,
    /// The decoder's attention, if any.
    pub attention: Option<AttentionKind>,
    /// How the source reaches the decoder without attention.
    pub context: ContextMode,
    /// Dropout on embeddings and between layers, in training.
    pub dropout: f64,
}

/// An encoder of `E` cells and a decoder of `D` cells: the built-in kinds (`AnyCell`, the
/// configuration's `cell`) or a user's.
///
/// A model that learns to copy its source, trained with teacher forcing and decoded greedily:
///
/// ```
/// use recur_nn::optim::{Adam, AdamOptions, Optimizer};
/// use recur_nn::{CellKind, Mode, ParamStore, Session};
/// use recur_seq2seq::{greedy, AttentionKind, Batch, ContextMode, Seq2Seq, Seq2SeqConfig, TeacherForcing};
/// use recur_tape::Tape;
/// use rand::SeedableRng;
///
/// let config = Seq2SeqConfig {
///     cell: CellKind::Gru,
///     src_vocab: 8,
///     tgt_vocab: 8,
///     embed: 16,
///     hidden: 32,
///     layers: 1,
///     bidirectional: true,
///     attention: Some(AttentionKind::Bahdanau),
///     context: ContextMode::InitialState,
///     dropout: 0.0,
/// };
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let mut store = ParamStore::<f32>::new();
/// let model = Seq2Seq::new(&mut store, config, &mut rng);
/// // Ids 0–3 are <pad>, <bos>, <eos>, <unk>; sentences use 4–7.
/// let data: Vec<Vec<usize>> = vec![vec![4, 5, 6], vec![7, 4], vec![6, 6, 5, 7], vec![5, 7, 4]];
/// let pairs: Vec<(&[usize], &[usize])> = data.iter().map(|s| (&s[..], &s[..])).collect();
/// let batch = Batch::new(&pairs);
/// let mut adam = Adam::new(AdamOptions::adam(0.01));
/// for step in 0..150 {
///     let tape = Tape::new();
///     let s = Session::new(&tape, &store, Mode::Train, step as u64);
///     let loss = model.loss(&s, &batch, &TeacherForcing::Always, step, &mut rng);
///     let grads = s.backward(loss);
///     adam.step(&mut store, &grads);
/// }
/// let copies = greedy(&model, &store, &[&[4, 5, 6], &[6, 6, 5, 7]], 10);
/// assert_eq!(copies[0].tokens, vec![4, 5, 6]);
/// assert_eq!(copies[1].tokens, vec![6, 6, 5, 7]);
/// ```
#[derive(Clone, Debug)]
pub struct Seq2Seq<E = AnyCell, D = E> {
    /// Its configuration.
    pub config: Seq2SeqConfig,
    /// Reads the source.
    pub encoder: Encoder<E>,
    /// Writes the target.
    pub decoder: Decoder<D>,
}

impl Seq2Seq {
    /// Registers parameters under `encoder.` and `decoder.`, cells of the configuration's
    /// kind.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        config: Seq2SeqConfig,
        rng: &mut impl Rng,
    ) -> Self {
        let cell = config.cell;
        let make = |store: &mut ParamStore<T>, slot: CellSlot<'_>, rng: &mut _| {
            slot.built_in(store, cell, rng)
        };
        Seq2Seq::build(store, config, rng, make, make)
    }
}

impl<E, D> Seq2Seq<E, D> {
    /// Registers parameters under `encoder.` and `decoder.`, the encoder's cells built by
    /// `encoder_cell(store, slot, rng)` and the decoder's by `decoder_cell` (see
    /// [`Encoder::build`], [`Decoder::build`]); the configuration's `cell` is not used. When
    /// the decoder starts from the encoder's final state, their cells' states must match.
    pub fn build<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        config: Seq2SeqConfig,
        rng: &mut R,
        encoder_cell: impl FnMut(&mut ParamStore<T>, CellSlot<'_>, &mut R) -> E,
        decoder_cell: impl FnMut(&mut ParamStore<T>, CellSlot<'_>, &mut R) -> D,
    ) -> Self
    where
        E: Cell<T>,
        D: Cell<T>,
    {
        let c = &config;
        let encoder_spec = EncoderSpec {
            vocab: c.src_vocab,
            embed: c.embed,
            hidden: c.hidden,
            layers: c.layers,
            bidirectional: c.bidirectional,
            dropout: c.dropout,
        };
        let encoder = Encoder::build(store, "encoder", encoder_spec, rng, encoder_cell);
        let spec = DecoderSpec {
            vocab: c.tgt_vocab,
            embed: c.embed,
            hidden: c.hidden,
            layers: c.layers,
            memory_width: encoder.output_size(),
            attention: c.attention,
            context: c.context,
            dropout: c.dropout,
        };
        let decoder = Decoder::build(store, "decoder", spec, rng, decoder_cell);
        if decoder.starts_from_encoder() {
            let (from, to) = (encoder.state_sizes::<T>(), decoder.state_sizes::<T>());
            assert!(
                from == to,
                "seq2seq: the decoder starts from the encoder's final state, but the encoder's \
                 cells have state parts {from:?} and the decoder's {to:?}"
            );
        }
        Seq2Seq {
            config,
            encoder,
            decoder,
        }
    }

    /// Encodes the batch's sources: the decoder's context and initial state.
    pub fn start<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        batch: &Batch,
    ) -> (Context<'t, T>, Vec<State<'t, T>>)
    where
        E: Cell<T> + Clone + 'static,
        D: Cell<T>,
    {
        let enc = self.encoder.forward(s, batch);
        let memory = self
            .decoder
            .attention
            .as_ref()
            .map(|a| a.memory(s, enc.outputs, &enc.lengths));
        let summary = enc.state[enc.state.len() - 1][0];
        let state = if self.decoder.starts_from_encoder() {
            enc.state
        } else {
            self.decoder.zero_state(s, batch.rows)
        };
        (Context { memory, summary }, state)
    }

    /// Summed cross-entropy of the batch's targets (padding ignored), feeding at each step
    /// the reference or the model's previous prediction as `forcing` decides for each row.
    pub fn loss<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        batch: &Batch,
        forcing: &TeacherForcing,
        train_step: usize,
        rng: &mut impl Rng,
    ) -> Var<'t, T>
    where
        E: Cell<T> + Clone + 'static,
        D: Cell<T>,
    {
        let (ctx, mut state) = self.start(s, batch);
        let rows = batch.rows;
        let mut sampler = forcing.sampler(train_step, rows);
        let mut inputs = batch.tgt_in[..rows].to_vec();
        let mut total: Option<Var<'t, T>> = None;
        for t in 0..batch.tgt_steps {
            let (logits, next) = self.decoder.step(s, &inputs, &state, &ctx);
            state = next;
            let targets = &batch.tgt_out[t * rows..(t + 1) * rows];
            let step_loss = logits.cross_entropy(targets, Some(PAD), Reduction::Sum);
            total = Some(match total {
                Some(acc) => acc + step_loss,
                None => step_loss,
            });
            if t + 1 < batch.tgt_steps {
                let forced = sampler.next(rng);
                let predicted = argmax_rows(logits.value().data(), rows);
                let reference = &batch.tgt_in[(t + 1) * rows..(t + 2) * rows];
                inputs = (0..rows)
                    .map(|b| {
                        if forced[b] {
                            reference[b]
                        } else {
                            predicted[b]
                        }
                    })
                    .collect();
            }
        }
        total.expect("targets have at least one step")
    }
}

/// The index of the first largest value in each row.
pub fn argmax_rows<T: Element>(values: &[T], rows: usize) -> Vec<usize> {
    let width = values.len() / rows.max(1);
    values
        .chunks_exact(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, row[0]),
                    |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
                )
                .0
        })
        .collect()
}
