//! The kernels under a bf16 [`PackedMatrix<f32>`](super::PackedMatrix): C ← A·panel (+ what
//! `AddTo` says) for a block of A's rows and one panel of B, with bf16 operands and f32 sums.
//! B comes as pairs of bf16 values in a `u32` (row 2q in the low half, 2q + 1 in the high
//! half), as AVX512_BF16 takes them; so does A for the native kernel, while the portable
//! kernel reads A's rounded values as f32 (`bf16_operands.rs` makes both).
//!
//! Every kernel computes each output as `vdpbf16ps` does (Intel SDM): the sum starts at +0;
//! for each pair it adds the odd product, then the even one, each addition rounded to
//! nearest even and a subnormal result flushed to zero of its sign; the block's sum is then
//! added to C (or to a bias row) with an ordinary f32 addition. The native kernel runs
//! `vdpbf16ps` where the CPU has AVX512_BF16. The portable kernel does the same arithmetic
//! with exactly rounded multiply-adds (a bf16 product is exact in f32); when the operands'
//! exponents show that no sum can be subnormal ([`flush_needed`]) it skips the flushes,
//! otherwise it flushes every sum. Both give the same bits on every machine.

// The kernels take raw matrix descriptions (pointers, sizes, strides), as BLAS does.
#![allow(clippy::too_many_arguments)]

use super::packed::AddTo;
use super::simd::widest;
use std::cell::Cell;

/// Columns of B per panel (two AVX-512 vectors of f32).
pub const BF16_WIDTH: usize = 32;

thread_local! {
    /// The kernel this thread's bf16 packings use, if not the best (`Bf16Kernel::run_with`).
    static CHOSEN: Cell<Option<Bf16Kernel>> = const { Cell::new(None) };
}

/// Which kernel runs a bf16 product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` (AVX512_BF16).
    Native,
    /// Exactly rounded f32 multiply-adds, on any CPU.
    Portable,
}

impl Bf16Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Self {
        if Self::Native.available() {
            Self::Native
        } else {
            Self::Portable
        }
    }

    /// The kernel bf16 matrices packed on this thread now run: [`best`](Self::best), or the
    /// one [`run_with`](Self::run_with) chose.
    pub fn current() -> Self {
        CHOSEN.with(Cell::get).unwrap_or_else(Self::best)
    }

    /// Runs `f` with the bf16 matrices it packs on this thread running `self` (which must run
    /// on this CPU): tests compare whole computations on both kernels this way. Matrices
    /// packed earlier (a weight's cached copy) keep their kernel.
    pub fn run_with<R>(self, f: impl FnOnce() -> R) -> R {
        assert!(self.available(), "bf16: this CPU cannot run {self:?}");
        let previous = CHOSEN.with(|c| c.replace(Some(self)));
        let result = f();
        CHOSEN.with(|c| c.set(previous));
        result
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Bf16Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Native => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Native => false,
        }
    }
}

/// Whether a product of operands whose nonzero values have at least these biased exponents
/// can meet a subnormal sum. Each product of bf16 values (8 significant bits) is a multiple
/// of 2^(e_a + e_b − 254 − 14), so every sum, rounded or not, is too: no nonzero sum falls
/// below f32's least normal 2^−126 unless e_a + e_b < 142.
pub fn flush_needed(least_a: u8, least_b: u8) -> bool {
    u32::from(least_a) + u32::from(least_b) < 142
}

/// A kernel (unsafe: the caller guarantees the CPU feature and the extents): for `m` rows of
/// A (`pairs` pairs from `a`, rows `lda` words apart: a word a pair for the native kernel, an
/// f32 a value for the portable one) and a `pairs × BF16_WIDTH` panel (its rows contiguous,
/// aligned to 64 bytes), C (`m`
/// rows, first `cols` columns, row stride `ldc`) ← A·panel + what `add` says. `flush`: the
/// portable kernel must flush subnormal sums (the native one always does).
pub(crate) type Bf16PanelFn = unsafe fn(
    m: usize,
    a: *const u32,
    lda: usize,
    pairs: usize,
    panel: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, f32>,
    flush: bool,
);

impl Bf16Kernel {
    pub(crate) fn function(self) -> Bf16PanelFn {
        match self {
            Bf16Kernel::Portable => portable,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Native => native,
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Native => unreachable!("no native bf16 kernel on this architecture"),
        }
    }
}

/// Writes one row's sums: C[j] ← sums[j] + what `add` says, for the first `cols` columns.
///
/// # Safety
/// `row` holds `cols` values.
#[inline(always)]
unsafe fn store_row(sums: &[f32; BF16_WIDTH], row: *mut f32, cols: usize, add: AddTo<'_, f32>) {
    for (j, &v) in sums.iter().enumerate().take(cols) {
        // SAFETY: the caller's contract: `row` holds `cols` values.
        unsafe {
            let out = row.add(j);
            *out = add.added(v, *out, j);
        }
    }
}

/// Rows of A the portable kernel keeps in registers at once, and columns of the panel (half
/// of it: 6 rows × 2 AVX2 vectors of sums, a pair's odd or even values and a broadcast fit
/// in 16 registers).
const PORTABLE_ROWS: usize = 4;
const PORTABLE_COLUMNS: usize = BF16_WIDTH / 2;

unsafe fn portable(
    m: usize,
    a: *const u32,
    lda: usize,
    pairs: usize,
    panel: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, f32>,
    flush: bool,
) {
    widest(
        #[inline(always)]
        || {
            for half in 0..BF16_WIDTH / PORTABLE_COLUMNS {
                let first = half * PORTABLE_COLUMNS;
                if first >= cols {
                    break;
                }
                let cols = PORTABLE_COLUMNS.min(cols - first);
                let add = match add {
                    AddTo::Row(row) => AddTo::Row(&row[first.min(row.len())..]),
                    other => other,
                };
                let mut row = 0;
                while row < m {
                    let rows = PORTABLE_ROWS.min(m - row);
                    // SAFETY: the caller's contract (`Bf16PanelFn`) covers rows
                    // `row..row + rows` and the panel's columns `first..first + cols`.
                    unsafe {
                        let (a, panel, c) =
                            (a.add(row * lda), panel.add(first), c.add(row * ldc + first));
                        let args = (a, lda, pairs, panel, c, ldc, cols, add);
                        match (rows, flush) {
                            (6, false) => portable_rows::<6, false>(args),
                            (6, true) => portable_rows::<6, true>(args),
                            (5, false) => portable_rows::<5, false>(args),
                            (5, true) => portable_rows::<5, true>(args),
                            (4, false) => portable_rows::<4, false>(args),
                            (4, true) => portable_rows::<4, true>(args),
                            (3, false) => portable_rows::<3, false>(args),
                            (3, true) => portable_rows::<3, true>(args),
                            (2, false) => portable_rows::<2, false>(args),
                            (2, true) => portable_rows::<2, true>(args),
                            (_, false) => portable_rows::<1, false>(args),
                            (_, true) => portable_rows::<1, true>(args),
                        }
                    }
                    row += rows;
                }
            }
        },
    )
}

/// `x`, or zero of its sign if it is subnormal (when `FLUSH`).
#[inline(always)]
fn flushed<const FLUSH: bool>(x: f32) -> f32 {
    if FLUSH && x.abs() < f32::MIN_POSITIVE {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// The arguments of `R` rows of the portable kernel over `PORTABLE_COLUMNS` of a panel: A's
/// rows, their stride, the pairs, the panel's first column, C's rows, their stride, the
/// columns to store and what to add.
type RowsArgs<'a> = (
    *const u32,
    usize,
    usize,
    *const u32,
    *mut f32,
    usize,
    usize,
    AddTo<'a, f32>,
);

/// `R` rows of the portable kernel, over `PORTABLE_COLUMNS` columns of the panel.
///
/// # Safety
/// As [`Bf16PanelFn`] for `R` rows and the columns given.
#[inline(always)]
unsafe fn portable_rows<const R: usize, const FLUSH: bool>(
    (a, lda, pairs, panel, c, ldc, cols, add): RowsArgs<'_>,
) {
    const W: usize = PORTABLE_COLUMNS;
    let mut sums = [[0.0f32; W]; R];
    for q in 0..pairs {
        // SAFETY: the caller's contract: the panel holds `pairs` rows of BF16_WIDTH pairs,
        // and these W columns of them.
        let b = unsafe { &*(panel.add(q * BF16_WIDTH) as *const [u32; W]) };
        // Every row's odd products, then every row's even ones: each sum still adds its
        // pair's odd product first, and only half the panel's values are held at a time.
        for half in [1, 0] {
            let mut values = [0.0f32; W];
            for j in 0..W {
                let bits = if half == 1 {
                    b[j] & 0xFFFF_0000
                } else {
                    b[j] << 16
                };
                values[j] = f32::from_bits(bits);
            }
            for (r, sums) in sums.iter_mut().enumerate() {
                // SAFETY: the caller's contract: row r of A holds `pairs` pairs of f32 values.
                let a = f32::from_bits(unsafe { *a.add(r * lda + 2 * q + half) });
                for j in 0..W {
                    sums[j] = flushed::<FLUSH>(a.mul_add(values[j], sums[j]));
                }
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        for (j, &v) in sums.iter().enumerate().take(cols) {
            // SAFETY: the caller's contract: C's row r holds these `cols` values.
            unsafe {
                let out = c.add(r * ldc + j);
                *out = add.added(v, *out, j);
            }
        }
    }
}

/// Rows of A the native kernel keeps in registers at once (16 sums, 2 panel vectors and a
/// broadcast pair of the 32 vector registers).
#[cfg(target_arch = "x86_64")]
const NATIVE_ROWS: usize = 8;

#[cfg(target_arch = "x86_64")]
unsafe fn native(
    m: usize,
    a: *const u32,
    lda: usize,
    pairs: usize,
    panel: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, f32>,
    _flush: bool,
) {
    // SAFETY: the caller's contract (`Bf16PanelFn`): the CPU has AVX512_BF16 (this kernel is
    // only handed out where `Bf16Kernel::Native.available()`), and rows `row..row + R` < m.
    unsafe {
        let mut row = 0;
        while row < m {
            let (a, c) = (a.add(row * lda), c.add(row * ldc));
            let rows = NATIVE_ROWS.min(m - row);
            match rows {
                8 => native_rows::<8>(a, lda, pairs, panel, c, ldc, cols, add),
                7 => native_rows::<7>(a, lda, pairs, panel, c, ldc, cols, add),
                6 => native_rows::<6>(a, lda, pairs, panel, c, ldc, cols, add),
                5 => native_rows::<5>(a, lda, pairs, panel, c, ldc, cols, add),
                4 => native_rows::<4>(a, lda, pairs, panel, c, ldc, cols, add),
                3 => native_rows::<3>(a, lda, pairs, panel, c, ldc, cols, add),
                2 => native_rows::<2>(a, lda, pairs, panel, c, ldc, cols, add),
                _ => native_rows::<1>(a, lda, pairs, panel, c, ldc, cols, add),
            }
            row += rows;
        }
    }
}

/// `R` rows of the native kernel.
///
/// # Safety
/// The CPU has AVX512_BF16; as [`Bf16PanelFn`] for `R` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn native_rows<const R: usize>(
    a: *const u32,
    lda: usize,
    pairs: usize,
    panel: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, f32>,
) {
    use std::arch::x86_64::*;
    const L: usize = BF16_WIDTH / 2;
    // SAFETY: the caller's contract: A's R rows of `pairs` pairs, the panel's `pairs` rows
    // of BF16_WIDTH pairs and C's R rows of `cols` values are inside their allocations.
    unsafe {
        let mut sums = [[_mm512_setzero_ps(); 2]; R];
        for q in 0..pairs {
            // Loads of their own (volatile, so never folded into `vdpbf16ps` as a memory
            // operand): Bochs 3.0, on which this kernel is checked against the portable one
            // (docs/bf16.md), scales that operand's compressed displacement wrongly.
            let b0 = std::ptr::read_volatile(panel.add(q * BF16_WIDTH) as *const __m512bh);
            let b1 = std::ptr::read_volatile(panel.add(q * BF16_WIDTH + L) as *const __m512bh);
            for (r, sums) in sums.iter_mut().enumerate() {
                let pair = _mm512_set1_epi32(*a.add(r * lda + q) as i32);
                let pair = std::mem::transmute::<__m512i, __m512bh>(pair);
                sums[0] = _mm512_dpbf16_ps(sums[0], pair, b0);
                sums[1] = _mm512_dpbf16_ps(sums[1], pair, b1);
            }
        }
        for (r, sums) in sums.iter().enumerate() {
            let mut row = [0.0f32; BF16_WIDTH];
            _mm512_storeu_ps(row.as_mut_ptr(), sums[0]);
            _mm512_storeu_ps(row.as_mut_ptr().add(L), sums[1]);
            store_row(&row, c.add(r * ldc), cols, add);
        }
    }
}

#[cfg(test)]
#[path = "bf16_panel_tests.rs"]
mod tests;
