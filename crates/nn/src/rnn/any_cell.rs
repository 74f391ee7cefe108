//! `AnyCell`: one of the built-in cells chosen at run time (by a flag or a config), so that
//! one encoder, decoder or layer handles RNN, LSTM and GRU.

use super::cell::{Cell, State};
use super::fused::FusedSpec;
use super::gates::CellSpec;
use super::{GruCell, LstmCell, Nonlinearity, Recurrent, RnnCell, RnnOptions};
use crate::params::ParamStore;
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use smallvec::SmallVec;
use std::fmt;
use std::str::FromStr;

/// Which built-in cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// The Elman RNN with its nonlinearity (`rnn`, `rnn_relu`).
    Rnn(Nonlinearity),
    /// The LSTM (`lstm`).
    Lstm,
    /// The GRU (`gru`).
    Gru,
}

impl FromStr for CellKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rnn" | "rnn_tanh" => Ok(CellKind::Rnn(Nonlinearity::Tanh)),
            "rnn_relu" => Ok(CellKind::Rnn(Nonlinearity::Relu)),
            "lstm" => Ok(CellKind::Lstm),
            "gru" => Ok(CellKind::Gru),
            other => Err(format!(
                "unknown cell {other:?} (expected rnn, rnn_relu, lstm or gru)"
            )),
        }
    }
}

impl fmt::Display for CellKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellKind::Rnn(Nonlinearity::Tanh) => "rnn",
            CellKind::Rnn(Nonlinearity::Relu) => "rnn_relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        })
    }
}

/// One of the built-in cells, chosen at run time; it runs exactly as the cell inside.
#[derive(Clone, Debug)]
pub enum AnyCell {
    /// An [`RnnCell`].
    Rnn(RnnCell),
    /// An [`LstmCell`].
    Lstm(LstmCell),
    /// A [`GruCell`].
    Gru(GruCell),
}

impl AnyCell {
    /// A cell with parameters `{prefix}.weight_ih{suffix}` etc. (`suffix` "" for PyTorch's
    /// standalone cells, `_l0` to match layer `l0` of a sequence layer).
    #[allow(clippy::too_many_arguments)]
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        suffix: &str,
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let mut spec = CellSpec {
            prefix,
            suffix,
            bias,
            rng,
        };
        match kind {
            CellKind::Rnn(nl) => AnyCell::Rnn(RnnCell::with_spec(
                store,
                &mut spec,
                input_size,
                hidden_size,
                nl,
            )),
            CellKind::Lstm => AnyCell::Lstm(LstmCell::with_spec(
                store,
                &mut spec,
                input_size,
                hidden_size,
                0,
            )),
            CellKind::Gru => AnyCell::Gru(GruCell::with_spec(
                store,
                &mut spec,
                input_size,
                hidden_size,
            )),
        }
    }
}

impl<T: Element> Cell<T> for AnyCell {
    fn input_size(&self) -> usize {
        match self {
            AnyCell::Rnn(c) => Cell::<T>::input_size(c),
            AnyCell::Lstm(c) => Cell::<T>::input_size(c),
            AnyCell::Gru(c) => Cell::<T>::input_size(c),
        }
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        match self {
            AnyCell::Rnn(c) => Cell::<T>::state_sizes(c),
            AnyCell::Lstm(c) => Cell::<T>::state_sizes(c),
            AnyCell::Gru(c) => Cell::<T>::state_sizes(c),
        }
    }

    fn fused(&self) -> Option<FusedSpec> {
        match self {
            AnyCell::Rnn(c) => Cell::<T>::fused(c),
            AnyCell::Lstm(c) => Cell::<T>::fused(c),
            AnyCell::Gru(c) => Cell::<T>::fused(c),
        }
    }

    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        match self {
            AnyCell::Rnn(c) => c.project_input(s, x),
            AnyCell::Lstm(c) => c.project_input(s, x),
            AnyCell::Gru(c) => c.project_input(s, x),
        }
    }

    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        input: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        match self {
            AnyCell::Rnn(c) => c.step_projected(s, input, state),
            AnyCell::Lstm(c) => c.step_projected(s, input, state),
            AnyCell::Gru(c) => c.step_projected(s, input, state),
        }
    }
}

impl Recurrent<AnyCell> {
    /// A sequence layer of the chosen kind ([`RnnOptions::proj_size`] applies to LSTM
    /// only).
    pub fn of_kind<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        kind: CellKind,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        match kind {
            CellKind::Rnn(nl) => {
                Recurrent::<RnnCell>::new(store, prefix, options, nl, rng).map_cells(AnyCell::Rnn)
            }
            CellKind::Lstm => {
                Recurrent::<LstmCell>::new(store, prefix, options, rng).map_cells(AnyCell::Lstm)
            }
            CellKind::Gru => {
                Recurrent::<GruCell>::new(store, prefix, options, rng).map_cells(AnyCell::Gru)
            }
        }
    }
}
