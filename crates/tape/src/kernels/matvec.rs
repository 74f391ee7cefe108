//! y ← W·x for a single vector x and a weight W stored `[rows, cols]` (a Linear's weight, a
//! recurrent layer's `weight_ih`/`weight_hh`): batch-1 inference, which reads every weight
//! once per step and so runs at the speed weights stream from cache or memory. W is packed
//! once into panels of [`PANEL_ROWS`] rows, each column's weights of a panel contiguous, so
//! a product reads the weights in one sequential pass and keeps a panel's sums in registers.
//! Weights are kept in full precision or in bf16 (half the bytes; x is then rounded to bf16
//! too, and the products are exact). Every sum adds its terms in a fixed order (bf16: in
//! pairs of columns), with the same roundings on every machine and vector width, so all
//! give the same bits.

use super::bf16::{bf16_bits, round_slice_bf16};
use super::packed::AddTo;
use super::scratch::as_elements;
use super::simd::widest;
use super::MatRef;
use crate::Element;
use std::cell::RefCell;
use std::ops::Range;

/// Output rows per panel.
pub const PANEL_ROWS: usize = 32;

/// How a packed weight holds its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The element type's own (f32 or f64).
    #[default]
    Full,
    /// bfloat16 weights, and inputs rounded to bf16, with sums in the element type.
    Bf16,
}

impl Precision {
    /// `Bf16` if `bf16`, else `Full`.
    pub fn bf16_if(bf16: bool) -> Self {
        if bf16 {
            Precision::Bf16
        } else {
            Precision::Full
        }
    }
}

/// A `rows × cols` weight packed for products with single vectors.
#[derive(Clone)]
pub struct PackedRows<T> {
    rows: usize,
    cols: usize,
    weights: Weights<T>,
}

#[derive(Clone)]
enum Weights<T> {
    /// Panel p, column k, row r at `(p·cols + k)·PANEL_ROWS + r`.
    Full(Vec<T>),
    /// Columns in pairs (a last odd column paired with a zero): panel p, pair q, row r at
    /// `(p·pairs + q)·PANEL_ROWS + r`, column 2q in the low 16 bits, 2q + 1 in the high.
    Bf16(Vec<u32>),
}

impl<T: Element> PackedRows<T> {
    /// Packs `w` (any strides) in `precision`.
    pub fn new(w: MatRef<T>, precision: Precision) -> Self {
        let (rows, cols) = (w.rows, w.cols);
        let panels = rows.div_ceil(PANEL_ROWS);
        let at = |r: usize, k: usize| {
            if r < rows && k < cols {
                w.data[r * w.row_stride + k * w.col_stride]
            } else {
                T::zero()
            }
        };
        let weights = match precision {
            Precision::Full => Weights::Full(
                (0..panels * cols * PANEL_ROWS)
                    .map(|i| {
                        let (k, p) = (i / PANEL_ROWS % cols, i / PANEL_ROWS / cols);
                        at(p * PANEL_ROWS + i % PANEL_ROWS, k)
                    })
                    .collect(),
            ),
            Precision::Bf16 => {
                let pairs = cols.div_ceil(2);
                let half = |r: usize, k: usize| u32::from(bf16_bits(at(r, k).to_f32_nearest()));
                Weights::Bf16(
                    (0..panels * pairs * PANEL_ROWS)
                        .map(|i| {
                            let (q, p) = (i / PANEL_ROWS % pairs, i / PANEL_ROWS / pairs);
                            let r = p * PANEL_ROWS + i % PANEL_ROWS;
                            half(r, 2 * q) | half(r, 2 * q + 1) << 16
                        })
                        .collect(),
                )
            }
        };
        PackedRows {
            rows,
            cols,
            weights,
        }
    }

    /// Rows of W (the product's length).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of W (x's length).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// How the weights are held.
    pub fn precision(&self) -> Precision {
        match self.weights {
            Weights::Full(_) => Precision::Full,
            Weights::Bf16(_) => Precision::Bf16,
        }
    }

    /// Bytes of weights one product reads.
    pub fn bytes(&self) -> usize {
        match &self.weights {
            Weights::Full(w) => std::mem::size_of_val(w.as_slice()),
            Weights::Bf16(w) => std::mem::size_of_val(w.as_slice()),
        }
    }

    /// y ← W·x + what `add` says (a row of `rows` values for [`AddTo::Row`]).
    pub fn mul_vec(&self, x: &[T], y: &mut [T], add: AddTo<'_, T>) {
        self.mul_vec_rows(x, 0..self.rows, y, add)
    }

    /// Rows `rows` of W·x + what `add` says into `y` (`rows.len()` values; a row of as many
    /// for [`AddTo::Row`]); `rows` starts at a panel, a multiple of [`PANEL_ROWS`]. Threads
    /// taking disjoint row ranges compute exactly what one product would.
    pub fn mul_vec_rows(&self, x: &[T], rows: Range<usize>, y: &mut [T], add: AddTo<'_, T>) {
        let cols = self.cols;
        assert!(
            x.len() == cols && y.len() == rows.len() && rows.end <= self.rows,
            "matvec: W is {}x{cols}, x has {} values, y {} for rows {rows:?}",
            self.rows,
            x.len(),
            y.len()
        );
        assert!(
            rows.start.is_multiple_of(PANEL_ROWS),
            "matvec: rows {rows:?} do not start at a panel"
        );
        if let AddTo::Row(row) = add {
            assert!(
                row.len() == rows.len(),
                "matvec: a row of {} to add to {} outputs",
                row.len(),
                rows.len()
            );
        }
        let first = rows.start / PANEL_ROWS;
        match &self.weights {
            Weights::Full(w) => widest(
                #[inline(always)]
                || {
                    each_panel(
                        w,
                        cols * PANEL_ROWS,
                        first,
                        y,
                        add,
                        #[inline(always)]
                        |panel: &[T]| full_panel(panel, x),
                    )
                },
            ),
            Weights::Bf16(w) => {
                let pairs = cols.div_ceil(2);
                with_scratch(2 * pairs, |rounded: &mut [T]| {
                    rounded[..cols].copy_from_slice(x);
                    round_slice_bf16(&mut rounded[..cols]);
                    rounded[cols..].fill(T::zero());
                    let rounded = &*rounded;
                    widest(
                        #[inline(always)]
                        || {
                            each_panel(
                                w,
                                pairs * PANEL_ROWS,
                                first,
                                y,
                                add,
                                #[inline(always)]
                                |panel: &[u32]| bf16_panel(panel, rounded),
                            )
                        },
                    )
                })
            }
        }
    }
}

/// For each panel of `y` (`PANEL_ROWS` rows from panel `first` of the packed weights `w`,
/// `stride` words a panel): its sums from `sums(panel's weights)`, plus what `add` says.
/// Callers pass `sums` as an `#[inline(always)]` closure: one left to the compiler was not
/// inlined into the vectorized caller and made f32 generation 0.77–0.83× as fast (8 pairs).
#[inline(always)]
fn each_panel<W, T: Element>(
    w: &[W],
    stride: usize,
    first: usize,
    y: &mut [T],
    add: AddTo<'_, T>,
    sums: impl Fn(&[W]) -> [T; PANEL_ROWS],
) {
    for (p, out) in y.chunks_mut(PANEL_ROWS).enumerate() {
        let panel_sums = sums(&w[(first + p) * stride..(first + p + 1) * stride]);
        for (j, (o, &s)) in out.iter_mut().zip(&panel_sums).enumerate() {
            *o = add.added(s, *o, p * PANEL_ROWS + j);
        }
    }
}

thread_local! {
    /// The rounded input of this thread's bf16 products, kept between calls: a step makes
    /// several products and allocates nothing.
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with `len` values of this thread's scratch space (any values).
fn with_scratch<T: Element, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    SCRATCH.with(|cell| f(as_elements(&mut cell.borrow_mut(), len)))
}

/// One panel's sums: Σ_k W[r, k]·x_k in column order.
#[inline(always)]
fn full_panel<T: Element>(panel: &[T], x: &[T]) -> [T; PANEL_ROWS] {
    let mut sums = [T::zero(); PANEL_ROWS];
    for (w, &xk) in panel.chunks_exact(PANEL_ROWS).zip(x) {
        for (s, &wr) in sums.iter_mut().zip(w) {
            *s += wr * xk;
        }
    }
    sums
}

/// One bf16 panel's sums: per pair of columns, the two products' sum rounded once, then
/// added to the row's sum, pairs in column order. (Half the dependent additions of a term by
/// term sum: 1.14× the characters per second of `generate-lstm256x2-200chars-bf16`, median
/// of 8 pairs on a Zen 3.)
#[inline(always)]
fn bf16_panel<T: Element>(panel: &[u32], x: &[T]) -> [T; PANEL_ROWS] {
    let mut sums = [T::zero(); PANEL_ROWS];
    for (w, xs) in panel.chunks_exact(PANEL_ROWS).zip(x.chunks_exact(2)) {
        let (even, odd) = (xs[0], xs[1]);
        for (s, &pair) in sums.iter_mut().zip(w) {
            // Both products are exact: the fused multiply-add rounds their sum once, on
            // every machine (products below f32's normal range aside).
            let even_term = T::of_f32(f32::from_bits(pair << 16)) * even;
            *s += T::of_f32(f32::from_bits(pair & 0xFFFF_0000)).mul_add(odd, even_term);
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16::round_slice_bf16;

    fn weights(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.3e-3)
            .collect()
    }

    /// The product in the documented order, element by element.
    fn reference(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows)
            .map(|r| (0..cols).fold(0.0, |s, k| s + w[r * cols + k] * x[k]))
            .collect()
    }

    #[test]
    fn full_precision_matches_the_sum_in_column_order_bit_for_bit() {
        for (rows, cols) in [(1, 1), (31, 5), (32, 32), (65, 256), (100, 3), (7, 0)] {
            let w = weights(rows, cols);
            let x: Vec<f32> = (0..cols).map(|k| (k as f32 * 0.37).sin()).collect();
            let packed = PackedRows::new(MatRef::row_major(&w, rows, cols), Precision::Full);
            let mut y = vec![f32::NAN; rows];
            packed.mul_vec(&x, &mut y, AddTo::Nothing);
            assert_eq!(y, reference(&w, &x, rows, cols), "{rows}x{cols}");
            let bias: Vec<f32> = (0..rows).map(|r| r as f32).collect();
            packed.mul_vec(&x, &mut y, AddTo::Row(&bias));
            let expected: Vec<f32> = reference(&w, &x, rows, cols)
                .iter()
                .zip(&bias)
                .map(|(a, b)| a + b)
                .collect();
            assert_eq!(y, expected);
            packed.mul_vec(&x, &mut y, AddTo::Output);
            let twice: Vec<f32> = expected
                .iter()
                .zip(reference(&w, &x, rows, cols))
                .map(|(a, b)| b + a)
                .collect();
            assert_eq!(y, twice);
        }
    }

    /// Disjoint row ranges, as threads would take them, make up the whole product.
    #[test]
    fn row_ranges_compute_their_rows_of_the_product() {
        let (rows, cols) = (100, 9);
        let w = weights(rows, cols);
        let x: Vec<f32> = (0..cols).map(|k| k as f32 * 0.3 - 1.0).collect();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32).collect();
        for precision in [Precision::Full, Precision::Bf16] {
            let packed = PackedRows::new(MatRef::row_major(&w, rows, cols), precision);
            let mut whole = vec![0.0; rows];
            packed.mul_vec(&x, &mut whole, AddTo::Row(&bias));
            let mut pieces = vec![0.0; rows];
            for range in [0..32, 32..96, 96..100] {
                let add = AddTo::Row(&bias[range.clone()]);
                packed.mul_vec_rows(&x, range.clone(), &mut pieces[range], add);
            }
            assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn a_transposed_view_packs_the_same_weights() {
        let (rows, cols) = (40, 9);
        let w = weights(rows, cols);
        // wt holds Wᵀ row-major; its transposed view is W.
        let wt: Vec<f32> = (0..cols * rows)
            .map(|i| w[(i % rows) * cols + i / rows])
            .collect();
        let x: Vec<f32> = (0..cols).map(|k| k as f32 - 4.0).collect();
        for precision in [Precision::Full, Precision::Bf16] {
            let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
            PackedRows::new(MatRef::row_major(&w, rows, cols), precision).mul_vec(
                &x,
                &mut a,
                AddTo::Nothing,
            );
            PackedRows::new(MatRef::row_major(&wt, cols, rows).t(), precision).mul_vec(
                &x,
                &mut b,
                AddTo::Nothing,
            );
            assert_eq!(a, b);
        }
    }

    #[test]
    fn bf16_rounds_both_operands_and_sums_pairs_of_columns() {
        for (rows, cols) in [(33, 7), (64, 256), (3, 1)] {
            let w = weights(rows, cols);
            let x: Vec<f32> = (0..cols).map(|k| (k as f32 * 0.91).cos() * 0.7).collect();
            let packed = PackedRows::new(MatRef::row_major(&w, rows, cols), Precision::Bf16);
            assert_eq!(packed.precision(), Precision::Bf16);
            assert_eq!(
                packed.bytes(),
                rows.div_ceil(32) * 32 * cols.div_ceil(2) * 4
            );
            let mut y = vec![0.0; rows];
            packed.mul_vec(&x, &mut y, AddTo::Nothing);
            let (mut wb, mut xb) = (w.clone(), x.clone());
            round_slice_bf16(&mut wb);
            round_slice_bf16(&mut xb);
            let expected: Vec<f32> = (0..rows)
                .map(|r| {
                    let term = |k: usize| {
                        if k < cols {
                            wb[r * cols + k] * xb[k]
                        } else {
                            0.0
                        }
                    };
                    (0..cols.div_ceil(2)).fold(0.0, |s, q| s + (term(2 * q + 1) + term(2 * q)))
                })
                .collect();
            assert_eq!(y, expected, "{rows}x{cols}");
            // Within bf16's precision of the full product.
            let full = reference(&w, &x, rows, cols);
            for (a, b) in y.iter().zip(&full) {
                assert!((a - b).abs() < 0.02, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn f64_products_match_their_reference() {
        let (rows, cols) = (70, 13);
        let w: Vec<f64> = weights(rows, cols).iter().map(|&v| f64::from(v)).collect();
        let x: Vec<f64> = (0..cols).map(|k| k as f64 * 0.1).collect();
        let mut y = vec![0.0; rows];
        PackedRows::new(MatRef::row_major(&w, rows, cols), Precision::Full).mul_vec(
            &x,
            &mut y,
            AddTo::Nothing,
        );
        for (r, v) in y.iter().enumerate() {
            let e = (0..cols).fold(0.0, |s, k| s + w[r * cols + k] * x[k]);
            assert_eq!(*v, e);
        }
    }

    #[test]
    #[should_panic(expected = "matvec: W is 4x3, x has 2 values, y 4 for rows 0..4")]
    fn a_wrong_length_names_both_shapes() {
        let w = vec![0.0f32; 12];
        PackedRows::new(MatRef::row_major(&w, 4, 3), Precision::Full).mul_vec(
            &[1.0, 2.0],
            &mut [0.0; 4],
            AddTo::Nothing,
        );
    }
}
