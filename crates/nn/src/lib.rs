//! recur-nn: layers, recurrent cells, losses, optimizers and checkpoints on the recur tape.
//!
//! Parameters live in a [`ParamStore`] under PyTorch's names; each step binds them to a fresh
//! tape through a [`Session`], runs forward and backward, and hands [`ParamGrads`] to an
//! optimizer.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod check;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod dropout;
pub mod embedding;
pub mod init;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod parity;
pub mod rnn;
pub mod session;
pub mod tbptt;
pub mod train_state;

pub use check::gradcheck_params;
pub use checkpoint::CheckpointError;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::{Linear, PackedLinear};
pub use norm::{LayerNorm, RmsNorm};
pub use params::{join_name, ParamGrads, ParamId, ParamStore};
pub use rnn::{
    AnyCell, AnyLayer, Cell, CellKind, Gru, GruCell, LayerKind, Lru, LruCell, LruOptions, Lstm,
    LstmCell, LstmState, MinGru, MinGruCell, MinLstm, MinLstmCell, Nonlinearity, Qrnn, QrnnCell,
    Recurrent, RecurrentOutput, RgLru, RgLruCell, Rnn, RnnCell, RnnOptions, State, Stepper,
};
pub use session::{Mode, Session};
