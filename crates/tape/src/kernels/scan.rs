//! The linear recurrence h_t = a_t ⊙ h_{t−1} + b_t over `[T, B, W]` sequences (W channels a
//! row, real or complex pairs) and its reverse scan for backward: sequential in time,
//! vectorized across the B·W channels of a step, with per-row lengths and either direction.

use super::simd::widest;
use crate::Element;

/// How a scan runs over `[steps, batch, width]` values. `width` counts elements, so a
/// complex scan's width is twice its channels (real and imaginary parts interleaved).
#[derive(Clone, Copy, Debug)]
pub struct ScanLayout<'a> {
    /// Time steps T.
    pub steps: usize,
    /// Rows B.
    pub batch: usize,
    /// Elements per row and step.
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

/// Channels a thread takes at the least: fewer are not worth starting a thread for.
const MIN_CHANNELS_PER_THREAD: usize = 4096;
/// Channel blocks start at multiples of this (64 bytes of f32), so no two threads write
/// the same cache line.
const BLOCK_ALIGN: usize = 16;

/// Runs `f` on contiguous blocks of the `n` channels of a step, on up to `threads` threads
/// (the caller runs the first block).
fn on_channel_blocks(n: usize, threads: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = threads.min(n / MIN_CHANNELS_PER_THREAD).max(1);
    if threads == 1 {
        return f(0, n);
    }
    let per = n.div_ceil(threads).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    let f = &f;
    std::thread::scope(|scope| {
        for k in 1..threads {
            let (lo, hi) = ((k * per).min(n), ((k + 1) * per).min(n));
            scope.spawn(move || f(lo, hi));
        }
        f(0, per.min(n));
    });
}

/// A buffer the threads of one scan write through at once, each in its own channels.
struct Shared<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: `Shared` is only a pointer to a `Vec`'s values that outlives every thread of the
// scan (`std::thread::scope`); the threads reach disjoint elements (see `Shared::slice`).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn new(values: &mut [T]) -> Self {
        Shared {
            ptr: values.as_mut_ptr(),
            len: values.len(),
        }
    }

    /// Elements `start..start + len`.
    ///
    /// # Safety
    /// No other live slice from this buffer, on any thread, overlaps the range: each
    /// thread asks only for its own channels, and a thread holds two slices of it only for
    /// different steps.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "scan: slice out of its buffer");
        // SAFETY: in bounds (asserted), and not aliased (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

impl ScanLayout<'_> {
    /// The part of row `r` inside channels `lo..hi`, as columns of the row.
    fn columns(&self, r: usize, lo: usize, hi: usize) -> Option<(usize, usize)> {
        let (start, end) = (lo.max(r * self.width), hi.min((r + 1) * self.width));
        (start < end).then(|| (start - r * self.width, end - r * self.width))
    }

    /// The rows with channels inside `lo..hi`.
    fn rows_of(&self, lo: usize, hi: usize) -> std::ops::Range<usize> {
        lo / self.width..hi.div_ceil(self.width)
    }
}

/// h_t = a_t ⊙ h_{t−1} + b_t. `h0` (`[batch, width]`) is the state before each row's first
/// step, zeros if `None`; `h` receives every step's state (zeros past a row's length).
/// Channels are split into blocks over up to `threads` threads.
pub fn scan_forward<T: Element>(
    lay: &ScanLayout<'_>,
    a: &[T],
    b: &[T],
    h0: Option<&[T]>,
    h: &mut [T],
    threads: usize,
) {
    let (w, n) = (lay.width, lay.row());
    assert_eq!(h.len(), lay.steps * n, "scan: output size");
    assert!(a.len() >= if lay.shared_a { w } else { lay.steps * n } && b.len() == h.len());
    let zeros = vec![T::zero(); w];
    let out = Shared::new(h);
    on_channel_blocks(n, threads, |lo, hi| {
        widest(
            #[inline(always)]
            || {
                for i in 0..lay.steps {
                    let t = lay.step(i);
                    for r in lay.rows_of(lo, hi) {
                        let Some((j0, j1)) = lay.columns(r, lo, hi) else {
                            continue;
                        };
                        let at = t * n + r * w;
                        // SAFETY: this block's channels of step t; `prev` is another step.
                        let cur = unsafe { out.slice(at + j0, j1 - j0) };
                        if !lay.active(r, t) {
                            cur.fill(T::zero());
                            continue;
                        }
                        let prev: &[T] = match lay.previous(r, t) {
                            // SAFETY: this block's channels of step p ≠ t.
                            Some(p) => unsafe { out.slice(p * n + r * w + j0, j1 - j0) },
                            None => &initial(h0, &zeros, r)[j0..j1],
                        };
                        let aa = &a[lay.a_offset(r, t) + j0..][..j1 - j0];
                        let bb = &b[at + j0..at + j1];
                        if lay.complex {
                            complex_step(cur, aa, prev, bb);
                        } else {
                            real_step(cur, aa, prev, bb);
                        }
                    }
                }
            },
        )
    });
}

/// Row `r`'s state before its first step: its row of `h0`, or `zeros` (one row long).
#[inline(always)]
fn initial<'a, T>(h0: Option<&'a [T]>, zeros: &'a [T], r: usize) -> &'a [T] {
    let w = zeros.len();
    h0.map_or(zeros, |h0| &h0[r * w..(r + 1) * w])
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
/// shared `a` is summed over steps and rows (row by row, then over rows in order), so the
/// result does not depend on `threads`.
pub fn scan_backward<T: Element>(
    lay: &ScanLayout<'_>,
    a: &[T],
    h0: Option<&[T]>,
    h: &[T],
    dh: &[T],
    threads: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (w, n) = (lay.width, lay.row());
    let total = lay.steps * n;
    assert!(h.len() == total && dh.len() == total, "scan: gradient size");
    let mut da = vec![T::zero(); if lay.shared_a { n } else { total }];
    let mut db = vec![T::zero(); total];
    let mut carry = vec![T::zero(); n];
    let zeros = vec![T::zero(); w];
    let (da_out, db_out, carry_out) = (
        Shared::new(&mut da),
        Shared::new(&mut db),
        Shared::new(&mut carry),
    );
    on_channel_blocks(n, threads, |lo, hi| {
        widest(
            #[inline(always)]
            || {
                for i in (0..lay.steps).rev() {
                    let t = lay.step(i);
                    for r in lay.rows_of(lo, hi) {
                        let Some((j0, j1)) = lay.columns(r, lo, hi) else {
                            continue;
                        };
                        if !lay.active(r, t) {
                            continue;
                        }
                        let (at, len) = (t * n + r * w + j0, j1 - j0);
                        let prev = match lay.previous(r, t) {
                            Some(p) => &h[p * n + r * w + j0..][..len],
                            None => &initial(h0, &zeros, r)[j0..j1],
                        };
                        let aa = &a[lay.a_offset(r, t) + j0..][..len];
                        let da_at = if lay.shared_a { r * w + j0 } else { at };
                        // SAFETY: each slice is this block's channels of one step (or of the
                        // carried gradient, or of row r's ∂a sum), in different buffers.
                        let args = unsafe {
                            (
                                db_out.slice(at, len),
                                da_out.slice(da_at, len),
                                carry_out.slice(r * w + j0, len),
                            )
                        };
                        if lay.complex {
                            complex_back(args, aa, prev, &dh[at..at + len]);
                        } else {
                            real_back(args, aa, prev, &dh[at..at + len]);
                        }
                    }
                }
            },
        )
    });
    if lay.shared_a {
        // The rows' sums, added over rows in order.
        da = widest(
            #[inline(always)]
            || {
                let mut sum = da[..w].to_vec();
                for r in 1..lay.batch {
                    for (s, &v) in sum.iter_mut().zip(&da[r * w..(r + 1) * w]) {
                        *s += v;
                    }
                }
                sum
            },
        );
    }
    (da, db, carry)
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
