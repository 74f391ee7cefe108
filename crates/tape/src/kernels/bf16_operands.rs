//! The operands of bf16 products: B packed once for its kernel (pairs of bf16 rows for
//! `vdpbf16ps`; for the portable path, f32 rows in `vdpbf16ps`'s order packed for the
//! full-precision panel kernels), A rounded per product into the same form, and the loop
//! over blocks of K and M that runs the native kernel, each block of K summed on its own and
//! added to C, as the full-precision products do.

use super::bf16::bf16_bits;
use super::bf16_panel::{flush_needed, flushing_product, Bf16Kernel, BF16_WIDTH};
use super::packed::{AddTo, PackedMatrix, K_BLOCK, M_BLOCK};
use super::simd::widest;
use super::MatRef;
use crate::Element;
use std::cell::RefCell;

/// B (`k × n`) packed for a bf16 kernel.
#[derive(Clone)]
pub(crate) enum Bf16Panels {
    /// Pairs of rows in bf16 (a last odd row paired with zeros), row 2q in the low half:
    /// panel p, pair q, column j at `data[p·⌈k/2⌉ + q].0[j]`.
    Native { data: Vec<PanelRow> },
    /// The rounded values as f32, rows 2q + 1 and 2q swapped (an odd k padded with a zero
    /// row), packed for the full-precision panel kernels; `least_exponent` is the least
    /// biased exponent of B's nonzero values (255 if none), for `flush_needed`.
    Portable {
        rows: Box<PackedMatrix<f32>>,
        least_exponent: u8,
    },
}

/// One pair of rows of a native panel, aligned to a cache line as the kernel reads it.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct PanelRow([u32; BF16_WIDTH]);

thread_local! {
    /// A product's left-hand matrix as its kernel reads it, and one row of bf16 values, kept
    /// between calls so that a product allocates nothing.
    static SCRATCH: RefCell<(Vec<u32>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `row`'s values rounded to bf16, into `out` (inlined into callers' `widest` loops).
#[inline(always)]
fn round_row<T: Element>(m: MatRef<T>, row: usize, out: &mut [u16]) {
    if m.col_stride == 1 {
        let values = &m.data[row * m.row_stride..][..m.cols];
        for (o, &v) in out.iter_mut().zip(values) {
            *o = bf16_bits(v.to_f32_nearest());
        }
    } else {
        for (p, o) in out.iter_mut().enumerate() {
            *o = bf16_bits(m.data[row * m.row_stride + p * m.col_stride].to_f32_nearest());
        }
    }
}

/// The least biased exponent among the nonzero bf16 values `halves` (255 if none).
#[inline(always)]
pub(crate) fn least_exponent(halves: &[u16]) -> u8 {
    let mut least = 255u16;
    for &h in halves {
        let exponent = if h & 0x7FFF == 0 {
            255
        } else {
            (h >> 7) & 0xFF
        };
        least = least.min(exponent);
    }
    least as u8
}

impl Bf16Panels {
    /// Packs the `k × n` matrix made of `blocks` stacked (f32 values, any strides) for
    /// `kernel`.
    pub fn new<T: Element>(blocks: &[MatRef<T>], k: usize, n: usize, kernel: Bf16Kernel) -> Self {
        let (pairs, panels) = (k.div_ceil(2), n.div_ceil(BF16_WIDTH));
        let rows: Vec<(&MatRef<T>, usize)> = blocks
            .iter()
            .flat_map(|b| (0..b.rows).map(move |r| (b, r)))
            .collect();
        let native = kernel == Bf16Kernel::Native;
        let mut pair_rows =
            vec![PanelRow([0; BF16_WIDTH]); if native { panels * pairs } else { 0 }];
        let mut values = vec![0.0f32; if native { 0 } else { 2 * pairs * n }];
        let (mut even, mut odd) = (vec![0u16; n], vec![0u16; n]);
        let least = widest(
            #[inline(always)]
            || {
                let mut least = 255;
                for q in 0..pairs {
                    round_row(*rows[2 * q].0, rows[2 * q].1, &mut even);
                    match rows.get(2 * q + 1) {
                        Some(&(b, r)) => round_row(*b, r, &mut odd),
                        None => odd.fill(0),
                    }
                    least = least.min(least_exponent(&even)).min(least_exponent(&odd));
                    if native {
                        let halves = even.chunks(BF16_WIDTH).zip(odd.chunks(BF16_WIDTH));
                        for (panel, (even, odd)) in halves.enumerate() {
                            let out = &mut pair_rows[panel * pairs + q].0;
                            for ((o, &e), &d) in out.iter_mut().zip(even).zip(odd) {
                                *o = u32::from(e) | u32::from(d) << 16;
                            }
                        }
                    } else {
                        let pair = &mut values[2 * q * n..(2 * q + 2) * n];
                        let (first, second) = pair.split_at_mut(n);
                        for (out, halves) in [(first, &odd), (second, &even)] {
                            for (v, &h) in out.iter_mut().zip(halves.iter()) {
                                *v = f32::from_bits(u32::from(h) << 16);
                            }
                        }
                    }
                }
                least
            },
        );
        if native {
            return Bf16Panels::Native { data: pair_rows };
        }
        let rows = Box::new(PackedMatrix::new(MatRef::row_major(&values, 2 * pairs, n)));
        Bf16Panels::Portable {
            rows,
            least_exponent: least,
        }
    }

    /// C ← A·B + what `add` says, for A given as column blocks (`k` columns in all, any
    /// strides, checked by the caller) and C `m × n` with row stride `ldc` (checked too).
    pub fn product<T: Element>(
        &self,
        blocks: &[MatRef<T>],
        k: usize,
        n: usize,
        c: &mut [f32],
        ldc: usize,
        add: AddTo<'_, f32>,
    ) {
        let (m, pairs) = (blocks[0].rows, k.div_ceil(2));
        SCRATCH.with(|cell| {
            let (a, row) = &mut *cell.borrow_mut();
            a.clear();
            row.clear();
            row.resize(2 * pairs, 0);
            let native = matches!(self, Bf16Panels::Native { .. });
            a.resize(m * if native { pairs } else { 2 * pairs }, 0);
            let least_a = widest(
                #[inline(always)]
                || {
                    let mut least = 255;
                    for i in 0..m {
                        let mut first = 0;
                        for b in blocks {
                            round_row(*b, i, &mut row[first..first + b.cols]);
                            first += b.cols;
                        }
                        least = least_exponent(row).min(least);
                        if native {
                            let out = &mut a[i * pairs..(i + 1) * pairs];
                            for (o, h) in out.iter_mut().zip(row.chunks_exact(2)) {
                                *o = u32::from(h[0]) | u32::from(h[1]) << 16;
                            }
                        } else {
                            let out = &mut a[2 * i * pairs..2 * (i + 1) * pairs];
                            for (o, h) in out.chunks_exact_mut(2).zip(row.chunks_exact(2)) {
                                o[0] = u32::from(h[1]) << 16;
                                o[1] = u32::from(h[0]) << 16;
                            }
                        }
                    }
                    least
                },
            );
            match self {
                #[cfg(target_arch = "x86_64")]
                Bf16Panels::Native { data } => native_product(data, a, m, k, n, c, ldc, add),
                #[cfg(not(target_arch = "x86_64"))]
                Bf16Panels::Native { .. } => unreachable!("no native bf16 kernel here"),
                Bf16Panels::Portable {
                    rows,
                    least_exponent,
                } => {
                    let a = MatRef::row_major(bytemuck::cast_slice(a), m, 2 * pairs);
                    if flush_needed(least_a, *least_exponent) {
                        flushing_product(rows, a, c, ldc, add)
                    } else {
                        rows.product(a, c, ldc, add)
                    }
                }
            }
        })
    }
}

/// The native kernel over blocks of K and M: A as `m` rows of ⌈k/2⌉ pairs, B's `panels`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn native_product(
    panels: &[PanelRow],
    a: &[u32],
    m: usize,
    k: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    add: AddTo<'_, f32>,
) {
    let pairs = k.div_ceil(2);
    for k0 in (0..k).step_by(K_BLOCK) {
        let (q0, block_pairs) = (k0 / 2, K_BLOCK.min(k - k0).div_ceil(2));
        for m0 in (0..m).step_by(M_BLOCK) {
            let mc = M_BLOCK.min(m - m0);
            for panel in 0..n.div_ceil(BF16_WIDTH) {
                let cols = BF16_WIDTH.min(n - panel * BF16_WIDTH);
                let add = match add {
                    _ if k0 > 0 => AddTo::Output,
                    AddTo::Row(row) => AddTo::Row(&row[panel * BF16_WIDTH..]),
                    first => first,
                };
                // SAFETY: A's pairs (m × pairs), the panel (pairs rows of BF16_WIDTH,
                // aligned to 64 bytes) and C's rows (m × cols at column
                // panel·BF16_WIDTH, stride ldc, checked by the caller) hold every value
                // the kernel reads or writes; the CPU has AVX512_BF16 (checked when B
                // was packed for the native kernel).
                unsafe {
                    super::bf16_panel::native(
                        mc,
                        a[m0 * pairs + q0..].as_ptr(),
                        pairs,
                        block_pairs,
                        panels[panel * pairs + q0].0.as_ptr(),
                        c.as_mut_ptr().add(m0 * ldc + panel * BF16_WIDTH),
                        ldc,
                        cols,
                        add,
                    )
                }
            }
        }
    }
}
