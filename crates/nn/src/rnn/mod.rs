//! Recurrent networks: the `Cell` step trait, the RNN/LSTM/GRU cells, and the generic
//! `Recurrent` layer that turns any cell into a stacked, bidirectional, variable-length
//! sequence layer with PyTorch's names, shapes and semantics.

mod any_cell;
mod any_layer;
mod cell;
mod checkpoint;
mod fused;
mod gates;
mod gru_cell;
mod layer;
mod lstm_cell;
mod noise;
mod options;
mod rnn_cell;
mod scan;
mod stepper;
mod steps;
mod typed_state;

pub use any_cell::{AnyCell, CellKind};
pub use any_layer::{AnyLayer, LayerKind};
pub use cell::{Cell, State};
pub use fused::FusedSpec;
pub use gru_cell::GruCell;
pub use layer::{layer_suffix, Gru, Lstm, Recurrent, RecurrentOutput, Rnn};
pub use lstm_cell::LstmCell;
pub use options::RnnOptions;
pub use rnn_cell::{Nonlinearity, RnnCell};
pub use scan::{
    Lru, LruCell, LruOptions, MinGru, MinGruCell, MinLstm, MinLstmCell, Qrnn, QrnnCell, RgLru,
    RgLruCell,
};
pub use stepper::Stepper;
pub use typed_state::LstmState;

#[cfg(test)]
mod tests;
