//! recur-seq2seq: encoder-decoder models with attention, teacher forcing, greedy and beam
//! decoding, and BLEU / chrF.
//!
//! A [`Seq2Seq`] model is an [`Encoder`] (embedding + stacked, optionally bidirectional
//! RNN/LSTM/GRU over the source with its lengths) and a [`Decoder`] that receives the source
//! as its initial state, as an extra input at each step, or both ([`ContextMode`]), or
//! through [`Attention`]. Training consults a [`TeacherForcing`] policy at every step;
//! decoding ([`greedy`], [`beam_search`]) records no graph.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod attention;
pub mod batch;
pub mod bleu;
pub mod chrf;
pub mod decoder;
pub mod encoder;
pub mod model;
pub mod search;
pub mod teacher_forcing;

pub use attention::{Attention, AttentionKind, Memory};
pub use batch::{bucket_batches, Batch, BOS, EOS, PAD, SPECIALS, UNK};
pub use bleu::{corpus_bleu, corpus_bleu_with, tokenize_13a, Bleu, Smoothing};
pub use chrf::corpus_chrf;
pub use decoder::{Context, ContextMode, Decoder, DecoderSpec};
pub use encoder::{CellSlot, Encoded, Encoder, EncoderSpec};
pub use model::{Seq2Seq, Seq2SeqConfig};
pub use search::{beam_search, greedy, score, BeamOptions, Hypothesis};
pub use teacher_forcing::{Decay, ForcingSampler, Granularity, TeacherForcing};
