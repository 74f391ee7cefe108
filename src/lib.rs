//! recur: recurrent neural networks on the CPU.
//!
//! This root crate re-exports the three layers of the library:
//! [`tape`] (tensors and reverse-mode autodiff), [`nn`] (layers, losses, optimizers)
//! and [`seq2seq`] (encoder-decoder models, decoding, BLEU).

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod memory;
pub use recur_nn as nn;
pub use recur_seq2seq as seq2seq;
pub use recur_tape as tape;
/// What a cell of one's own needs besides recur: state lists (`smallvec!`) and random
/// initialisation (`rand::Rng`), at the versions recur uses.
pub use {rand, smallvec};

/// The user guide to the layers (`docs/layers.md`); its examples run as doctests.
#[doc = include_str!("../docs/layers.md")]
pub mod guide_layers {}
