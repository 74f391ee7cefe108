//! A right-hand matrix packed once and multiplied many times: C ← A·B (+ C) for a small A, as a
//! recurrent layer does with its weights at every step of a sequence. B is stored in column
//! panels of the kernel's width, each K × width contiguous, so a step streams the panels with
//! no repacking; the product keeps a block of A's rows times one panel in registers (explicit
//! AVX-512 / AVX2+FMA kernels chosen at run time, a portable one otherwise: `panel.rs`). While
//! it sweeps a panel the kernel prefetches the next one into L2: a weight larger than L2
//! streams from L3 at every step, and the hardware prefetcher stops at each 4 KiB page of a
//! panel. A bf16 matrix (mixed precision, f32 only) is packed for the bf16 kernels
//! (`bf16_operands.rs`, `bf16_panel.rs`), which give the same bits with or without
//! AVX512_BF16.

// The kernels take raw matrix descriptions (pointers, sizes, strides), as BLAS does.
#![allow(clippy::too_many_arguments)]

use super::bf16_operands::Bf16Panels;
use super::bf16_panel::Bf16Kernel;
use super::gemm::MatRef;
use super::matvec::Precision;
use super::panel::{APiece, PanelKernel};
use crate::Element;
use smallvec::SmallVec;
use std::any::TypeId;

/// Whether products of many rows (hundreds or more) of `T` in `precision` should take a
/// packed matrix rather than gemm: bf16 products of f32 always do (their kernels are there,
/// see [`runs_bf16_kernels`]); others where the panel kernel beats gemm, with AVX-512 (it
/// reads A in place) but not with AVX2 (x·Wᵀ over 8,192 rows by 256 × 256: ~37 GFLOP/s
/// against gemm's ~85 on a Zen 3). Few rows (a batch at one time step) suit it everywhere.
pub fn suits_many_rows<T: 'static>(precision: Precision) -> bool {
    if runs_bf16_kernels::<T>(precision) {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether products of `T` in `precision` run the bf16 kernels: bf16 products of f32.
pub fn runs_bf16_kernels<T: 'static>(precision: Precision) -> bool {
    precision == Precision::Bf16 && TypeId::of::<T>() == TypeId::of::<f32>()
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
    /// `v`, column j of a product's row, plus what `self` says (`current`: C's value there).
    pub(super) fn added(self, v: T, current: T, j: usize) -> T {
        match self {
            AddTo::Nothing => v,
            AddTo::Output => v + current,
            AddTo::Row(row) => v + row[j],
        }
    }
}

impl<'a, T> AddTo<'a, T> {
    /// The same addition with the row (if any) seen through `f`.
    pub fn map<U>(self, f: impl FnOnce(&'a [T]) -> &'a [U]) -> AddTo<'a, U> {
        match self {
            AddTo::Nothing => AddTo::Nothing,
            AddTo::Output => AddTo::Output,
            AddTo::Row(row) => AddTo::Row(f(row)),
        }
    }
}

/// Rows of a transposed B packed at a time (a 16-row tile of a 32-wide panel is 2 KiB).
const TRANSPOSE_TILE: usize = 16;

/// Rows of B per pass (a panel slice of `K_BLOCK × width` stays in L1).
pub(super) const K_BLOCK: usize = 256;
/// Rows of A per pass (an `M_BLOCK × K_BLOCK` slice of A stays in L2).
pub(super) const M_BLOCK: usize = 192;

/// B (`k × n`) packed into column panels for repeated products.
#[derive(Clone)]
pub struct PackedMatrix<T> {
    k: usize,
    n: usize,
    panels: Panels<T>,
}

#[derive(Clone)]
enum Panels<T> {
    /// Panel p, row r, column j at `(p·k + r)·width + j`, for `kernel`.
    Full {
        data: Vec<T>,
        kernel: PanelKernel<T>,
    },
    /// Packed for the bf16 kernels.
    Bf16(Bf16Panels),
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

    /// [`stacked`](Self::stacked) in `precision`: bf16 products of f32 matrices run the bf16
    /// kernels ([`Bf16Kernel::current`]: the best this CPU has); an f64 matrix is packed in
    /// full precision (its mixed-precision products are f64 products of operands rounded by
    /// the caller).
    pub fn stacked_in(blocks: &[MatRef<T>], precision: Precision) -> Self {
        if runs_bf16_kernels::<T>(precision) {
            Self::bf16_with(blocks, Bf16Kernel::current())
        } else {
            Self::stacked(blocks)
        }
    }

    /// [`stacked`](Self::stacked) in bf16, for `kernel` (f32 only; the kernel must run on this
    /// CPU): tests compare the kernels through it.
    pub fn bf16_with(blocks: &[MatRef<T>], kernel: Bf16Kernel) -> Self {
        assert!(
            runs_bf16_kernels::<T>(Precision::Bf16),
            "packed matmul: bf16 kernels take f32 matrices"
        );
        assert!(
            kernel.available(),
            "packed matmul: this CPU cannot run {kernel:?}"
        );
        let (k, n) = Self::extent(blocks);
        PackedMatrix {
            k,
            n,
            panels: Panels::Bf16(Bf16Panels::new(blocks, k, n, kernel)),
        }
    }

    fn extent(blocks: &[MatRef<T>]) -> (usize, usize) {
        let n = blocks.first().map_or(0, |b| b.cols);
        assert!(
            blocks.iter().all(|b| b.cols == n),
            "packed matmul: stacked blocks with different widths"
        );
        (blocks.iter().map(|b| b.rows).sum(), n)
    }

    fn with_kernel(blocks: &[MatRef<T>], kernel: PanelKernel<T>) -> Self {
        let ((k, n), w) = (Self::extent(blocks), kernel.width);
        let panels = n.div_ceil(w);
        let mut data = vec![T::zero(); panels * k * w];
        let mut first_row = 0;
        for b in blocks {
            pack_rows(*b, first_row, k, w, &mut data);
            first_row += b.rows;
        }
        PackedMatrix {
            k,
            n,
            panels: Panels::Full { data, kernel },
        }
    }

    /// The full-precision panels and their width (the flushing bf16 kernel reads the
    /// portable bf16 packing's panels).
    pub(super) fn full_panels(&self) -> (&[T], usize) {
        match &self.panels {
            Panels::Full { data, kernel } => (data, kernel.width),
            Panels::Bf16(_) => unreachable!("full_panels of a bf16 packing"),
        }
    }

    /// Rows of B (K, the products' inner dimension).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of B (N, the products' width).
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
            ldc >= n && (m - 1) * ldc + n <= c.len(),
            "packed matmul: output slice of {} cannot hold {m}x{n} with row stride {ldc}",
            c.len()
        );
        if k == 0 {
            // An empty sum: C ← 0 + what `add` says.
            for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
                c[i * ldc + j] = add.added(T::zero(), c[i * ldc + j], j);
            }
            return;
        }
        let (data, kernel) = match &self.panels {
            Panels::Full { data, kernel } => (data, kernel),
            Panels::Bf16(panels) => {
                let c = bytemuck::cast_slice_mut(c);
                let add = add.map(bytemuck::cast_slice);
                return panels.product(blocks, k, n, c, ldc, add);
            }
        };
        // Blocks of K keep a panel's slice in L1 and blocks of M keep A's slice in L2 while
        // the kernel sweeps the panels.
        let (w, panels) = (kernel.width, n.div_ceil(kernel.width));
        let panel_at = |j: usize, k0: usize| data[j * k * w + k0 * w..].as_ptr();
        let mut many: SmallVec<[APiece<T>; 8]> = SmallVec::new();
        let run = if a_transposed {
            kernel.run_transposed
        } else {
            kernel.run
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
                            c.as_mut_ptr().add(m0 * ldc + panel * w),
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

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
