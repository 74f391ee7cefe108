//! Text data: vocabularies (and, for language models, batch iterators).

mod vocab;

pub use vocab::Vocab;
