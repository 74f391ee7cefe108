//! The per-row gate arithmetic of the fused kernels: one pass over a row's gates that applies
//! the nonlinearities and updates the state (forward), and one that turns the state's
//! gradient into the gates' pre-activation gradients (backward). Each kind saves in its
//! `saved` row exactly what its backward reads. The row functions are inlined into their
//! callers' loops, which run compiled for the CPU's widest vectors.

use crate::rnn::{CellKind, Nonlinearity};
use recur_tape::Element;

/// Values saved per row and step, in units of the hidden size.
pub(super) fn saved_width(kind: CellKind) -> usize {
    match kind {
        CellKind::Rnn(_) => 1,
        // i, f, g, o activated, tanh(c) (c itself is the next step's previous state).
        CellKind::Lstm => 5,
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

#[inline(always)]
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
            let (gates, tanh_c) = saved[..5 * h].split_at_mut(4 * h);
            add_into(gates, &xg[..4 * h], &hg[..4 * h]);
            T::sigmoid_slice(&mut gates[..2 * h]);
            T::tanh_slice(&mut gates[2 * h..3 * h]);
            T::sigmoid_slice(&mut gates[3 * h..]);
            let (i, f, g, o) = split4(gates, h);
            let (h_state, c_state) = state[..2 * h].split_at_mut(h);
            for j in 0..h {
                let c = f[j] * c_state[j] + i[j] * g[j];
                tanh_c[j] = c;
                c_state[j] = c;
            }
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
            match b_hh {
                Some(b) => {
                    let (b_rz, b_n) = b[..3 * h].split_at(2 * h);
                    for (((v, &x), &hg), &b) in rz.iter_mut().zip(x_rz).zip(h_rz).zip(b_rz) {
                        *v = x + (hg + b);
                    }
                    add_into(hn, h_n, b_n);
                }
                None => {
                    add_into(rz, x_rz, h_rz);
                    hn.copy_from_slice(h_n);
                }
            }
            T::sigmoid_slice(rz);
            let (r, z) = rz.split_at(h);
            for (((n, &x), &r), &hn) in n.iter_mut().zip(&xg[2 * h..3 * h]).zip(r).zip(&*hn) {
                *n = x + r * hn;
            }
            T::tanh_slice(n);
            for ((s, &z), &n) in state[..h].iter_mut().zip(z).zip(&*n) {
                *s = n + z * (*s - n);
            }
        }
    }
}

/// `out` ← a + b.
#[inline(always)]
fn add_into<T: Element>(out: &mut [T], a: &[T], b: &[T]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
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
