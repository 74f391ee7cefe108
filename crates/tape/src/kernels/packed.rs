//! A right-hand matrix packed once and multiplied many times: C ← A·B (+ C) for a small A,
//! as a recurrent layer does with its weights at every step of a sequence. B is stored in
//! column panels of the kernel's width, each K × width contiguous, so a step streams the
//! panels with no repacking; the product keeps a block of A's rows times one panel in
//! registers (explicit AVX-512 / AVX2+FMA kernels chosen at run time, a portable one
//! otherwise). While it sweeps a panel the kernel prefetches the next one into L2: a weight
//! larger than L2 streams from L3 at every step, and the hardware prefetcher stops at each
//! 4 KiB page of a panel.

// The kernels take raw matrix descriptions (pointers, sizes, strides), as BLAS does.
#![allow(clippy::too_many_arguments)]

use super::gemm::MatRef;
use crate::Element;
use smallvec::SmallVec;
use std::mem::MaybeUninit;

/// A panel kernel (unsafe: the caller guarantees the CPU feature and the extents): C (`m`
/// rows, first `cols` columns, row stride `ldc`) ← A·panel + what `add` says, for A `m × k`
/// given as column blocks side by side (`a`, their widths summing to k) and a `k × width`
/// panel. `prefetch` is null or the next `k × width` panel, whose lines the kernel
/// prefetches into L2.
pub type PanelFn<T> = unsafe fn(
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
pub struct APiece<T> {
    pub ptr: *const T,
    pub k: usize,
    pub ld: usize,
}

impl<T> APiece<T> {
    /// Where row `row` of the piece starts.
    fn at_row(self, row: usize, transposed: bool) -> *const T {
        // SAFETY (of the callers' use): rows below the piece's height stay inside it.
        self.ptr
            .wrapping_add(if transposed { row } else { row * self.ld })
    }
}

/// Whether the panel kernel beats gemm on products of many rows (hundreds or more) on this
/// CPU: with AVX-512 it does (it reads A in place), with AVX2 it does not (x·Wᵀ over 8,192
/// rows by 256 × 256: ~37 GFLOP/s against gemm's ~85 on a Zen 3). Few rows (a batch at one
/// time step) suit it everywhere.
pub fn suits_many_rows() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// What a product is added to.
#[derive(Clone, Copy, Debug)]
pub enum AddTo<'a, T> {
    /// Nothing: C ← A·B.
    Nothing,
    /// C's values: C ← A·B + C.
    Output,
    /// A row added to every row of the product (a bias): C ← A·B + 1·row. For a kernel, the
    /// row starts at its panel's first column.
    Row(&'a [T]),
}

impl<T: Element> AddTo<'_, T> {
    /// Stores `v`, column j of a product's row, plus what `self` says at `out`, reading
    /// `out` only for `Output` (C may be uninitialised otherwise).
    ///
    /// # Safety
    /// `out` is valid for writes, and for reads if `self` is `Output`.
    unsafe fn store(self, out: *mut T, v: T, j: usize) {
        *out = match self {
            AddTo::Nothing => v,
            AddTo::Output => v + *out,
            AddTo::Row(row) => v + row[j],
        };
    }
}

/// The panel kernel the running CPU supports best, and its panel width: `run` for A with
/// unit column stride, `run_transposed` for A with unit row stride (its columns contiguous).
#[derive(Clone, Copy)]
pub struct PanelKernel<T> {
    pub width: usize,
    pub run: PanelFn<T>,
    pub run_transposed: PanelFn<T>,
}

/// Rows of a transposed B packed at a time (a 16-row tile of a 32-wide panel is 2 KiB).
const TRANSPOSE_TILE: usize = 16;

/// Rows of B per pass (a panel slice of `K_BLOCK × width` stays in L1).
const K_BLOCK: usize = 256;
/// Rows of A per pass (an `M_BLOCK × K_BLOCK` slice of A stays in L2).
const M_BLOCK: usize = 192;

/// B (`k × n`) packed into column panels for repeated products.
#[derive(Clone)]
pub struct PackedMatrix<T> {
    data: Vec<T>,
    k: usize,
    n: usize,
    kernel: PanelKernel<T>,
}

impl<T: Element> PackedMatrix<T> {
    /// Packs `b` (any strides) for the best kernel of this CPU.
    pub fn new(b: MatRef<T>) -> Self {
        Self::stacked(&[b])
    }

    /// Packs the matrices `blocks` stacked on top of each other, `[B₁; B₂; …]` (all with the
    /// same number of columns, any strides), for the best kernel of this CPU.
    pub fn stacked(blocks: &[MatRef<T>]) -> Self {
        Self::with_kernel(blocks, T::panel_kernel())
    }

    fn with_kernel(blocks: &[MatRef<T>], kernel: PanelKernel<T>) -> Self {
        let n = blocks.first().map_or(0, |b| b.cols);
        assert!(
            blocks.iter().all(|b| b.cols == n),
            "packed matmul: stacked blocks with different widths"
        );
        let (k, w) = (blocks.iter().map(|b| b.rows).sum(), kernel.width);
        let panels = n.div_ceil(w);
        let mut data = vec![T::zero(); panels * k * w];
        let mut first_row = 0;
        for b in blocks {
            pack_rows(*b, first_row, k, w, &mut data);
            first_row += b.rows;
        }
        PackedMatrix { data, k, n, kernel }
    }

    pub fn rows(&self) -> usize {
        self.k
    }

    pub fn cols(&self) -> usize {
        self.n
    }

    /// C ← A·B, or C ← A·B + C if `accumulate`; A is `m × k` with unit column stride, C is
    /// `m × n` with row stride `ldc`.
    pub fn mul_into(&self, a: MatRef<T>, c: &mut [T], ldc: usize, accumulate: bool) {
        let add = if accumulate {
            AddTo::Output
        } else {
            AddTo::Nothing
        };
        self.product(a, c, ldc, add)
    }

    /// C ← A·B + what `add` says (a row of `n` values for [`AddTo::Row`]); A is `m × k` with
    /// unit column stride, or unit row stride (a transposed matrix, read in place), C is
    /// `m × n` with row stride `ldc`.
    pub fn product(&self, a: MatRef<T>, c: &mut [T], ldc: usize, add: AddTo<'_, T>) {
        self.product_of_blocks(&[a], c, ldc, add)
    }

    /// [`product`](Self::product) for A given as column blocks side by side, `[A₁ A₂ …]`,
    /// each read where it lies: all `m` rows, their widths summing to B's rows, all with unit
    /// column stride or all with unit row stride. Σᵢ Aᵢ·Bᵢ over the matching row blocks of B
    /// runs as one product, with C loaded and stored once per block of K.
    pub fn product_of_blocks(
        &self,
        blocks: &[MatRef<T>],
        c: &mut [T],
        ldc: usize,
        add: AddTo<'_, T>,
    ) {
        // SAFETY: `c` is valid for reads and writes of its whole length.
        unsafe { self.product_at(blocks, c.as_mut_ptr(), c.len(), ldc, add) }
    }

    /// [`product`](Self::product) into fresh memory: C (`m × n`, contiguous) ← A·B + what
    /// `add` says, written into the first `m·n` of `slots` and returned as values. `add`
    /// must not read C (`Nothing` or `Row`).
    pub fn product_into_slots<'c>(
        &self,
        a: MatRef<T>,
        slots: &'c mut [MaybeUninit<T>],
        add: AddTo<'_, T>,
    ) -> &'c mut [T] {
        assert!(
            !matches!(add, AddTo::Output),
            "packed matmul: a product into fresh memory has no output to add to"
        );
        let len = a.rows * self.n;
        let c = slots[..len].as_mut_ptr().cast::<T>();
        // SAFETY: `c` is valid for writes of `len` values; the product reads C only where it
        // has written it (later blocks of K add to the first block's values), and it writes
        // every value of the m × n matrix, so the `len` values are initialised after it.
        unsafe {
            self.product_at(&[a], c, len, self.n, add);
            std::slice::from_raw_parts_mut(c, len)
        }
    }

    /// The product into C at `c` (`c_len` values, row stride `ldc`).
    ///
    /// # Safety
    /// `c` is valid for writes of `c_len` values, and for reads of those the product adds to:
    /// all of C's if `add` is `Output`, otherwise only what the product wrote before.
    unsafe fn product_at(
        &self,
        blocks: &[MatRef<T>],
        c: *mut T,
        c_len: usize,
        ldc: usize,
        add: AddTo<'_, T>,
    ) {
        let (m, k, n) = (blocks.first().map_or(0, |a| a.rows), self.k, self.n);
        if let AddTo::Row(row) = add {
            assert!(
                row.len() >= n,
                "packed matmul: a row of {} to add to a product of {n} columns",
                row.len()
            );
        }
        let a_transposed = blocks.first().is_some_and(|a| a.col_stride != 1);
        let mut width = 0;
        for a in blocks {
            let (row_step, k_step) = steps(a, a_transposed);
            assert!(
                a.rows == m && (row_step, k_step) == (a.row_stride, a.col_stride),
                "packed matmul: A block {}x{} with strides ({}, {}): expected {m} rows and the \
                 first block's unit {} stride",
                a.rows,
                a.cols,
                a.row_stride,
                a.col_stride,
                if a_transposed { "row" } else { "column" }
            );
            if m > 0 && a.cols > 0 {
                assert!(
                    (m - 1) * row_step + (a.cols - 1) * k_step < a.data.len(),
                    "packed matmul: A slice of {} cannot hold {m}x{} with strides ({}, {})",
                    a.data.len(),
                    a.cols,
                    a.row_stride,
                    a.col_stride
                );
            }
            width += a.cols;
        }
        assert!(
            width == k,
            "packed matmul: A has {width} columns, B {k} rows"
        );
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            ldc >= n && (m - 1) * ldc + n <= c_len,
            "packed matmul: output slice of {c_len} cannot hold {m}x{n} with row stride {ldc}"
        );
        if k == 0 {
            // An empty sum: C ← 0 + what `add` says.
            for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
                // SAFETY: inside C (checked above).
                unsafe { add.store(c.add(i * ldc + j), T::zero(), j) };
            }
            return;
        }
        // Blocks of K keep a panel's slice in L1 and blocks of M keep A's slice in L2 while
        // the kernel sweeps the panels.
        let (w, panels) = (self.kernel.width, n.div_ceil(self.kernel.width));
        let panel_at = |j: usize, k0: usize| self.data[j * k * w + k0 * w..].as_ptr();
        let mut many: SmallVec<[APiece<T>; 8]> = SmallVec::new();
        let run = if a_transposed {
            self.kernel.run_transposed
        } else {
            self.kernel.run
        };
        for k0 in (0..k).step_by(K_BLOCK) {
            let kc = K_BLOCK.min(k - k0);
            for m0 in (0..m).step_by(M_BLOCK) {
                let mc = M_BLOCK.min(m - m0);
                let single;
                let pieces: &[APiece<T>] = match blocks {
                    [a] => {
                        single = [piece_of(a, a_transposed, m0, k0, kc)];
                        &single
                    }
                    _ => {
                        many.clear();
                        many.extend(pieces_of(blocks, a_transposed, m0, k0..k0 + kc));
                        &many
                    }
                };
                for panel in 0..panels {
                    let cols = w.min(n - panel * w);
                    let next = if panel + 1 < panels {
                        panel_at(panel + 1, k0)
                    } else {
                        std::ptr::null()
                    };
                    // SAFETY: A's blocks (m rows, strides as said), the panel (k × w) and C's
                    // rows (m × cols at column panel·w, stride ldc) were bounds-checked above;
                    // the pieces lie inside the blocks, and `next` is null or another panel's
                    // slice.
                    unsafe {
                        run(
                            mc,
                            pieces,
                            panel_at(panel, k0),
                            c.add(m0 * ldc + panel * w),
                            ldc,
                            cols,
                            match add {
                                _ if k0 > 0 => AddTo::Output,
                                AddTo::Row(row) => AddTo::Row(&row[panel * w..]),
                                first => first,
                            },
                            next,
                        )
                    }
                }
            }
        }
    }
}

/// Writes the rows of `b` into panels of width `w` holding `k` rows in all, as rows
/// `first_row..` of each panel.
fn pack_rows<T: Element>(b: MatRef<T>, first_row: usize, k: usize, w: usize, data: &mut [T]) {
    let (rows, n, rs, cs) = (b.rows, b.cols, b.row_stride, b.col_stride);
    for (panel, block) in data.chunks_exact_mut((k * w).max(1)).enumerate() {
        let block = &mut block[first_row * w..(first_row + rows) * w];
        let (j0, cols) = (panel * w, w.min(n - panel * w));
        if cs == 1 {
            // Rows of B are contiguous: copy row slices.
            for p in 0..rows {
                block[p * w..p * w + cols].copy_from_slice(&b.data[p * rs + j0..][..cols]);
            }
        } else if rs == 1 {
            // Columns of B are contiguous (a transposed matrix): read them a tile of
            // rows at a time, so that the tile's rows of the panel stay in L1 while
            // every column writes into them.
            for p0 in (0..rows).step_by(TRANSPOSE_TILE) {
                let tile_rows = TRANSPOSE_TILE.min(rows - p0);
                let tile = &mut block[p0 * w..(p0 + tile_rows) * w];
                for c in 0..cols {
                    let column = &b.data[(j0 + c) * cs + p0..][..tile_rows];
                    for (row, &v) in tile.chunks_exact_mut(w).zip(column) {
                        row[c] = v;
                    }
                }
            }
        } else {
            for p in 0..rows {
                for c in 0..cols {
                    block[p * w + c] = b.data[p * rs + (j0 + c) * cs];
                }
            }
        }
    }
}

/// The parts of A's column blocks that cover columns `range`, from row `row` down.
fn pieces_of<'a, T>(
    blocks: &'a [MatRef<'a, T>],
    transposed: bool,
    row: usize,
    range: std::ops::Range<usize>,
) -> impl Iterator<Item = APiece<T>> + 'a {
    let mut start = 0;
    blocks.iter().filter_map(move |a| {
        let (first, end) = (start, start + a.cols);
        start = end;
        let (lo, hi) = (range.start.max(first), range.end.min(end));
        (lo < hi).then(|| piece_of(a, transposed, row, lo - first, hi - lo))
    })
}

/// Columns `first..first + k` of the block `a`, from row `row` down.
fn piece_of<T>(a: &MatRef<T>, transposed: bool, row: usize, first: usize, k: usize) -> APiece<T> {
    let (row_step, k_step) = steps(a, transposed);
    APiece {
        ptr: a.data[row * row_step + first * k_step..].as_ptr(),
        k,
        ld: if transposed { k_step } else { row_step },
    }
}

/// How far apart a block's rows and its columns lie, for A read with unit column stride, or
/// transposed (unit row stride).
fn steps<T>(a: &MatRef<T>, transposed: bool) -> (usize, usize) {
    if transposed {
        (1, a.col_stride)
    } else {
        (a.row_stride, 1)
    }
}

/// The portable kernel, for CPUs without AVX2: the same blocking with plain arrays.
pub fn portable_kernel<T: Element>() -> PanelKernel<T> {
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
                    *acc += av * *panel.add(j);
                }
                panel = panel.add(W);
            }
        }
        for (j, &v) in acc.iter().enumerate().take(cols) {
            let out = c.add(i * ldc + j);
            add.store(out, v, j);
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
        unsafe fn $name<const TR: bool>(
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
                            _mm_prefetch::<_MM_HINT_T1>(prefetch.add(p * 2 * L + L) as *const i8);
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
                            add.store(out, v, j);
                        }
                    }
                }
            }
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
        pub fn $name() -> PanelKernel<$t> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Every kernel this CPU has, and the portable one, on shapes with row and column
    /// remainders, a transposed B, strided A, accumulation and an added row.
    fn check<T: Element>(kernels: &[PanelKernel<T>], tolerance: f64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut shapes: Vec<(usize, usize, usize)> =
            (1..=25).map(|m| (m, 3 + 2 * m, 5 * m)).collect();
        shapes.extend([(1, 1, 1), (6, 64, 16), (32, 300, 128), (400, 300, 70)]);
        for kernel in kernels {
            for &(m, k, n) in &shapes {
                let lda = k + 3;
                let a = crate::Tensor::<T>::uniform(&[m * lda], -1.0, 1.0, &mut rng);
                let b = crate::Tensor::<T>::uniform(&[n * k], -1.0, 1.0, &mut rng);
                let (a, b) = (a.data(), b.data());
                let bt = MatRef::row_major(b, n, k).t();
                let packed = PackedMatrix::with_kernel(&[bt], *kernel);
                let a_ref = MatRef {
                    data: a,
                    rows: m,
                    cols: k,
                    row_stride: lda,
                    col_stride: 1,
                };
                let want = |i: usize, j: usize| {
                    (0..k)
                        .map(|p| a[i * lda + p].to_f64().unwrap() * b[j * k + p].to_f64().unwrap())
                        .sum::<f64>()
                };
                let ldc = n + 2;
                let mut c = vec![T::of(0.5); m * ldc];
                // A product, the same added to it, then the product plus a row.
                let row: Vec<T> = (0..n).map(|j| T::of(0.25 * j as f64 - 1.0)).collect();
                for round in 0..3 {
                    let add = [AddTo::Nothing, AddTo::Output, AddTo::Row(&row)][round];
                    packed.product(a_ref, &mut c, ldc, add);
                    for i in 0..m {
                        for j in 0..n {
                            let got = c[i * ldc + j].to_f64().unwrap();
                            let expected = match round {
                                0 => want(i, j),
                                1 => 2.0 * want(i, j),
                                _ => want(i, j) + row[j].to_f64().unwrap(),
                            };
                            assert!(
                                (got - expected).abs() < tolerance * (k as f64),
                                "{m}x{k}x{n}, width {}, round {round}: {got} vs {expected}",
                                kernel.width,
                            );
                        }
                        assert!(
                            c[i * ldc + n..(i + 1) * ldc]
                                .iter()
                                .all(|&v| v == T::of(0.5)),
                            "columns past n untouched"
                        );
                    }
                }
            }
        }
    }

    /// A as column blocks side by side (read in place, transposed or not), B packed from the
    /// matching row blocks, across the K and M block boundaries and with an empty block:
    /// Σ Aᵢ·Bᵢ as one product, added to C. With no columns at all, C gets the added row.
    #[test]
    fn products_of_column_blocks_match_naive() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let kernels = kernels_f64();
        let cases: [(usize, usize, &[usize]); 4] = [
            (5, 7, &[3, 1, 4]),
            (200, 40, &[100, 7, 180]),
            (13, 33, &[0, 256, 2]),
            (4, 9, &[0]),
        ];
        for kernel in &kernels {
            for &(m, n, widths) in &cases {
                for transposed in [false, true] {
                    let k: usize = widths.iter().sum();
                    let a = crate::Tensor::<f64>::uniform(&[m * k], -1.0, 1.0, &mut rng);
                    let b = crate::Tensor::<f64>::uniform(&[k * n], -1.0, 1.0, &mut rng);
                    let (a, b) = (a.data(), b.data());
                    // Each block in storage of its own, with padded leading dimensions.
                    let mut first = 0;
                    let mut stored: Vec<(Vec<f64>, Vec<f64>, usize)> = Vec::new();
                    for &w in widths {
                        let ld = if transposed { m + 1 } else { w + 2 };
                        let mut ab = vec![f64::NAN; ld * if transposed { w } else { m }];
                        for i in 0..m {
                            for p in 0..w {
                                let at = if transposed { p * ld + i } else { i * ld + p };
                                ab[at] = a[i * k + first + p];
                            }
                        }
                        let mut bb = vec![f64::NAN; w * (n + 1)];
                        for p in 0..w {
                            for j in 0..n {
                                bb[p * (n + 1) + j] = b[(first + p) * n + j];
                            }
                        }
                        stored.push((ab, bb, ld));
                        first += w;
                    }
                    let a_blocks: Vec<MatRef<f64>> = stored
                        .iter()
                        .zip(widths)
                        .map(|((ab, _, ld), &w)| {
                            let (row_stride, col_stride) =
                                if transposed { (1, *ld) } else { (*ld, 1) };
                            MatRef {
                                data: ab,
                                rows: m,
                                cols: w,
                                row_stride,
                                col_stride,
                            }
                        })
                        .collect();
                    let b_blocks: Vec<MatRef<f64>> = stored
                        .iter()
                        .zip(widths)
                        .map(|((_, bb, _), &w)| MatRef {
                            data: bb,
                            rows: w,
                            cols: n,
                            row_stride: n + 1,
                            col_stride: 1,
                        })
                        .collect();
                    let packed = PackedMatrix::with_kernel(&b_blocks, *kernel);
                    let row: Vec<f64> = (0..n).map(|j| j as f64 - 0.5).collect();
                    let add = if k == 0 {
                        AddTo::Row(&row)
                    } else {
                        AddTo::Output
                    };
                    let mut c = vec![0.5; m * n];
                    packed.product_of_blocks(&a_blocks, &mut c, n, add);
                    for i in 0..m {
                        for j in 0..n {
                            let want = if k == 0 { row[j] } else { 0.5 }
                                + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f64>();
                            let got = c[i * n + j];
                            assert!(
                                (got - want).abs() < 1e-12 * (k as f64 + 1.0),
                                "{m}x{widths:?}x{n} transposed {transposed}, width {}: {got} vs {want}",
                                kernel.width
                            );
                        }
                    }
                }
            }
        }
    }

    /// The portable kernel, the best one for this CPU, and the AVX2 one if the CPU has it
    /// (the best one may be AVX-512's).
    macro_rules! every_kernel {
        ($name:ident, $t:ty, $best:ident, $avx2:ident, $width:expr) => {
            fn $name() -> Vec<PanelKernel<$t>> {
                let mut kernels = vec![portable_kernel(), $best()];
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    kernels.push(PanelKernel {
                        width: $width,
                        run: $avx2::<false>,
                        run_transposed: $avx2::<true>,
                    });
                }
                kernels
            }
        };
    }
    every_kernel!(kernels_f64, f64, kernel_f64, panel_f64_avx2, 8);
    every_kernel!(kernels_f32, f32, kernel_f32, panel_f32_avx2, 16);

    /// A product into fresh memory gives the bits of one into zeros, on every kernel, across
    /// the K and M block boundaries and with a partial panel; it never reads C before writing
    /// it (the slots start as NaN, which any such read would carry into the result).
    #[test]
    fn products_into_fresh_memory_equal_products_into_zeros() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for kernel in kernels_f32() {
            for (m, k, n) in [(3, 5, 7), (200, 300, 40), (13, 0, 9), (0, 4, 4)] {
                let a = crate::Tensor::<f32>::uniform(&[m * k], -1.0, 1.0, &mut rng);
                let b = crate::Tensor::<f32>::uniform(&[k * n], -1.0, 1.0, &mut rng);
                let packed =
                    PackedMatrix::with_kernel(&[MatRef::row_major(b.data(), k, n)], kernel);
                let a = MatRef::row_major(a.data(), m, k);
                let row: Vec<f32> = (0..n).map(|j| j as f32 - 2.5).collect();
                for add in [AddTo::Nothing, AddTo::Row(&row)] {
                    let mut want = vec![0.0; m * n];
                    packed.product(a, &mut want, n, add);
                    let mut slots = vec![MaybeUninit::new(f32::NAN); m * n + 3];
                    let got = packed.product_into_slots(a, &mut slots, add);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(got),
                        bits(&want),
                        "{m}x{k}x{n}, width {}",
                        kernel.width
                    );
                }
            }
        }
    }

    #[test]
    fn packed_products_match_naive_f64() {
        check::<f64>(&kernels_f64(), 1e-15);
    }

    #[test]
    fn packed_products_match_naive_f32() {
        check::<f32>(&kernels_f32(), 1e-6);
    }
}
