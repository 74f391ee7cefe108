//! The linear recurrence h_t = a_t ⊙ h_{t−1} + b_t over `[T, B, W]` sequences (W channels a
//! row, real or complex pairs) and its reverse scan for backward: sequential in time,
//! vectorized across the B·W channels of a step, with per-row lengths and either direction.

use super::simd::widest;
use crate::Element;

/// How a scan runs over `[steps, batch, width]` values. `width` counts elements, so a
/// complex scan's width is twice its channels (real and imaginary parts interleaved).
#[derive(Clone, Copy, Debug)]
pub struct ScanLayout<'a> {
    pub steps: usize,
    pub batch: usize,
    pub width: usize,
    /// Each row's length: steps at or past it output zero and leave the state alone.
    pub lengths: Option<&'a [usize]>,
    /// Run from each row's last step to its first (a bidirectional layer's backward half).
    pub reverse: bool,
    /// Channels are complex numbers (re, im) and a_t ⊙ h_{t−1} is a complex product.
    pub complex: bool,
    /// `a` holds one value per channel (`width` values) for every step and row, instead of
    /// one per element of the sequence.
    pub shared_a: bool,
}

impl ScanLayout<'_> {
    fn row(&self) -> usize {
        self.batch * self.width
    }

    /// Whether step `t` is inside row `b`.
    fn active(&self, b: usize, t: usize) -> bool {
        match self.lengths {
            Some(l) => t < l[b],
            None => true,
        }
    }

    /// The step whose output row `b` reads as h_{t−1} at step `t`, or `None` at its first
    /// step (which reads h0).
    fn previous(&self, b: usize, t: usize) -> Option<usize> {
        if self.reverse {
            let end = self.lengths.map_or(self.steps, |l| l[b]);
            (t + 1 < end).then_some(t + 1)
        } else {
            t.checked_sub(1)
        }
    }

    /// Step `i` of the scan's order.
    fn step(&self, i: usize) -> usize {
        if self.reverse {
            self.steps - 1 - i
        } else {
            i
        }
    }

    /// Where step `t`, row `b` starts in `a`.
    fn a_offset(&self, b: usize, t: usize) -> usize {
        if self.shared_a {
            0
        } else {
            t * self.row() + b * self.width
        }
    }
}

/// h_t = a_t ⊙ h_{t−1} + b_t. `h0` (`[batch, width]`) is the state before each row's first
/// step, zeros if `None`; `h` receives every step's state (zeros past a row's length).
pub fn scan_forward<T: Element>(
    lay: &ScanLayout<'_>,
    a: &[T],
    b: &[T],
    h0: Option<&[T]>,
    h: &mut [T],
) {
    let (w, n) = (lay.width, lay.row());
    assert_eq!(h.len(), lay.steps * n, "scan: output size");
    let zeros = vec![T::zero(); if h0.is_none() { w } else { 0 }];
    widest(
        #[inline(always)]
        || {
            for i in 0..lay.steps {
                let t = lay.step(i);
                for r in 0..lay.batch {
                    let at = t * n + r * w;
                    if !lay.active(r, t) {
                        h[at..at + w].fill(T::zero());
                        continue;
                    }
                    let aa = &a[lay.a_offset(r, t)..][..w];
                    let bb = &b[at..at + w];
                    let (out, prev): (&mut [T], &[T]) = match lay.previous(r, t) {
                        None => (
                            &mut h[at..at + w],
                            h0.map_or(&zeros[..], |h0| &h0[r * w..(r + 1) * w]),
                        ),
                        Some(p) if p < t => {
                            let (lo, hi) = h.split_at_mut(t * n);
                            (&mut hi[r * w..(r + 1) * w], &lo[p * n + r * w..][..w])
                        }
                        Some(p) => {
                            let (lo, hi) = h.split_at_mut(p * n);
                            (&mut lo[at..at + w], &hi[r * w..(r + 1) * w])
                        }
                    };
                    if lay.complex {
                        complex_step(out, aa, prev, bb);
                    } else {
                        real_step(out, aa, prev, bb);
                    }
                }
            }
        },
    );
}

#[inline(always)]
fn real_step<T: Element>(out: &mut [T], a: &[T], prev: &[T], b: &[T]) {
    for j in 0..out.len() {
        out[j] = a[j] * prev[j] + b[j];
    }
}

#[inline(always)]
fn complex_step<T: Element>(out: &mut [T], a: &[T], prev: &[T], b: &[T]) {
    for j in (0..out.len()).step_by(2) {
        let (ar, ai, pr, pi) = (a[j], a[j + 1], prev[j], prev[j + 1]);
        out[j] = ar * pr - ai * pi + b[j];
        out[j + 1] = ar * pi + ai * pr + b[j + 1];
    }
}

/// The gradients of a scan from ∂loss/∂h (`dh`), in one reverse pass:
/// g_t = ∂h_t + a_{t+1}ᴴ ⊙ g_{t+1}, ∂b_t = g_t, ∂a_t = g_t ⊙ h_{t−1}ᴴ (ᴴ conjugates complex
/// values), ∂h0 = a_1ᴴ ⊙ g_1. `h` is the forward's output. Returns (∂a, ∂b, ∂h0); ∂a of a
/// shared `a` is summed over steps and rows (row by row, then over rows in order).
pub fn scan_backward<T: Element>(
    lay: &ScanLayout<'_>,
    a: &[T],
    h0: Option<&[T]>,
    h: &[T],
    dh: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (w, n) = (lay.width, lay.row());
    let total = lay.steps * n;
    let mut da = vec![T::zero(); if lay.shared_a { n } else { total }];
    let mut db = vec![T::zero(); total];
    let mut carry = vec![T::zero(); n];
    let zeros = vec![T::zero(); w];
    widest(
        #[inline(always)]
        || {
            for i in (0..lay.steps).rev() {
                let t = lay.step(i);
                for r in 0..lay.batch {
                    if !lay.active(r, t) {
                        continue;
                    }
                    let at = t * n + r * w;
                    let prev = match lay.previous(r, t) {
                        Some(p) => &h[p * n + r * w..][..w],
                        None => h0.map_or(&zeros[..], |h0| &h0[r * w..(r + 1) * w]),
                    };
                    let aa = &a[lay.a_offset(r, t)..][..w];
                    let da_row = if lay.shared_a {
                        &mut da[r * w..(r + 1) * w]
                    } else {
                        &mut da[at..at + w]
                    };
                    let args = (&mut db[at..at + w], da_row, &mut carry[r * w..(r + 1) * w]);
                    if lay.complex {
                        complex_back(args, aa, prev, &dh[at..at + w]);
                    } else {
                        real_back(args, aa, prev, &dh[at..at + w]);
                    }
                }
            }
        },
    );
    let dh0 = widest(
        #[inline(always)]
        || {
            if lay.shared_a {
                // The rows' sums, added over rows in order.
                let mut sum = da[..w].to_vec();
                for r in 1..lay.batch {
                    for (s, &v) in sum.iter_mut().zip(&da[r * w..(r + 1) * w]) {
                        *s += v;
                    }
                }
                da = sum;
            }
            carry
        },
    );
    (da, db, dh0)
}

type BackRow<'a, T> = (&'a mut [T], &'a mut [T], &'a mut [T]);

#[inline(always)]
fn real_back<T: Element>((db, da, carry): BackRow<'_, T>, a: &[T], prev: &[T], dh: &[T]) {
    for j in 0..db.len() {
        let g = dh[j] + carry[j];
        db[j] = g;
        da[j] += g * prev[j];
        carry[j] = a[j] * g;
    }
}

#[inline(always)]
fn complex_back<T: Element>((db, da, carry): BackRow<'_, T>, a: &[T], prev: &[T], dh: &[T]) {
    for j in (0..db.len()).step_by(2) {
        let (gr, gi) = (dh[j] + carry[j], dh[j + 1] + carry[j + 1]);
        let (ar, ai, pr, pi) = (a[j], a[j + 1], prev[j], prev[j + 1]);
        db[j] = gr;
        db[j + 1] = gi;
        da[j] += gr * pr + gi * pi;
        da[j + 1] += gi * pr - gr * pi;
        carry[j] = ar * gr + ai * gi;
        carry[j + 1] = ar * gi - ai * gr;
    }
}
