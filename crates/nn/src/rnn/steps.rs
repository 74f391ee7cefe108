//! The time loop of one direction of one layer: the cell's input projection for the whole
//! sequence at once, then its steps over given time indices, holding the state of rows past
//! their length and zeroing their outputs. Shared by the plain layer and the checkpointed op's
//! recomputation, so both record exactly the same ops.

use super::cell::{Cell, State};
use super::noise::StateNoise;
use crate::session::Session;
use recur_tape::{stack, Element, Tensor, Var};

/// 1 where step `t` is inside row b's sequence, as a `[batch, width]` mask.
fn active_mask<T: Element>(lengths: &[usize], t: usize, width: usize) -> Tensor<T> {
    let data = lengths
        .iter()
        .flat_map(|&len| std::iter::repeat_n(if t < len { T::one() } else { T::zero() }, width))
        .collect();
    Tensor::from_vec(data, &[lengths.len(), width])
}

/// Whether some row has ended by step `t` (so the step is masked).
pub(crate) fn masked(lengths: Option<&[usize]>, t: usize) -> bool {
    lengths.is_some_and(|l| l.iter().any(|&len| t >= len))
}

/// What a cell's steps read from a run of steps' inputs `[steps·B, input]`: their rows of
/// the cell's input projection, made once for them all, or of the inputs themselves.
pub(crate) struct StepRows<'t, T: Element> {
    rows: Var<'t, T>,
    batch: usize,
    projected: bool,
}

impl<'t, T: Element> StepRows<'t, T> {
    pub fn new<C: Cell<T>>(cell: &C, s: &Session<'t, '_, T>, x: Var<'t, T>, batch: usize) -> Self {
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        match cell.project_input(s, x) {
            Some(projected) => {
                let shape = projected.shape();
                assert!(
                    shape.len() == 2 && shape[0] == rows,
                    "project_input: x of shape [{rows}, {width}] gave {:?}; it must give [{rows}, width]",
                    shape.as_slice()
                );
                StepRows {
                    rows: projected,
                    batch,
                    projected: true,
                }
            }
            None => StepRows {
                rows: x,
                batch,
                projected: false,
            },
        }
    }

    /// The rows of the `k`-th step of the run.
    pub fn at(&self, k: usize) -> StepInput<'t, T> {
        let rows = self.rows.slice(0, k * self.batch..(k + 1) * self.batch);
        if self.projected {
            StepInput::Projected(rows)
        } else {
            StepInput::Raw(rows)
        }
    }
}

/// A step's input: x_t itself, or its rows of the cell's input projection.
#[derive(Clone, Copy)]
pub(crate) enum StepInput<'t, T: Element> {
    Raw(Var<'t, T>),
    Projected(Var<'t, T>),
}

/// Runs `cell` over the time indices `order` from `state`, reading `x(t)`, with `noise` on
/// the state. Returns each step's output `(t, out_t)` in order, and the state after the last
/// step. An unmasked step's output is the same variable as its new state part 0.
pub(crate) fn run_steps<'t, T: Element, C: Cell<T>>(
    cell: &C,
    s: &Session<'t, '_, T>,
    x: impl Fn(usize) -> StepInput<'t, T>,
    mut state: State<'t, T>,
    lengths: Option<&[usize]>,
    order: impl Iterator<Item = usize>,
    noise: &StateNoise<T>,
) -> (Vec<(usize, Var<'t, T>)>, State<'t, T>) {
    let mut outs = Vec::new();
    for t in order {
        let read = noise.read(&state);
        let next = match x(t) {
            StepInput::Raw(x) => cell.step(s, x, &read),
            StepInput::Projected(p) => cell.step_projected(s, p, &read),
        };
        let next = noise.update(t, &state, next);
        match lengths {
            Some(lengths) if masked(Some(lengths), t) => {
                state = next
                    .iter()
                    .zip(&state)
                    .map(|(&new, &old)| {
                        new.where_mask(&active_mask(lengths, t, new.shape()[1]), old)
                    })
                    .collect();
                outs.push((
                    t,
                    next[0].mask(&active_mask(lengths, t, next[0].shape()[1])),
                ));
            }
            _ => {
                outs.push((t, next[0]));
                state = next;
            }
        }
    }
    (outs, state)
}

/// One direction of one layer on the tape: `cell` over `x` `[T, B, input]` from `state`,
/// its input projection made for all steps at once, with `noise` on the state. Returns the
/// outputs `[T, B, H]` (zero past each row's length) and the final state; `reverse` runs each
/// row from its end.
pub(crate) fn stepped<'t, T: Element, C: Cell<T>>(
    cell: &C,
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    state: State<'t, T>,
    lengths: Option<&[usize]>,
    reverse: bool,
    noise: StateNoise<T>,
) -> (Var<'t, T>, State<'t, T>) {
    let shape = x.shape();
    let (steps, batch) = (shape[0], shape[1]);
    let rows = StepRows::new(cell, s, x.reshape(&[steps * batch, shape[2]]), batch);
    let input = |t: usize| rows.at(t);
    let (mut outs, state) = if reverse {
        run_steps(cell, s, input, state, lengths, (0..steps).rev(), &noise)
    } else {
        run_steps(cell, s, input, state, lengths, 0..steps, &noise)
    };
    outs.sort_by_key(|&(t, _)| t);
    let outs: Vec<Var<'t, T>> = outs.into_iter().map(|(_, v)| v).collect();
    (stack(&outs, 0), state)
}
