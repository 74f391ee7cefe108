//! `AnyLayer`: any of recur's sequence layers chosen at run time by name (the examples'
//! `--cell`): the built-in RNN/LSTM/GRU and the linear-recurrence layers.

use super::{
    AnyCell, CellKind, Lru, LruOptions, MinGru, MinLstm, Qrnn, Recurrent, RecurrentOutput, RgLru,
    RnnOptions,
};
use crate::params::ParamStore;
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};
use std::fmt;
use std::str::FromStr;

/// Which sequence layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A built-in cell: rnn, rnn_relu, lstm, gru.
    Cell(CellKind),
    /// minGRU; `positive` applies g(·) to the candidate state ("mingru_g").
    MinGru {
        /// Apply g(·) to the candidate state.
        positive: bool,
    },
    /// minLSTM; `positive` applies g(·) to the candidate state ("minlstm_g").
    MinLstm {
        /// Apply g(·) to the candidate state.
        positive: bool,
    },
    /// LRU with as many complex channels as the hidden size.
    Lru,
    /// RG-LRU, Griffin's real-gated linear recurrent unit ("rglru").
    RgLru,
    /// QRNN with its width-2 convolution and fo-pooling ("qrnn").
    Qrnn,
}

impl FromStr for LayerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "mingru" => LayerKind::MinGru { positive: false },
            "mingru_g" => LayerKind::MinGru { positive: true },
            "minlstm" => LayerKind::MinLstm { positive: false },
            "minlstm_g" => LayerKind::MinLstm { positive: true },
            "lru" => LayerKind::Lru,
            "rglru" => LayerKind::RgLru,
            "qrnn" => LayerKind::Qrnn,
            other => LayerKind::Cell(other.parse().map_err(|_| {
                format!(
                    "unknown cell {other:?} (expected rnn, rnn_relu, lstm, gru, mingru, \
                     mingru_g, minlstm, minlstm_g, lru, rglru or qrnn)"
                )
            })?),
        })
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerKind::Cell(kind) => kind.fmt(f),
            LayerKind::MinGru { positive } => {
                f.write_str(if *positive { "mingru_g" } else { "mingru" })
            }
            LayerKind::MinLstm { positive } => {
                f.write_str(if *positive { "minlstm_g" } else { "minlstm" })
            }
            LayerKind::Lru => f.write_str("lru"),
            LayerKind::RgLru => f.write_str("rglru"),
            LayerKind::Qrnn => f.write_str("qrnn"),
        }
    }
}

/// One of the sequence layers, with parameters under `{prefix}` named as each layer names them.
#[derive(Clone, Debug)]
pub enum AnyLayer {
    /// A layer of a built-in cell.
    Cell(Recurrent<AnyCell>),
    /// A minGRU layer.
    MinGru(MinGru),
    /// A minLSTM layer.
    MinLstm(MinLstm),
    /// An LRU layer.
    Lru(Lru),
    /// An RG-LRU layer.
    RgLru(RgLru),
    /// A QRNN layer.
    Qrnn(Qrnn),
}

impl AnyLayer {
    /// A layer of `kind` with `options`, its parameters under `prefix`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        kind: LayerKind,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        match kind {
            LayerKind::Cell(cell) => {
                AnyLayer::Cell(Recurrent::of_kind(store, prefix, cell, options, rng))
            }
            LayerKind::MinGru { positive } => {
                AnyLayer::MinGru(MinGru::new(store, prefix, options, positive, rng))
            }
            LayerKind::MinLstm { positive } => {
                AnyLayer::MinLstm(MinLstm::new(store, prefix, options, positive, rng))
            }
            LayerKind::Lru => {
                let lru = LruOptions::new(options.hidden_size);
                AnyLayer::Lru(Lru::new(store, prefix, options, &lru, rng))
            }
            LayerKind::RgLru => AnyLayer::RgLru(RgLru::new(store, prefix, options, rng)),
            LayerKind::Qrnn => AnyLayer::Qrnn(Qrnn::new(store, prefix, options, rng)),
        }
    }

    /// The layer's options.
    pub fn options(&self) -> &RnnOptions {
        match self {
            AnyLayer::Cell(l) => &l.options,
            AnyLayer::MinGru(l) => &l.options,
            AnyLayer::MinLstm(l) => &l.options,
            AnyLayer::Lru(l) => &l.options,
            AnyLayer::RgLru(l) => &l.options,
            AnyLayer::Qrnn(l) => &l.options,
        }
    }

    /// [`Recurrent::forward`] of the layer inside.
    pub fn forward<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: Option<&[Var<'t, T>]>,
        lengths: Option<&[usize]>,
    ) -> RecurrentOutput<'t, T> {
        match self {
            AnyLayer::Cell(l) => l.forward(s, x, initial, lengths),
            AnyLayer::MinGru(l) => l.forward(s, x, initial, lengths),
            AnyLayer::MinLstm(l) => l.forward(s, x, initial, lengths),
            AnyLayer::Lru(l) => l.forward(s, x, initial, lengths),
            AnyLayer::RgLru(l) => l.forward(s, x, initial, lengths),
            AnyLayer::Qrnn(l) => l.forward(s, x, initial, lengths),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LayerKind;

    #[test]
    fn kinds_parse_what_they_print() {
        for name in [
            "rnn",
            "rnn_relu",
            "lstm",
            "gru",
            "mingru",
            "mingru_g",
            "minlstm",
            "minlstm_g",
            "lru",
            "rglru",
            "qrnn",
        ] {
            let kind: LayerKind = name.parse().unwrap();
            assert_eq!(kind.to_string(), name);
        }
        let err = "mamba".parse::<LayerKind>().unwrap_err();
        assert!(err.contains("unknown cell \"mamba\""), "{err}");
    }
}
