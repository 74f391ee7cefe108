//! The panel kernels under `PackedMatrix`'s products: C ← A·panel (+ what `AddTo` says) for
//! a block of A's rows and one column panel of B, kept in registers. Explicit AVX-512 and
//! AVX2+FMA kernels are picked at run time, a portable one otherwise; all use the same
//! blocking, so they differ only in vector width.

// The kernels take raw matrix descriptions (pointers, sizes, strides), as BLAS does.
#![allow(clippy::too_many_arguments)]

use super::packed::AddTo;
use crate::Element;

/// A panel kernel (unsafe: the caller guarantees the CPU feature and the extents): C (`m`
/// rows, first `cols` columns, row stride `ldc`) ← A·panel + what `add` says, for A `m × k`
/// given as column blocks side by side (`a`, their widths summing to k) and a `k × width`
/// panel. `prefetch` is null or the next `k × width` panel, whose lines the kernel
/// prefetches into L2.
pub(crate) type PanelFn<T> = unsafe fn(
    m: usize,
    a: &[APiece<T>],
    panel: *const T,
    c: *mut T,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, T>,
    prefetch: *const T,
);

/// Columns `k` wide of the left-hand matrix A, from row 0: element (i, p) is at
/// `ptr[i·ld + p]`, or at `ptr[i + p·ld]` when A is transposed (its columns contiguous).
#[derive(Clone, Copy, Debug)]
pub(crate) struct APiece<T> {
    pub(crate) ptr: *const T,
    pub(crate) k: usize,
    pub(crate) ld: usize,
}

impl<T> APiece<T> {
    /// Where row `row` of the piece starts.
    fn at_row(self, row: usize, transposed: bool) -> *const T {
        // SAFETY (of the callers' use): rows below the piece's height stay inside it.
        self.ptr
            .wrapping_add(if transposed { row } else { row * self.ld })
    }
}

/// The panel kernel the running CPU supports best, and its panel width: `run` for A with
/// unit column stride, `run_transposed` for A with unit row stride (its columns contiguous).
#[derive(Clone, Copy)]
pub struct PanelKernel<T> {
    pub(crate) width: usize,
    pub(crate) run: PanelFn<T>,
    pub(crate) run_transposed: PanelFn<T>,
}

/// The portable kernel, for CPUs without AVX2: the same blocking with plain arrays.
pub(crate) fn portable_kernel<T: Element>() -> PanelKernel<T> {
    PanelKernel {
        width: PORTABLE_WIDTH,
        run: portable_panel::<T, false>,
        run_transposed: portable_panel::<T, true>,
    }
}

const PORTABLE_WIDTH: usize = 8;

unsafe fn portable_panel<T: Element, const TRANSPOSED: bool>(
    m: usize,
    a: &[APiece<T>],
    panel: *const T,
    c: *mut T,
    ldc: usize,
    cols: usize,
    add: AddTo<'_, T>,
    _prefetch: *const T,
) {
    // SAFETY: the caller's contract (see `PanelFn`): A's `m` rows of each piece, the panel's
    // k × W values and C's `m` rows of `cols` columns are inside their allocations.
    unsafe {
        const W: usize = PORTABLE_WIDTH;
        for i in 0..m {
            let mut acc = [T::zero(); W];
            let mut panel = panel;
            for piece in a {
                let row = piece.at_row(i, TRANSPOSED);
                let step = if TRANSPOSED { piece.ld } else { 1 };
                for p in 0..piece.k {
                    let av = *row.add(p * step);
                    for (j, acc) in acc.iter_mut().enumerate() {
                        // Exactly rounded, as the vector kernels' multiply-adds are.
                        *acc = av.mul_add(*panel.add(j), *acc);
                    }
                    panel = panel.add(W);
                }
            }
            for (j, &v) in acc.iter().enumerate().take(cols) {
                let out = c.add(i * ldc + j);
                *out = add.added(v, *out, j);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! simd_panel_kernel {
    ($name:ident, $t:ty, $feature:literal, $lanes:expr, $block:literal,
     $zero:ident, $load:ident, $splat:ident, $fma:ident, $add:ident, $store:ident) => {
        /// Rows of A in blocks of `$block` times a panel of two vectors; the first block
        /// prefetches the next panel. `TR`: A is transposed (its columns contiguous).
        ///
        /// # Safety
        /// The CPU has `$feature`; A, the panel and C's rows are valid for the sizes given.
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name<const TR: bool>(
            m: usize,
            a: &[APiece<$t>],
            panel: *const $t,
            c: *mut $t,
            ldc: usize,
            cols: usize,
            add: AddTo<'_, $t>,
            prefetch: *const $t,
        ) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            #[target_feature(enable = $feature)]
            #[inline]
            unsafe fn rows<const R: usize, const TR: bool>(
                a: &[APiece<$t>],
                row: usize,
                panel: *const $t,
                c: *mut $t,
                ldc: usize,
                cols: usize,
                add: AddTo<'_, $t>,
                prefetch: *const $t,
            ) {
                // SAFETY: the caller's contract: the CPU has $feature; rows `row..row + R` of
                // A's pieces, the panel's k × 2L values (and the next panel's, when
                // prefetched) and C's R rows of `cols` columns are inside their allocations.
                unsafe {
                    let mut acc = [[$zero(); 2]; R];
                    let mut done = 0;
                    for piece in a {
                        let (a, lda, k) = (piece.at_row(row, TR), piece.ld, piece.k);
                        let panel = panel.add(done * 2 * L);
                        let prefetch = if prefetch.is_null() {
                            prefetch
                        } else {
                            prefetch.add(done * 2 * L)
                        };
                        done += k;
                        for p in 0..k {
                            if !prefetch.is_null() {
                                _mm_prefetch::<_MM_HINT_T1>(prefetch.add(p * 2 * L) as *const i8);
                                _mm_prefetch::<_MM_HINT_T1>(
                                    prefetch.add(p * 2 * L + L) as *const i8
                                );
                            }
                            let b0 = $load(panel.add(p * 2 * L));
                            let b1 = $load(panel.add(p * 2 * L + L));
                            for r in 0..R {
                                let av = $splat(if TR {
                                    *a.add(r + p * lda)
                                } else {
                                    *a.add(r * lda + p)
                                });
                                acc[r][0] = $fma(av, b0, acc[r][0]);
                                acc[r][1] = $fma(av, b1, acc[r][1]);
                            }
                        }
                    }
                    for r in 0..R {
                        let row = c.add(r * ldc);
                        if cols == 2 * L {
                            let (mut v0, mut v1) = (acc[r][0], acc[r][1]);
                            match add {
                                AddTo::Nothing => {}
                                AddTo::Output => {
                                    v0 = $add(v0, $load(row));
                                    v1 = $add(v1, $load(row.add(L)));
                                }
                                AddTo::Row(to) => {
                                    v0 = $add(v0, $load(to.as_ptr()));
                                    v1 = $add(v1, $load(to[L..2 * L].as_ptr()));
                                }
                            }
                            $store(row, v0);
                            $store(row.add(L), v1);
                        } else {
                            let mut tmp = [0.0 as $t; 2 * L];
                            $store(tmp.as_mut_ptr(), acc[r][0]);
                            $store(tmp.as_mut_ptr().add(L), acc[r][1]);
                            for (j, &v) in tmp.iter().enumerate().take(cols) {
                                let out = row.add(j);
                                *out = add.added(v, *out, j);
                            }
                        }
                    }
                }
            }
            // SAFETY: this function's contract covers `rows`' for every block of rows.
            unsafe {
                let (mut i, mut prefetch) = (0, prefetch);
                while i + $block <= m {
                    rows::<$block, TR>(a, i, panel, c.add(i * ldc), ldc, cols, add, prefetch);
                    prefetch = std::ptr::null();
                    i += $block;
                }
                let c = c.add(i * ldc);
                match m - i {
                    1 => rows::<1, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    2 => rows::<2, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    3 => rows::<3, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    4 => rows::<4, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    5 => rows::<5, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    6 => rows::<6, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    7 => rows::<7, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    8 => rows::<8, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    9 => rows::<9, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    10 => rows::<10, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    11 => rows::<11, TR>(a, i, panel, c, ldc, cols, add, prefetch),
                    _ => {}
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
simd_panel_kernel!(
    panel_f32_avx512,
    f32,
    "avx512f",
    16,
    12,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);
#[cfg(target_arch = "x86_64")]
simd_panel_kernel!(
    panel_f32_avx2,
    f32,
    "avx2,fma",
    8,
    6,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_storeu_ps
);
#[cfg(target_arch = "x86_64")]
simd_panel_kernel!(
    panel_f64_avx512,
    f64,
    "avx512f",
    8,
    12,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd,
    _mm512_storeu_pd
);
#[cfg(target_arch = "x86_64")]
simd_panel_kernel!(
    panel_f64_avx2,
    f64,
    "avx2,fma",
    4,
    6,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_add_pd,
    _mm256_storeu_pd
);

macro_rules! select_kernel {
    ($name:ident, $t:ty, $avx512:ident, $avx2:ident, $lanes512:expr, $lanes2:expr) => {
        /// The best panel kernel for this CPU.
        pub(crate) fn $name() -> PanelKernel<$t> {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    return PanelKernel {
                        width: 2 * $lanes512,
                        run: $avx512::<false>,
                        run_transposed: $avx512::<true>,
                    };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return PanelKernel {
                        width: 2 * $lanes2,
                        run: $avx2::<false>,
                        run_transposed: $avx2::<true>,
                    };
                }
            }
            portable_kernel()
        }
    };
}

select_kernel!(kernel_f32, f32, panel_f32_avx512, panel_f32_avx2, 16, 8);
select_kernel!(kernel_f64, f64, panel_f64_avx512, panel_f64_avx2, 8, 4);
