//! Tests of the composed cells and the generic layer: gradchecks with respect to inputs,
//! states and parameters; a user-defined cell getting stacking, bidirectionality and lengths;
//! padding that does not change results; dropout between layers in training only;
//! checkpointing through time giving the plain path's results.

use super::*;
use crate::check::gradcheck_params;
use crate::params::{join_name, ParamId, ParamStore};
use crate::rnn::{AnyCell, CellKind};
use crate::session::{Mode, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur_tape::kernels::Precision;
use recur_tape::{concat, Element, Tape, Tensor, Var};
use smallvec::{smallvec, SmallVec};

pub(super) fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

pub(super) fn rand_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// Gradchecks one step of `cell` with respect to x, every state part and every parameter.
fn check_cell<C: Cell<f64>>(store: &ParamStore<f64>, cell: &C) {
    let batch = 3;
    let mut inputs = vec![rand_tensor(&[batch, cell.input_size()], 1)];
    inputs.extend(
        cell.state_sizes()
            .iter()
            .enumerate()
            .map(|(i, &w)| rand_tensor(&[batch, w], 2 + i as u64)),
    );
    let report = gradcheck_params(store, &inputs, |s, v| {
        concat(&cell.step(s, v[0], &v[1..]), 1)
    });
    assert!(report.passed, "{report}");
}

#[test]
fn built_in_cells_pass_gradcheck() {
    for bias in [true, false] {
        for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            let mut store = ParamStore::new();
            let cell = RnnCell::new(&mut store, "rnn", 4, 5, bias, nl, &mut rng());
            check_cell(&store, &cell);
        }
        let mut store = ParamStore::new();
        let cell = LstmCell::new(&mut store, "lstm", 4, 5, bias, &mut rng());
        check_cell(&store, &cell);
        let mut store = ParamStore::new();
        let cell = GruCell::new(&mut store, "gru", 4, 5, bias, &mut rng());
        check_cell(&store, &cell);
    }
}

#[test]
fn standalone_cells_use_pytorch_names_and_shapes() {
    let mut store = ParamStore::<f32>::new();
    LstmCell::new(&mut store, "", 3, 4, true, &mut rng());
    let names: Vec<(&str, Vec<usize>)> =
        store.iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    assert_eq!(
        names,
        vec![
            ("weight_ih", vec![16, 3]),
            ("weight_hh", vec![16, 4]),
            ("bias_ih", vec![16]),
            ("bias_hh", vec![16])
        ]
    );
    let mut store = ParamStore::<f32>::new();
    Lstm::new(
        &mut store,
        "enc.rnn",
        RnnOptions::new(3, 4)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(2),
        &mut rng(),
    );
    let names: Vec<&str> = store.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names[..5],
        [
            "enc.rnn.weight_ih_l0",
            "enc.rnn.weight_hh_l0",
            "enc.rnn.bias_ih_l0",
            "enc.rnn.bias_hh_l0",
            "enc.rnn.weight_hr_l0"
        ]
    );
    assert!(names.contains(&"enc.rnn.bias_hh_l1_reverse"));
    assert_eq!(
        store
            .get(store.find("enc.rnn.weight_ih_l1").unwrap())
            .shape(),
        &[16, 4]
    );
    assert_eq!(
        store
            .get(store.find("enc.rnn.weight_hh_l0").unwrap())
            .shape(),
        &[16, 2]
    );
}

/// A user's cell: IndRNN (Li et al. 2018), h' = tanh(W·x + b + u ⊙ h), each unit recurrent only
/// with itself. Written from tape ops like any user would.
#[derive(Clone)]
struct IndRnn {
    w: ParamId,
    b: ParamId,
    u: ParamId,
    input: usize,
    hidden: usize,
}

impl IndRnn {
    fn new(
        store: &mut ParamStore<f64>,
        prefix: &str,
        input: usize,
        hidden: usize,
        seed: u64,
    ) -> Self {
        let mut r = StdRng::seed_from_u64(seed);
        let w = store.add(
            join_name(prefix, "w"),
            Tensor::uniform(&[hidden, input], -0.5, 0.5, &mut r),
        );
        let b = store.add(
            join_name(prefix, "b"),
            Tensor::uniform(&[hidden], -0.5, 0.5, &mut r),
        );
        let u = store.add(
            join_name(prefix, "u"),
            Tensor::uniform(&[hidden], -0.9, 0.9, &mut r),
        );
        IndRnn {
            w,
            b,
            u,
            input,
            hidden,
        }
    }
}

impl<T: Element> Cell<T> for IndRnn {
    fn input_size(&self) -> usize {
        self.input
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden]
    }
    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        smallvec![
            (x.linear(s.param(self.w), Some(s.param(self.b))) + state[0] * s.param(self.u)).tanh()
        ]
    }
}

fn indrnn_layer(store: &mut ParamStore<f64>, options: RnnOptions) -> Recurrent<IndRnn> {
    let hidden = options.hidden_size;
    Recurrent::build(options, "IndRNN", |layer, reverse, input| {
        let prefix = format!("indrnn.l{layer}{}", if reverse { "_reverse" } else { "" });
        IndRnn::new(
            store,
            &prefix,
            input,
            hidden,
            (layer * 2 + reverse as usize) as u64,
        )
    })
}

#[test]
fn user_cell_gets_stacking_bidirectional_and_lengths() {
    let mut store = ParamStore::new();
    let layer = indrnn_layer(
        &mut store,
        RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
    );
    assert_eq!(store.len(), 12);
    let (steps, batch) = (5, 3);
    let x = rand_tensor(&[steps, batch, 3], 7);
    let h0 = rand_tensor(&[4, batch, 4], 8);
    let lengths = [5, 2, 4];
    let report = gradcheck_params(&store, &[x.clone(), h0.clone()], |s, v| {
        let out = layer.forward(s, v[0], Some(&[v[1]]), Some(&lengths));
        concat(
            &[
                out.output.reshape(&[steps * batch * 8]),
                out.h_n().reshape(&[4 * batch * 4]),
            ],
            0,
        )
    });
    assert!(report.passed, "{report}");

    // Shapes and the meaning of lengths: zeros past each row's end.
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let out = layer.forward(&s, tape.constant(x), None, Some(&lengths));
    let y = out.output.to_tensor();
    assert_eq!(y.shape(), &[steps, batch, 8]);
    assert_eq!(out.h_n().shape().as_slice(), &[4, batch, 4]);
    for t in 2..steps {
        assert!(
            (0..8).all(|j| y.at(&[t, 1, j]) == 0.0),
            "row 1 has length 2"
        );
    }
}

/// Row `b` of a batch run with lengths equals the same sequence run alone, unpadded.
fn padding_does_not_change_results<C: Cell<f64> + Clone + 'static>(
    layer: &Recurrent<C>,
    store: &ParamStore<f64>,
    out_width: usize,
) {
    let (steps, batch, input) = (6, 3, layer.cells[0].input_size());
    let x = rand_tensor(&[steps, batch, input], 11);
    let lengths = [6, 3, 1];
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Eval, 0);
    let batched = layer.forward(&s, tape.constant(x.clone()), None, Some(&lengths));
    let units = batched.h_n().shape()[0];
    for (b, &len) in lengths.iter().enumerate() {
        let alone: Vec<f64> = (0..len)
            .flat_map(|t| {
                x.row(t)
                    .iter()
                    .skip(b * input)
                    .take(input)
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        let single = layer.forward(
            &s,
            tape.constant(Tensor::from_vec(alone, &[len, 1, input])),
            None,
            None,
        );
        let (yb, ys) = (batched.output.to_tensor(), single.output.to_tensor());
        for t in 0..len {
            for j in 0..out_width {
                assert!(
                    (yb.at(&[t, b, j]) - ys.at(&[t, 0, j])).abs() < 1e-14,
                    "output t={t} b={b} j={j}"
                );
            }
        }
        for (pb, ps) in batched.final_state.iter().zip(&single.final_state) {
            let (pb, ps) = (pb.to_tensor(), ps.to_tensor());
            let w = pb.shape()[2];
            for u in 0..units {
                for j in 0..w {
                    assert!(
                        (pb.at(&[u, b, j]) - ps.at(&[u, 0, j])).abs() < 1e-14,
                        "state unit {u} b={b}"
                    );
                }
            }
        }
    }
}

#[test]
fn padding_does_not_change_results_for_every_cell() {
    let opts = RnnOptions::new(3, 4).num_layers(2).bidirectional(true);
    let mut store = ParamStore::new();
    let lstm = Lstm::new(&mut store, "", opts.clone().proj_size(2), &mut rng());
    padding_does_not_change_results(&lstm, &store, 4);
    let mut store = ParamStore::new();
    let gru = Gru::new(&mut store, "", opts.clone(), &mut rng());
    padding_does_not_change_results(&gru, &store, 8);
    let mut store = ParamStore::new();
    let indrnn = indrnn_layer(&mut store, opts);
    padding_does_not_change_results(&indrnn, &store, 8);
}

#[test]
fn dropout_between_layers_only_in_training() {
    let mut store = ParamStore::<f64>::new();
    let with = Gru::new(
        &mut store,
        "",
        RnnOptions::new(3, 8).num_layers(2).dropout(0.5),
        &mut rng(),
    );
    let mut without = with.clone();
    without.options.dropout = 0.0;
    let x = rand_tensor(&[4, 2, 3], 3);
    let run = |layer: &Gru, mode| {
        let tape = Tape::new();
        let s = Session::new(&tape, &store, mode, 9);
        let y = layer
            .forward(&s, tape.constant(x.clone()), None, None)
            .output
            .to_tensor();
        y
    };
    assert_eq!(run(&with, Mode::Eval), run(&without, Mode::Eval));
    assert_ne!(run(&with, Mode::Train), run(&without, Mode::Train));
    assert_eq!(run(&without, Mode::Train), run(&without, Mode::Eval));
}

#[test]
#[should_panic(expected = "LSTM: input [5, 2, 7] must be [T, B, 3]")]
fn wrong_input_width_names_layer_and_shapes() {
    let mut store = ParamStore::<f32>::new();
    let lstm = Lstm::new(&mut store, "", RnnOptions::new(3, 4), &mut rng());
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    lstm.forward(&s, tape.constant(Tensor::zeros(&[5, 2, 7])), None, None);
}

/// Outputs, final states and every gradient (input, initial state, parameters) of a
/// weighted sum of them.
pub(super) fn run_values<C: Cell<f64> + Clone + 'static>(
    layer: &Recurrent<C>,
    store: &ParamStore<f64>,
    x: &Tensor<f64>,
    lengths: Option<&[usize]>,
    with_initial: bool,
) -> Vec<Tensor<f64>> {
    run_values_with(layer, store, x, lengths, with_initial, Precision::Full)
}

/// [`run_values`] on a tape whose products take operands in `precision`.
pub(super) fn run_values_with<C: Cell<f64> + Clone + 'static>(
    layer: &Recurrent<C>,
    store: &ParamStore<f64>,
    x: &Tensor<f64>,
    lengths: Option<&[usize]>,
    with_initial: bool,
    precision: Precision,
) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    tape.set_product_precision(precision);
    let s = Session::new(&tape, store, Mode::Eval, 0);
    let xv = tape.var(x.clone());
    let steps_batch = (x.shape()[0], x.shape()[1]);
    let units = layer.cells.len();
    let init: Vec<Var<f64>> = if with_initial {
        Cell::<f64>::state_sizes(&layer.cells[0])
            .iter()
            .enumerate()
            .map(|(p, &w)| tape.var(rand_tensor(&[units, steps_batch.1, w], 50 + p as u64)))
            .collect()
    } else {
        Vec::new()
    };
    let out = layer.forward(&s, xv, with_initial.then_some(init.as_slice()), lengths);
    let weights = rand_tensor(&out.output.shape(), 99);
    let mut loss = (out.output * tape.constant(weights)).sum();
    for (p, part) in out.final_state.iter().enumerate() {
        loss = loss + (*part * tape.constant(rand_tensor(&part.shape(), 70 + p as u64))).sum();
    }
    let grads = tape.backward(loss);
    let mut all = vec![out.output.to_tensor(), grads.wrt(xv)];
    all.extend(out.final_state.iter().map(|v| v.to_tensor()));
    all.extend(init.iter().map(|&v| grads.wrt(v)));
    all.extend(store.ids().map(|id| grads.wrt(s.param(id))));
    all
}

#[test]
fn checkpointing_through_time_gives_the_plain_results() {
    let cases: Vec<(&str, RnnOptions, Option<Vec<usize>>, bool)> = vec![
        ("lstm", RnnOptions::new(3, 5), None, false),
        (
            "gru 2-layer bidirectional lengths",
            RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
            Some(vec![17, 5, 11]),
            true,
        ),
        (
            "lstm proj bidirectional lengths",
            RnnOptions::new(3, 6).bidirectional(true),
            Some(vec![9, 17, 1]),
            true,
        ),
        (
            "rnn relu 3-layer",
            RnnOptions::new(2, 3).num_layers(3),
            None,
            true,
        ),
    ];
    let x = rand_tensor(&[17, 3, 3], 5);
    for (name, options, lengths, init) in cases {
        let mut store = ParamStore::new();
        let built: Recurrent<AnyCell> = match name {
            n if n.starts_with("gru") => {
                Recurrent::of_kind(&mut store, "", CellKind::Gru, options.clone(), &mut rng())
            }
            n if n.starts_with("lstm proj") => Recurrent::of_kind(
                &mut store,
                "",
                CellKind::Lstm,
                options.clone().proj_size(2),
                &mut rng(),
            ),
            n if n.starts_with("lstm") => {
                Recurrent::of_kind(&mut store, "", CellKind::Lstm, options.clone(), &mut rng())
            }
            _ => Recurrent::of_kind(
                &mut store,
                "",
                CellKind::Rnn(Nonlinearity::Relu),
                options.clone(),
                &mut rng(),
            ),
        };
        let mut plain = built;
        plain.options.fused = false;
        let mut checkpointed = plain.clone();
        checkpointed.options.checkpoint = true;
        let xs = x.slice_first(options.input_size);
        assert_checkpointing_matches(name, &plain, &checkpointed, &store, &xs, lengths, init);
    }
    // A user's cell too.
    let mut store = ParamStore::new();
    let indrnn = indrnn_layer(
        &mut store,
        RnnOptions::new(3, 4).num_layers(2).bidirectional(true),
    );
    let mut ck = indrnn.clone();
    ck.options.checkpoint = true;
    let lengths = Some(vec![17, 4, 9]);
    assert_checkpointing_matches("indrnn", &indrnn, &ck, &store, &x, lengths, true);
}

/// The checkpointed layer against the plain one: the same outputs and final states, bit for
/// bit, and the same gradients. The checkpointed op projects the inputs a segment at a time
/// where the plain path projects the whole sequence at once, so the input projection's
/// weight gradients are summed in another order (1e-12 relative); all else is bit for bit.
fn assert_checkpointing_matches<C: Cell<f64> + Clone + 'static>(
    name: &str,
    plain: &Recurrent<C>,
    checkpointed: &Recurrent<C>,
    store: &ParamStore<f64>,
    x: &Tensor<f64>,
    lengths: Option<Vec<usize>>,
    with_initial: bool,
) {
    let a = run_values(plain, store, x, lengths.as_deref(), with_initial);
    let b = run_values(checkpointed, store, x, lengths.as_deref(), with_initial);
    assert_eq!(a.len(), b.len());
    let parts = Cell::<f64>::state_sizes(&plain.cells[0]).len();
    for (i, (p, c)) in a.iter().zip(&b).enumerate() {
        let forward = i == 0 || (2..2 + parts).contains(&i);
        if forward {
            assert!(
                p == c,
                "{name}: value {i} differs between the plain and the checkpointed path"
            );
        }
        for (u, v) in p.data().iter().zip(c.data()) {
            assert!(
                (u - v).abs() <= 1e-12 * u.abs().max(1.0),
                "{name}: tensor {i} differs between the plain and the checkpointed path: {u} vs {v}"
            );
        }
    }
}

trait SliceFirst {
    fn slice_first(&self, width: usize) -> Tensor<f64>;
}

impl SliceFirst for Tensor<f64> {
    /// The first `width` features of a `[T, B, F]` tensor.
    fn slice_first(&self, width: usize) -> Tensor<f64> {
        let (t, b, f) = (self.shape()[0], self.shape()[1], self.shape()[2]);
        let data = self
            .data()
            .chunks(f)
            .flat_map(|row| row[..width].to_vec())
            .collect();
        Tensor::from_vec(data, &[t, b, width])
    }
}

/// An LSTM cell that counts the calls of its input projection.
#[derive(Clone)]
struct CountingProjections {
    lstm: LstmCell,
    calls: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<T: Element> Cell<T> for CountingProjections {
    fn input_size(&self) -> usize {
        Cell::<T>::input_size(&self.lstm)
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        Cell::<T>::state_sizes(&self.lstm)
    }
    fn project_input<'t>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Option<Var<'t, T>> {
        self.calls.set(self.calls.get() + 1);
        self.lstm.project_input(s, x)
    }
    fn step_projected<'t>(
        &self,
        s: &Session<'t, '_, T>,
        input: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        self.lstm.step_projected(s, input, state)
    }
}

/// The layer makes a cell's input projection once per layer and direction, for all steps,
/// with the results of projecting inside each step.
#[test]
fn the_input_projection_is_made_once_per_layer_and_direction() {
    let mut store = ParamStore::new();
    let options = RnnOptions::new(3, 4)
        .num_layers(2)
        .bidirectional(true)
        .fused(false);
    let lstm = Lstm::new(&mut store, "", options, &mut rng());
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let counting = lstm.clone().map_cells(|lstm| CountingProjections {
        lstm,
        calls: calls.clone(),
    });
    let x = rand_tensor(&[6, 2, 3], 3);
    let lengths = Some(vec![6, 4]);
    let projected = run_values(&counting, &store, &x, lengths.as_deref(), true);
    assert_eq!(calls.get(), 4, "one projection per layer and direction");

    // The same cells projecting inside each step instead.
    let by_hand = lstm.map_cells(ByHand);
    let stepped = run_values(&by_hand, &store, &x, lengths.as_deref(), true);
    for (i, (a, b)) in projected.iter().zip(&stepped).enumerate() {
        assert!(
            a.max_abs_diff(b) < 1e-12,
            "tensor {i}: projecting once differs from projecting each step"
        );
    }
}

/// The LSTM cell with its input projection inside `step` (the default `step` of a cell that
/// projects), as a cell that does not split it off.
#[derive(Clone)]
struct ByHand(LstmCell);

impl<T: Element> Cell<T> for ByHand {
    fn input_size(&self) -> usize {
        Cell::<T>::input_size(&self.0)
    }
    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        Cell::<T>::state_sizes(&self.0)
    }
    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        self.0.step(s, x, state)
    }
}
