//! `Recurrent<C>`: any cell as a sequence layer with PyTorch's option set (num_layers,
//! bidirectional, batch_first, dropout between layers, initial state, variable lengths).
//! `Rnn`, `Lstm` and `Gru` are this layer over the built-in cells.

use super::cell::{Cell, State};
use super::checkpoint::checkpointed;
use super::fused::{fused_layers, Arrangement, FusedSpec};
use super::gates::CellSpec;
use super::noise::{variational_dropout, StateNoise};
use super::steps::stepped;
use super::{GruCell, LstmCell, Nonlinearity, RnnCell, RnnOptions};
use crate::dropout::Dropout;
use crate::params::ParamStore;
use crate::session::Session;
use rand::Rng;
use recur_tape::{concat, stack, Element, Var};

/// A stack of cells run over whole sequences, `cells[layer * directions + direction]`:
/// `torch.nn.RNN`/`LSTM`/`GRU` for the built-in cells ([`Rnn`], [`Lstm`], [`Gru`]), and the
/// same layer for a cell of one's own ([`Recurrent::build`]).
///
/// ```
/// use recur_nn::{Gru, Mode, ParamStore, RnnOptions, Session};
/// use recur_tape::{Tape, Tensor};
/// use rand::SeedableRng;
///
/// let mut store = ParamStore::<f32>::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let options = RnnOptions::new(3, 8).num_layers(2).bidirectional(true);
/// let gru = Gru::new(&mut store, "rnn", options, &mut rng);
/// assert!(store.find("rnn.weight_hh_l1_reverse").is_some()); // PyTorch's names
/// let tape = Tape::new();
/// let s = Session::new(&tape, &store, Mode::Train, 0);
/// let x = s.constant(Tensor::ones(&[5, 2, 3])); // [T, B, input]
/// let out = gru.forward(&s, x, None, Some(&[5, 3])); // row 1 is 3 steps long
/// assert_eq!(out.output.shape().as_slice(), &[5, 2, 16]); // both directions side by side
/// assert_eq!(out.h_n().shape().as_slice(), &[4, 2, 8]); // [layers · directions, B, H]
/// let grads = s.backward(out.output.sum());
/// assert_eq!(grads.iter().count(), store.len());
/// ```
#[derive(Clone, Debug)]
pub struct Recurrent<C> {
    /// The cells, layer by layer, forward direction first.
    pub cells: Vec<C>,
    /// The options the layer was built with.
    pub options: RnnOptions,
    name: &'static str,
}

/// What a sequence layer returns: `output` `[T, B, D·H]` (or `[B, T, D·H]` batch-first) and
/// the final state, one `[num_layers·D, B, width]` variable per state part.
pub struct RecurrentOutput<'t, T: Element> {
    /// The last layer's outputs at every step, all directions side by side.
    pub output: Var<'t, T>,
    /// Every layer's and direction's final state, one variable per state part.
    pub final_state: State<'t, T>,
}

impl<'t, T: Element> RecurrentOutput<'t, T> {
    /// The final hidden state h_n.
    pub fn h_n(&self) -> Var<'t, T> {
        self.final_state[0]
    }
    /// The final cell state c_n (LSTM).
    pub fn c_n(&self) -> Option<Var<'t, T>> {
        self.final_state.get(1).copied()
    }
}

/// `torch.nn.RNN`.
pub type Rnn = Recurrent<RnnCell>;
/// `torch.nn.LSTM` (see [`LstmState`](super::LstmState) for its initial state).
pub type Lstm = Recurrent<LstmCell>;
/// `torch.nn.GRU`.
pub type Gru = Recurrent<GruCell>;

impl<C> Recurrent<C> {
    /// Builds the stack from `make(layer, reverse, input_size)`, called in PyTorch's
    /// parameter order (layer by layer, forward direction first). Layer 0 reads the input;
    /// each later layer reads all directions of the one below,
    /// `directions · options.output_size()`. `name` names the layer in error messages.
    pub fn build(
        options: RnnOptions,
        name: &'static str,
        mut make: impl FnMut(usize, bool, usize) -> C,
    ) -> Self {
        let output_size = options.output_size();
        assert!(
            options.num_layers >= 1,
            "{name}: num_layers must be at least 1"
        );
        for (what, p) in [
            ("dropout", options.dropout),
            ("input_dropout", options.input_dropout),
            ("state_dropout", options.state_dropout),
            ("zoneout", options.zoneout),
        ] {
            assert!((0.0..1.0).contains(&p), "{name}: {what} {p} not in [0, 1)");
        }
        let mut cells = Vec::new();
        for layer in 0..options.num_layers {
            let input = if layer == 0 {
                options.input_size
            } else {
                options.directions() * output_size
            };
            for d in 0..options.directions() {
                cells.push(make(layer, d == 1, input));
            }
        }
        Recurrent {
            cells,
            options,
            name,
        }
    }

    /// `build` for the built-in cells, whose parameters are named like PyTorch's
    /// (`{prefix}.weight_ih_l{k}`, `..._reverse`): `make(spec, input_size)` builds one cell.
    fn build_named<R: Rng>(
        options: RnnOptions,
        name: &'static str,
        prefix: &str,
        rng: &mut R,
        mut make: impl FnMut(&mut CellSpec<'_, R>, usize) -> C,
    ) -> Self {
        let bias = options.bias;
        Self::build(options, name, |layer, reverse, input| {
            let sfx = layer_suffix(layer, reverse);
            make(
                &mut CellSpec {
                    prefix,
                    suffix: &sfx,
                    bias,
                    rng: &mut *rng,
                },
                input,
            )
        })
    }

    /// 2 if bidirectional, else 1.
    pub fn directions(&self) -> usize {
        self.options.directions()
    }

    /// The same layer with each cell converted (e.g. into [`AnyCell`](super::AnyCell)).
    pub fn map_cells<D>(self, f: impl FnMut(C) -> D) -> Recurrent<D> {
        Recurrent {
            cells: self.cells.into_iter().map(f).collect(),
            options: self.options,
            name: self.name,
        }
    }
}

/// A layer's directions' outputs `[T, B, H]` side by side along the features.
fn side_by_side<'t, T: Element>(outputs: &[Var<'t, T>]) -> Var<'t, T> {
    if outputs.len() == 1 {
        outputs[0]
    } else {
        concat(outputs, 2)
    }
}

/// Panics for a projection on a layer that has none (PyTorch projects only the LSTM's h).
fn refuse_projection(name: &str, options: &RnnOptions) {
    assert!(
        options.proj_size == 0,
        "{name}: proj_size {} is only supported for LSTM",
        options.proj_size
    );
}

/// The suffix PyTorch gives layer `layer`'s parameters (`weight_ih_l1_reverse`): `_l{layer}`,
/// then `_reverse` for the second direction.
pub fn layer_suffix(layer: usize, reverse: bool) -> String {
    format!("_l{layer}{}", if reverse { "_reverse" } else { "" })
}

impl Recurrent<RnnCell> {
    /// `torch.nn.RNN` with the given nonlinearity; parameters under `prefix`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        nonlinearity: Nonlinearity,
        rng: &mut impl Rng,
    ) -> Self {
        refuse_projection("RNN", &options);
        let hidden = options.hidden_size;
        Self::build_named(options, "RNN", prefix, rng, |spec, input| {
            RnnCell::with_spec(store, spec, input, hidden, nonlinearity)
        })
    }
}

impl Recurrent<LstmCell> {
    /// `torch.nn.LSTM`; [`RnnOptions::proj_size`] > 0 projects h to that width
    /// (`weight_hr_l{k}`).
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let (hidden, proj_size) = (options.hidden_size, options.proj_size);
        assert!(
            proj_size < hidden,
            "LSTM: proj_size {proj_size} must be smaller than hidden_size {hidden}"
        );
        Self::build_named(options, "LSTM", prefix, rng, |spec, input| {
            LstmCell::with_spec(store, spec, input, hidden, proj_size)
        })
    }
}

impl Recurrent<GruCell> {
    /// `torch.nn.GRU`.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        options: RnnOptions,
        rng: &mut impl Rng,
    ) -> Self {
        refuse_projection("GRU", &options);
        let hidden = options.hidden_size;
        Self::build_named(options, "GRU", prefix, rng, |spec, input| {
            GruCell::with_spec(store, spec, input, hidden)
        })
    }
}

impl<C> Recurrent<C> {
    /// Runs the whole sequence. `x` is `[T, B, input]` (`[B, T, input]` if batch-first);
    /// `initial` holds one `[num_layers·D, B, width]` variable per state part (zeros if
    /// `None`); `lengths` gives each row's true length, as a packed sequence would: outputs
    /// past it are zero, the final state is taken at each row's own last step, and the reverse
    /// direction starts at each row's own end.
    pub fn forward<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: Option<&[Var<'t, T>]>,
        lengths: Option<&[usize]>,
    ) -> RecurrentOutput<'t, T>
    where
        C: Cell<T> + Clone + 'static,
    {
        let name = self.name;
        let shape = x.shape();
        let input_size = self.cells[0].input_size();
        assert_eq!(
            self.cells[0].output_size(),
            self.options.output_size(),
            "{name}: the cells' output width differs from the options' (proj_size, else hidden_size)"
        );
        assert!(
            shape.len() == 3 && shape[2] == input_size,
            "{name}: input {:?} must be [T, B, {input_size}] ([B, T, {input_size}] if batch_first)",
            shape.as_slice()
        );
        let x = if self.options.batch_first {
            x.transpose(0, 1)
        } else {
            x
        };
        let (steps, batch) = if self.options.batch_first {
            (shape[1], shape[0])
        } else {
            (shape[0], shape[1])
        };
        if let Some(lengths) = lengths {
            assert!(
                lengths.len() == batch && lengths.iter().all(|&l| (1..=steps).contains(&l)),
                "{name}: lengths {lengths:?} must give a length in 1..={steps} for each of {batch} rows"
            );
        }
        let sizes = self.cells[0].state_sizes();
        let units = self.cells.len();
        if let Some(init) = initial {
            assert_eq!(
                init.len(),
                sizes.len(),
                "{name}: expected {} initial state parts, got {}",
                sizes.len(),
                init.len()
            );
            for (part, (v, &w)) in init.iter().zip(&sizes).enumerate() {
                assert!(
                    v.shape().as_slice() == [units, batch, w],
                    "{name}: initial state part {part} has shape {:?}, expected {:?}",
                    v.shape().as_slice(),
                    [units, batch, w]
                );
            }
        }
        // Noise on the state needs the steps.
        let state_noise =
            self.options.zoneout > 0.0 || (s.is_training() && self.options.state_dropout > 0.0);
        let fused: Option<Vec<FusedSpec>> = if self.options.fused && !state_noise {
            self.cells.iter().map(|c| c.fused()).collect()
        } else {
            None
        };
        let (output, finals) = if self.options.checkpoint || s.checkpoint_through_time() {
            self.layers_stepped(s, x, initial, lengths, batch, checkpointed)
        } else if let Some(specs) = fused {
            let dropout_between =
                s.is_training() && (self.options.dropout > 0.0 || self.options.input_dropout > 0.0);
            if self.directions() == 1 && units > 1 && !dropout_between {
                let states: Vec<_> = (0..units)
                    .map(|unit| self.initial_state(s, initial, unit, batch))
                    .collect();
                fused_layers(&specs, Arrangement::Stack, s, x, &states, lengths)
            } else {
                self.layers_whole(s, x, initial, batch, |units, input, states| {
                    Some(fused_layers(
                        &specs[units],
                        Arrangement::Directions,
                        s,
                        input,
                        &states,
                        lengths,
                    ))
                })
                .expect("the fused kernels run every built-in cell")
            }
        } else if let Some(whole) = (self.options.fused && !state_noise)
            .then(|| self.layers_sequence(s, x, initial, lengths, batch))
            .flatten()
        {
            whole
        } else {
            self.layers_stepped(s, x, initial, lengths, batch, stepped)
        };
        let output = if self.options.batch_first {
            output.transpose(0, 1)
        } else {
            output
        };
        let final_state = (0..sizes.len())
            .map(|p| stack(&finals.iter().map(|st| st[p]).collect::<Vec<_>>(), 0))
            .collect();
        RecurrentOutput {
            output,
            final_state,
        }
    }

    /// The initial state of `unit`: its slice of `initial`, or zeros.
    fn initial_state<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        initial: Option<&[Var<'t, T>]>,
        unit: usize,
        batch: usize,
    ) -> State<'t, T>
    where
        C: Cell<T>,
    {
        let cell = &self.cells[unit];
        match initial {
            Some(init) => init
                .iter()
                .zip(cell.state_sizes())
                .map(|(v, w)| v.slice(0, unit..unit + 1).reshape(&[batch, w]))
                .collect(),
            None => cell.zero_state(s, batch),
        }
    }

    /// Every layer's cells stepped over the sequence by `run` ([`stepped`] on the tape, or
    /// [`checkpointed`]), directions side by side.
    fn layers_stepped<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: Option<&[Var<'t, T>]>,
        lengths: Option<&[usize]>,
        batch: usize,
        run: impl Fn(
            &C,
            &Session<'t, '_, T>,
            Var<'t, T>,
            State<'t, T>,
            Option<&[usize]>,
            bool,
            StateNoise<T>,
        ) -> (Var<'t, T>, State<'t, T>),
    ) -> (Var<'t, T>, Vec<State<'t, T>>)
    where
        C: Cell<T>,
    {
        self.layers_whole(s, x, initial, batch, |units, input, states| {
            let (outputs, finals): (Vec<_>, Vec<_>) = states
                .into_iter()
                .enumerate()
                .map(|(d, state)| {
                    let cell = &self.cells[units.start + d];
                    let width = cell.state_sizes()[0];
                    let noise = StateNoise::new(
                        s,
                        batch,
                        width,
                        self.options.state_dropout,
                        self.options.zoneout,
                    );
                    run(cell, s, input, state, lengths, d == 1, noise)
                })
                .unzip();
            Some((side_by_side(&outputs), finals))
        })
        .expect("every cell steps")
    }

    /// Every layer through its cells' [`Cell::sequence`] (linear-scan cells), directions
    /// side by side; `None` if the cells step instead.
    fn layers_sequence<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: Option<&[Var<'t, T>]>,
        lengths: Option<&[usize]>,
        batch: usize,
    ) -> Option<(Var<'t, T>, Vec<State<'t, T>>)>
    where
        C: Cell<T>,
    {
        self.layers_whole(s, x, initial, batch, |units, input, states| {
            let mut outputs = Vec::with_capacity(states.len());
            let mut finals = Vec::with_capacity(states.len());
            for (d, state) in states.into_iter().enumerate() {
                let (output, last) =
                    self.cells[units.start + d].sequence(s, input, &state, lengths, d == 1)?;
                outputs.push(output);
                finals.push(last);
            }
            Some((side_by_side(&outputs), finals))
        })
    }

    /// Every layer as ops over whole `[T, B, F]` sequences, `run(units, input, initial
    /// states)` for the layer's units (its directions): the checkpointed op, the fused
    /// kernel or the cells' own sequences. Returns the layer's output `[T, B, D·H]` and each
    /// direction's final state, or `None` as soon as `run` does.
    fn layers_whole<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: Option<&[Var<'t, T>]>,
        batch: usize,
        run: impl Fn(
            std::ops::Range<usize>,
            Var<'t, T>,
            Vec<State<'t, T>>,
        ) -> Option<(Var<'t, T>, Vec<State<'t, T>>)>,
    ) -> Option<(Var<'t, T>, Vec<State<'t, T>>)>
    where
        C: Cell<T>,
    {
        let dropout = Dropout::new(self.options.dropout);
        let mut input = x;
        let mut finals = Vec::with_capacity(self.cells.len());
        let dirs = self.directions();
        for layer in 0..self.options.num_layers {
            let units = layer * dirs..(layer + 1) * dirs;
            let states = units
                .clone()
                .map(|unit| self.initial_state(s, initial, unit, batch))
                .collect();
            let masked = variational_dropout(s, input, self.options.input_dropout);
            let (output, layer_finals) = run(units, masked, states)?;
            finals.extend(layer_finals);
            input = output;
            if layer + 1 < self.options.num_layers {
                input = dropout.forward(s, input);
            }
        }
        Some((input, finals))
    }
}
