//! The operands of bf16 products: B packed once into panels of bf16 pairs of rows, A rounded
//! per product into the layout its kernel reads (pairs for `vdpbf16ps`, the rounded f32
//! values for the portable kernel), and the loop over blocks of K and M that runs the
//! kernel, each block of K summed on its own and added to C, as the full-precision products
//! do.

use super::bf16::bf16_bits;
use super::bf16_panel::{flush_needed, Bf16Kernel, BF16_WIDTH};
use super::packed::{AddTo, K_BLOCK, M_BLOCK};
use super::simd::widest;
use super::MatRef;
use crate::Element;
use std::cell::RefCell;

/// B in bf16 pairs of rows (a last odd row paired with zeros): panel p, pair q, column j at
/// `data[p·⌈k/2⌉ + q].0[j]`, row 2q in the low half.
#[derive(Clone)]
pub(crate) struct Bf16Panels {
    data: Vec<PanelRow>,
    /// The least biased exponent of B's nonzero values (255 if none), for `flush_needed`.
    least_exponent: u8,
    kernel: Bf16Kernel,
}

/// One pair of rows of a panel, aligned to a cache line as the native kernel reads it.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct PanelRow([u32; BF16_WIDTH]);

thread_local! {
    /// A product's left-hand matrix as its kernel reads it, and one row of bf16 values, kept
    /// between calls so that a product allocates nothing.
    static SCRATCH: RefCell<(Vec<u32>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `row`'s values rounded to bf16, into `out`.
fn round_row<T: Element>(m: MatRef<T>, row: usize, out: &mut [u16]) {
    if m.col_stride == 1 {
        let values = &m.data[row * m.row_stride..][..m.cols];
        widest(
            #[inline(always)]
            || {
                for (o, &v) in out.iter_mut().zip(values) {
                    *o = bf16_bits(v.to_f32_nearest());
                }
            },
        )
    } else {
        for (p, o) in out.iter_mut().enumerate() {
            *o = bf16_bits(m.data[row * m.row_stride + p * m.col_stride].to_f32_nearest());
        }
    }
}

/// The least biased exponent among the nonzero bf16 values `halves` (255 if none).
pub(crate) fn least_exponent(halves: &[u16]) -> u8 {
    widest(
        #[inline(always)]
        || {
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
        },
    )
}

impl Bf16Panels {
    /// Packs the `k × n` matrix made of `blocks` stacked (f32 values, any strides) for
    /// `kernel`.
    pub fn new<T: Element>(blocks: &[MatRef<T>], k: usize, n: usize, kernel: Bf16Kernel) -> Self {
        let (pairs, panels) = (k.div_ceil(2), n.div_ceil(BF16_WIDTH));
        let mut data = vec![PanelRow([0; BF16_WIDTH]); panels * pairs];
        let rows: Vec<(&MatRef<T>, usize)> = blocks
            .iter()
            .flat_map(|b| (0..b.rows).map(move |r| (b, r)))
            .collect();
        let (mut even, mut odd) = (vec![0u16; n], vec![0u16; n]);
        let mut least = 255;
        for q in 0..pairs {
            round_row(*rows[2 * q].0, rows[2 * q].1, &mut even);
            match rows.get(2 * q + 1) {
                Some(&(b, r)) => round_row(*b, r, &mut odd),
                None => odd.fill(0),
            }
            least = least.min(least_exponent(&even)).min(least_exponent(&odd));
            for (panel, (even, odd)) in even
                .chunks(BF16_WIDTH)
                .zip(odd.chunks(BF16_WIDTH))
                .enumerate()
            {
                let out = &mut data[panel * pairs + q].0;
                for ((o, &e), &d) in out.iter_mut().zip(even).zip(odd) {
                    *o = u32::from(e) | u32::from(d) << 16;
                }
            }
        }
        Bf16Panels {
            data,
            least_exponent: least,
            kernel,
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
        // The portable kernel reads A's rounded values as f32, two words a pair.
        let words = match self.kernel {
            Bf16Kernel::Native => 1,
            Bf16Kernel::Portable => 2,
        };
        let lda = pairs * words;
        SCRATCH.with(|cell| {
            let (a, row) = &mut *cell.borrow_mut();
            a.clear();
            row.clear();
            row.resize(2 * pairs, 0);
            let mut least_a = 255;
            for i in 0..m {
                let mut first = 0;
                for b in blocks {
                    round_row(*b, i, &mut row[first..first + b.cols]);
                    first += b.cols;
                }
                least_a = least_exponent(row).min(least_a);
                match self.kernel {
                    Bf16Kernel::Native => a.extend(
                        row.chunks_exact(2)
                            .map(|h| u32::from(h[0]) | u32::from(h[1]) << 16),
                    ),
                    Bf16Kernel::Portable => a.extend(row.iter().map(|&h| u32::from(h) << 16)),
                }
            }
            let flush = flush_needed(least_a, self.least_exponent);
            let run = self.kernel.function();
            let panel_count = n.div_ceil(BF16_WIDTH);
            for k0 in (0..k).step_by(K_BLOCK) {
                let (q0, block_pairs) = (k0 / 2, K_BLOCK.min(k - k0).div_ceil(2));
                for m0 in (0..m).step_by(M_BLOCK) {
                    let mc = M_BLOCK.min(m - m0);
                    for panel in 0..panel_count {
                        let cols = BF16_WIDTH.min(n - panel * BF16_WIDTH);
                        let add = match add {
                            _ if k0 > 0 => AddTo::Output,
                            AddTo::Row(row) => AddTo::Row(&row[panel * BF16_WIDTH..]),
                            first => first,
                        };
                        // SAFETY: A's words (m × lda), the panel (pairs rows of BF16_WIDTH,
                        // aligned to 64 bytes) and C's
                        // rows (m × cols at column panel·BF16_WIDTH, stride ldc, checked by
                        // the caller) hold every value the kernel reads or writes; the
                        // kernel runs on this CPU (checked when B was packed).
                        unsafe {
                            run(
                                mc,
                                a[m0 * lda + q0 * words..].as_ptr(),
                                lda,
                                block_pairs,
                                self.data[panel * pairs + q0].0.as_ptr(),
                                c.as_mut_ptr().add(m0 * ldc + panel * BF16_WIDTH),
                                ldc,
                                cols,
                                add,
                                flush,
                            )
                        }
                    }
                }
            }
        })
    }
}
