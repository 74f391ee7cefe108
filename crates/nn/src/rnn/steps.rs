//! The time loop of one direction of one layer: steps a cell over given time indices,
//! holding the state of rows past their length and zeroing their outputs. Shared by the plain
//! layer and the checkpointed op's recomputation, so both record exactly the same ops.

use super::cell::{Cell, State};
use crate::session::Session;
use recur_tape::{Element, Tensor, Var};

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

/// Runs `cell` over the time indices `order` from `state`, reading `x(t)`. Returns each
/// step's output `(t, out_t)` in order, and the state after the last step. An unmasked step's
/// output is the same variable as its new state part 0.
pub(crate) fn run_steps<'t, T: Element, C: Cell<T>>(
    cell: &C,
    s: &Session<'t, '_, T>,
    x: impl Fn(usize) -> Var<'t, T>,
    mut state: State<'t, T>,
    lengths: Option<&[usize]>,
    order: impl Iterator<Item = usize>,
) -> (Vec<(usize, Var<'t, T>)>, State<'t, T>) {
    let mut outs = Vec::new();
    for t in order {
        let next = cell.step(s, x(t), &state);
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
