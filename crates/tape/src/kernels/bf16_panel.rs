//! The kernels of bf16 products (`PackedMatrix<f32>` packed in bf16, see `bf16_operands.rs`).
//!
//! Every kernel computes each output as `vdpbf16ps` does (Intel SDM): the sum starts at +0;
//! for each pair of positions (2q, 2q + 1) it adds the odd product, then the even one, each
//! addition rounded to nearest even and a subnormal result flushed to zero of its sign; the
//! block's sum is then added to C (or to a bias row) with an ordinary f32 addition.
//!
//! - The native kernel runs `vdpbf16ps` where the CPU has AVX512_BF16: B comes as pairs of
//!   bf16 values in a `u32` (row 2q in the low half, 2q + 1 in the high half), and so does A.
//! - Everywhere else, B is packed as f32 with the rows of each pair swapped (odd first) for
//!   the full-precision panel kernels, whose sums are exactly rounded multiply-adds in order:
//!   a bf16 product is exact in f32, so they add the same terms in the same order. They do
//!   not flush; when the operands' exponents show that a sum could be subnormal
//!   ([`flush_needed`]), `flushing_product` runs instead, flushing every sum.
//!
//! Both give the same bits on every machine.

// The native kernel takes raw matrix descriptions (pointers, sizes, strides), as BLAS does.
#![allow(clippy::too_many_arguments)]

use super::gemm::MatRef;
use super::packed::{AddTo, PackedMatrix, K_BLOCK};
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
    /// The full-precision panel kernels (exactly rounded f32 multiply-adds) on rows in
    /// `vdpbf16ps`'s order, or `flushing_product`; on any CPU.
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

/// C ← A·B + what `add` says for A (`m × k`, unit column stride) and B packed for the
/// full-precision kernels (rows in `vdpbf16ps`'s order), each sum flushed as the instruction
/// flushes it: the portable path when a sum could be subnormal.
pub(crate) fn flushing_product(
    b: &PackedMatrix<f32>,
    a: MatRef<f32>,
    c: &mut [f32],
    ldc: usize,
    add: AddTo<'_, f32>,
) {
    let (data, width) = b.full_panels();
    let (m, k, n) = (a.rows, b.rows(), b.cols());
    widest(
        #[inline(always)]
        || {
            let mut sums = [0.0f32; BF16_WIDTH];
            let sums = &mut sums[..width];
            for (panel, first) in (0..n).step_by(width).enumerate() {
                let panel = &data[panel * k * width..(panel + 1) * k * width];
                for i in 0..m {
                    let row = &a.data[i * a.row_stride..][..k];
                    for k0 in (0..k).step_by(K_BLOCK) {
                        sums.fill(0.0);
                        for (r, &av) in row.iter().enumerate().take(k0 + K_BLOCK).skip(k0) {
                            for (s, &bv) in sums.iter_mut().zip(&panel[r * width..]) {
                                *s = flushed(av.mul_add(bv, *s));
                            }
                        }
                        let out = &mut c[i * ldc + first..][..width.min(n - first)];
                        for (j, (o, &v)) in out.iter_mut().zip(sums.iter()).enumerate() {
                            *o = if k0 > 0 {
                                v + *o
                            } else {
                                add.added(v, *o, first + j)
                            };
                        }
                    }
                }
            }
        },
    )
}

/// `x`, or zero of its sign if it is subnormal.
#[inline(always)]
fn flushed(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// Writes one row's sums: C[j] ← sums[j] + what `add` says, for the first `cols` columns.
///
/// # Safety
/// `row` holds `cols` values.
#[cfg(target_arch = "x86_64")]
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

/// Rows of A the native kernel keeps in registers at once (16 sums, 2 panel vectors and a
/// broadcast pair of the 32 vector registers).
#[cfg(target_arch = "x86_64")]
const NATIVE_ROWS: usize = 8;

/// The native kernel (unsafe: the caller guarantees the CPU feature and the extents): for
/// `m` rows of A (`pairs` pairs from `a`, rows `lda` words apart) and a `pairs × BF16_WIDTH`
/// panel of pairs (its rows contiguous, aligned to 64 bytes), C (`m` rows, first `cols`
/// columns, row stride `ldc`) ← A·panel + what `add` says.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn native(
    m: usize,
    a: *const u32,
    lda: usize,
    pairs: usize,
    panel: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, f32>,
) {
    // SAFETY: the caller's contract: the CPU has AVX512_BF16 (checked where the kernel was
    // chosen, `Bf16Kernel::available`), and rows `row..row + R` < m.
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
/// The CPU has AVX512_BF16; as [`native`] for `R` rows.
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
