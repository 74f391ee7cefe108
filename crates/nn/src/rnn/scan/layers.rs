//! The scan cells as sequence layers through the generic [`Recurrent`] layer (stacking,
//! bidirectional, lengths, dropout between layers, checkpointing through time), with
//! parameters named `{prefix}.{name}_l{k}[_reverse]` like PyTorch's recurrent layers.

use super::{LruCell, LruOptions, MinGruCell, MinLstmCell, Names, QrnnCell, RgLruCell};
use crate::params::ParamStore;
use crate::rnn::layer::layer_suffix;
use crate::rnn::{Recurrent, RnnOptions};
use rand::Rng;
use recur_tape::Element;

/// A minGRU layer (Feng et al. 2024), trained through the linear scan.
pub type MinGru = Recurrent<MinGruCell>;
/// A minLSTM layer (Feng et al. 2024), trained through the linear scan.
pub type MinLstm = Recurrent<MinLstmCell>;
/// An LRU layer (Orvieto et al. 2023): a complex diagonal linear recurrence.
pub type Lru = Recurrent<LruCell>;
/// An RG-LRU layer (Griffin, De et al. 2024).
pub type RgLru = Recurrent<RgLruCell>;
/// A QRNN layer (Bradbury et al. 2016).
pub type Qrnn = Recurrent<QrnnCell>;

/// Builds a stack whose cells are made by `make(names, input_size)`.
fn stack_of<C>(
    options: RnnOptions,
    name: &'static str,
    prefix: &str,
    mut make: impl FnMut(&Names<'_>, usize) -> C,
) -> Recurrent<C> {
    Recurrent::build(options, name, |layer, reverse, input| {
        let suffix = layer_suffix(layer, reverse);
        make(
            &Names {
                prefix,
                suffix: &suffix,
            },
            input,
        )
    })
}

impl Recurrent<MinGruCell> {
    /// minGRU layers; `positive` applies g(·) to the candidate state (the paper's form).
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        positive: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let (hidden, bias) = (options.hidden_size, options.bias);
        stack_of(options, "minGRU", prefix, |names, input| {
            MinGruCell::with_names(store, names, input, hidden, bias, positive, rng)
        })
    }
}

impl Recurrent<MinLstmCell> {
    /// minLSTM layers; `positive` applies g(·) to the candidate state (the paper's form).
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        positive: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let (hidden, bias) = (options.hidden_size, options.bias);
        stack_of(options, "minLSTM", prefix, |names, input| {
            MinLstmCell::with_names(store, names, input, hidden, bias, positive, rng)
        })
    }
}

impl Recurrent<LruCell> {
    /// LRU layers with outputs of the options' hidden size and `lru.state_size` complex
    /// channels each.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        lru: &LruOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let hidden = options.hidden_size;
        stack_of(options, "LRU", prefix, |names, input| {
            LruCell::with_names(store, names, input, hidden, lru, rng)
        })
    }
}

impl Recurrent<RgLruCell> {
    /// RG-LRU layers (Hawk's recurrence).
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let (hidden, bias) = (options.hidden_size, options.bias);
        stack_of(options, "RG-LRU", prefix, |names, input| {
            RgLruCell::with_names(store, names, input, hidden, bias, rng)
        })
    }
}

impl Recurrent<QrnnCell> {
    /// QRNN layers (window-2 convolution, fo-pooling).
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let (hidden, bias) = (options.hidden_size, options.bias);
        stack_of(options, "QRNN", prefix, |names, input| {
            QrnnCell::with_names(store, names, input, hidden, bias, rng)
        })
    }
}
