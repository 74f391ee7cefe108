//! The cells and the op of recur's docs/custom-cell.md in a crate of a user's own, which
//! depends on `recur` alone: recur's tests/tutorial.rs builds it, gradchecks each piece and
//! matches it against PyTorch (tools/tutorial_fixtures.py).

pub mod cells;
pub mod mish;
