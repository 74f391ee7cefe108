//! Text data: reading corpora, vocabularies, and language-model batch iterators.

mod corpus;
mod lm_batches;
mod vocab;

pub use corpus::{read_text, read_words, text_of, words_of, CorpusError};
pub use lm_batches::{min_stream_len, random_batches, sequential_batches, LmBatch};
pub use vocab::{UnknownChars, Vocab, UNK};
