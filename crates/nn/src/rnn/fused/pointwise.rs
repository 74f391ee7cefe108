//! The per-row gate arithmetic of the fused kernels: one pass over a row's gates that applies
//! the nonlinearities and updates the state (forward), and one that turns the state's
//! gradient into the gates' pre-activation gradients (backward). Each kind saves in its
//! `saved` row exactly what its backward reads.

use crate::rnn::{CellKind, Nonlinearity};
use recur_tape::Element;

/// Values saved per row and step, in units of the hidden size.
pub(super) fn saved_width(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn(_) => 1,
        // i, f, g, o activated, c, tanh(c).
        CellKind::Lstm => 6,
        // r, z, n activated, W_hn·h + b_hn.
        CellKind::Gru => 4,
    }
}

/// Gate rows per hidden unit.
pub(super) fn gate_count(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn(_) => 1,
        CellKind::Lstm => 4,
        CellKind::Gru => 3,
    }
}

/// State parts (h, plus c for the LSTM).
pub(super) fn state_parts(kind: CellKind) -> usize {
    match kind {
        CellKind::Lstm => 2,
        _ => 1,
    }
}

/// One row of one step. `xg` is the input part (with the biases the kind folds into it),
/// `hg` the raw recurrent product W_hh·h, `b_hh` the recurrent bias when the kind keeps it
/// apart (GRU). `state` is `[h, c]` for the row, updated in place; returns nothing, writes
/// `saved`.
pub(super) struct RowForward<'a, T> {
    pub xg: &'a [T],
    pub hg: &'a [T],
    pub b_hh: Option<&'a [T]>,
    pub state: &'a mut [T],
    pub saved: &'a mut [T],
}

pub(super) fn forward_row<T: Element>(kind: CellKind, hidden: usize, row: RowForward<'_, T>) {
    let RowForward {
        xg,
        hg,
        b_hh,
        state,
        saved,
    } = row;
    let h = hidden;
    match kind {
        CellKind::Rnn(act) => {
            for j in 0..h {
                saved[j] = xg[j] + hg[j];
            }
            match act {
                Nonlinearity::Tanh => T::tanh_slice(saved),
                Nonlinearity::Relu => saved.iter_mut().for_each(|v| *v = v.max(T::zero())),
            }
            state.copy_from_slice(saved);
        }
        CellKind::Lstm => {
            for j in 0..4 * h {
                saved[j] = xg[j] + hg[j];
            }
            T::sigmoid_slice(&mut saved[..2 * h]);
            T::tanh_slice(&mut saved[2 * h..3 * h]);
            T::sigmoid_slice(&mut saved[3 * h..4 * h]);
            let (gates, cells) = saved.split_at_mut(4 * h);
            let (c_new, tanh_c) = cells.split_at_mut(h);
            let (h_state, c_state) = state.split_at_mut(h);
            for j in 0..h {
                let c = gates[h + j] * c_state[j] + gates[j] * gates[2 * h + j];
                c_new[j] = c;
                c_state[j] = c;
            }
            tanh_c.copy_from_slice(c_new);
            T::tanh_slice(tanh_c);
            for j in 0..h {
                h_state[j] = gates[3 * h + j] * tanh_c[j];
            }
        }
        CellKind::Gru => {
            let bias = |j: usize| b_hh.map_or(T::zero(), |b| b[j]);
            for j in 0..2 * h {
                saved[j] = xg[j] + (hg[j] + bias(j));
            }
            T::sigmoid_slice(&mut saved[..2 * h]);
            let (rzn, hn) = saved.split_at_mut(3 * h);
            for j in 0..h {
                hn[j] = hg[2 * h + j] + bias(2 * h + j);
                rzn[2 * h + j] = xg[2 * h + j] + rzn[j] * hn[j];
            }
            T::tanh_slice(&mut rzn[2 * h..]);
            for j in 0..h {
                let (z, n) = (rzn[h + j], rzn[2 * h + j]);
                state[j] = n + z * (state[j] - n);
            }
        }
    }
}

/// One row of one step backward. `d_state` holds ∂/∂[h, c] of the step's new state on entry
/// and the part that flows straight to the previous state on exit (the recurrent product's
/// share is added by the caller). Writes the pre-activation gradients of the input part
/// (`d_xg`) and, for the GRU, of the recurrent part (`d_hg`; the other kinds share `d_xg`).
pub(super) struct RowBackward<'a, T> {
    pub saved: &'a [T],
    pub prev: &'a [T],
    pub d_state: &'a mut [T],
    pub d_xg: &'a mut [T],
    pub d_hg: Option<&'a mut [T]>,
}

pub(super) fn backward_row<T: Element>(kind: CellKind, hidden: usize, row: RowBackward<'_, T>) {
    let RowBackward {
        saved,
        prev,
        d_state,
        d_xg,
        d_hg,
    } = row;
    let h = hidden;
    let one = T::one();
    match kind {
        CellKind::Rnn(act) => {
            for j in 0..h {
                let y = saved[j];
                let slope = match act {
                    Nonlinearity::Tanh => one - y * y,
                    Nonlinearity::Relu => {
                        if y > T::zero() {
                            one
                        } else {
                            T::zero()
                        }
                    }
                };
                d_xg[j] = d_state[j] * slope;
                d_state[j] = T::zero();
            }
        }
        CellKind::Lstm => {
            let (dh, dc) = d_state.split_at_mut(h);
            let c_prev = &prev[h..2 * h];
            for j in 0..h {
                let (i, f, g, o) = (saved[j], saved[h + j], saved[2 * h + j], saved[3 * h + j]);
                let tc = saved[5 * h + j];
                let d_o = dh[j] * tc;
                let d_c = dc[j] + dh[j] * o * (one - tc * tc);
                d_xg[j] = d_c * g * i * (one - i);
                d_xg[h + j] = d_c * c_prev[j] * f * (one - f);
                d_xg[2 * h + j] = d_c * i * (one - g * g);
                d_xg[3 * h + j] = d_o * o * (one - o);
                dc[j] = d_c * f;
                dh[j] = T::zero();
            }
        }
        CellKind::Gru => {
            let d_hg = d_hg.expect("the GRU keeps its recurrent gradient apart");
            for j in 0..h {
                let (r, z, n, hn) = (saved[j], saved[h + j], saved[2 * h + j], saved[3 * h + j]);
                let dh = d_state[j];
                let d_n = dh * (one - z) * (one - n * n);
                let d_r = d_n * hn * r * (one - r);
                let d_z = dh * (prev[j] - n) * z * (one - z);
                d_xg[j] = d_r;
                d_xg[h + j] = d_z;
                d_xg[2 * h + j] = d_n;
                d_hg[j] = d_r;
                d_hg[h + j] = d_z;
                d_hg[2 * h + j] = d_n * r;
                d_state[j] = dh * z;
            }
        }
    }
}
