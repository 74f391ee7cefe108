//! The per-row gate arithmetic of the fused kernels: one pass over a row's gates that applies
//! the nonlinearities and updates the state (forward), and one that turns the state's
//! gradient into the gates' pre-activation gradients (backward). Each kind saves in its
//! `saved` row exactly what its backward reads. The row functions are inlined into their
//! callers' loops, which run compiled for the CPU's widest vectors.

use crate::rnn::{CellKind, Nonlinearity};
use recur_tape::Element;
use std::mem::MaybeUninit;

/// Values saved per row and step, in units of the hidden size.
pub(crate) fn saved_width(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn(_) => 1,
        // i, f, g, o activated, tanh(c) (c itself is the next step's previous state).
        CellKind::Lstm => 5,
        // r, z, n activated, W_hn·h + b_hn.
        CellKind::Gru => 4,
    }
}

/// Gate rows per hidden unit.
pub(crate) fn gate_count(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn(_) => 1,
        CellKind::Lstm => 4,
        CellKind::Gru => 3,
    }
}

/// State parts (h, plus c for the LSTM).
pub(crate) fn state_parts(kind: CellKind) -> usize {
    match kind {
        CellKind::Lstm => 2,
        _ => 1,
    }
}

/// One row of one step. `xg` is the input part (with the biases the kind folds into it),
/// `hg` the raw recurrent product W_hh·h, `b_hh` the recurrent bias when the kind keeps it
/// apart (GRU). `state` is `[h, c]` for the row, updated in place; returns nothing, writes
/// every value of `saved` (which need not hold values before: its buffer is not
/// zero-filled first).
pub(crate) struct RowForward<'a, T> {
    pub xg: &'a [T],
    pub hg: &'a [T],
    pub b_hh: Option<&'a [T]>,
    pub state: &'a mut [T],
    pub saved: &'a mut [MaybeUninit<T>],
}

/// Writes `value(j)` into every slot `j` of `out`; returns them as the values written.
#[inline(always)]
pub(super) fn fill<T>(out: &mut [MaybeUninit<T>], mut value: impl FnMut(usize) -> T) -> &mut [T] {
    for (j, slot) in out.iter_mut().enumerate() {
        slot.write(value(j));
    }
    // SAFETY: every slot has just been written, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(std::ptr::from_mut(out) as *mut [T]) }
}

#[inline(always)]
pub(crate) fn forward_row<T: Element>(kind: CellKind, hidden: usize, row: RowForward<'_, T>) {
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
            let saved = fill(&mut saved[..h], |j| xg[j] + hg[j]);
            match act {
                Nonlinearity::Tanh => T::tanh_slice(saved),
                Nonlinearity::Relu => saved.iter_mut().for_each(|v| *v = v.max(T::zero())),
            }
            state.copy_from_slice(saved);
        }
        CellKind::Lstm => {
            let (gates, tanh_c) = saved[..5 * h].split_at_mut(4 * h);
            let gates = fill(gates, |j| xg[j] + hg[j]);
            T::sigmoid_slice(&mut gates[..2 * h]);
            T::tanh_slice(&mut gates[2 * h..3 * h]);
            T::sigmoid_slice(&mut gates[3 * h..]);
            let (i, f, g, o) = split4(gates, h);
            let (h_state, c_state) = state[..2 * h].split_at_mut(h);
            let tanh_c = fill(tanh_c, |j| {
                let c = f[j] * c_state[j] + i[j] * g[j];
                c_state[j] = c;
                c
            });
            T::tanh_slice(tanh_c);
            for ((h, &o), &tc) in h_state.iter_mut().zip(o).zip(&*tanh_c) {
                *h = o * tc;
            }
        }
        CellKind::Gru => {
            let (rzn, hn) = saved[..4 * h].split_at_mut(3 * h);
            let hg = &hg[..3 * h];
            // hn = W_hn·h + b_hn; r and z take their part of b_hh too.
            let (rz, n) = rzn.split_at_mut(2 * h);
            let (x_rz, h_rz, h_n) = (&xg[..2 * h], &hg[..2 * h], &hg[2 * h..]);
            let (rz, hn) = match b_hh {
                Some(b) => {
                    let (b_rz, b_n) = b[..3 * h].split_at(2 * h);
                    (
                        fill(rz, |j| x_rz[j] + (h_rz[j] + b_rz[j])),
                        fill(hn, |j| h_n[j] + b_n[j]),
                    )
                }
                None => (fill(rz, |j| x_rz[j] + h_rz[j]), fill(hn, |j| h_n[j])),
            };
            T::sigmoid_slice(rz);
            let (r, z) = rz.split_at(h);
            let x_n = &xg[2 * h..3 * h];
            let n = fill(n, |j| x_n[j] + r[j] * hn[j]);
            T::tanh_slice(n);
            for ((s, &z), &n) in state[..h].iter_mut().zip(z).zip(&*n) {
                *s = n + z * (*s - n);
            }
        }
    }
}

/// The four gate blocks of `h` values each.
#[inline(always)]
fn split4<T>(v: &[T], h: usize) -> (&[T], &[T], &[T], &[T]) {
    let (a, rest) = v[..4 * h].split_at(h);
    let (b, rest) = rest.split_at(h);
    let (c, d) = rest.split_at(h);
    (a, b, c, d)
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

#[inline(always)]
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
            let (dh, dc) = d_state[..2 * h].split_at_mut(h);
            let c_prev = &prev[h..2 * h];
            let (i, f, g, o) = split4(saved, h);
            let tanh_c = &saved[4 * h..5 * h];
            let (d_i, rest) = d_xg[..4 * h].split_at_mut(h);
            let (d_f, rest) = rest.split_at_mut(h);
            let (d_g, d_o) = rest.split_at_mut(h);
            for j in 0..h {
                let (i, f, g, o, tc) = (i[j], f[j], g[j], o[j], tanh_c[j]);
                let d_c = dc[j] + dh[j] * o * (one - tc * tc);
                d_i[j] = d_c * g * i * (one - i);
                d_f[j] = d_c * c_prev[j] * f * (one - f);
                d_g[j] = d_c * i * (one - g * g);
                d_o[j] = dh[j] * tc * o * (one - o);
                dc[j] = d_c * f;
                dh[j] = T::zero();
            }
        }
        CellKind::Gru => {
            let d_hg = d_hg.expect("the GRU keeps its recurrent gradient apart");
            let (r, z, n, hn) = split4(saved, h);
            let (prev, d_state) = (&prev[..h], &mut d_state[..h]);
            let (dx_r, rest) = d_xg[..3 * h].split_at_mut(h);
            let (dx_z, dx_n) = rest.split_at_mut(h);
            let (dh_r, rest) = d_hg[..3 * h].split_at_mut(h);
            let (dh_z, dh_n) = rest.split_at_mut(h);
            for j in 0..h {
                let (r, z, n, hn) = (r[j], z[j], n[j], hn[j]);
                let dh = d_state[j];
                let d_n = dh * (one - z) * (one - n * n);
                let d_r = d_n * hn * r * (one - r);
                let d_z = dh * (prev[j] - n) * z * (one - z);
                dx_r[j] = d_r;
                dx_z[j] = d_z;
                dx_n[j] = d_n;
                dh_r[j] = d_r;
                dh_z[j] = d_z;
                dh_n[j] = d_n * r;
                d_state[j] = dh * z;
            }
        }
    }
}
