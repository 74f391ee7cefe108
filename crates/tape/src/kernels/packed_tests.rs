//! Tests of the packed products: every panel kernel this CPU has, and the portable one,
//! against naive sums.

use super::*;
use crate::kernels::panel::*;
use rand::SeedableRng;

/// Every kernel this CPU has, and the portable one, on shapes with row and column
/// remainders, a transposed B, strided A, accumulation and an added row.
fn check<T: Element>(kernels: &[PanelKernel<T>], tolerance: f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut shapes: Vec<(usize, usize, usize)> = (1..=25).map(|m| (m, 3 + 2 * m, 5 * m)).collect();
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
                        let (row_stride, col_stride) = if transposed { (1, *ld) } else { (*ld, 1) };
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

#[test]
fn packed_products_match_naive_f64() {
    check::<f64>(&kernels_f64(), 1e-15);
}

#[test]
fn packed_products_match_naive_f32() {
    check::<f32>(&kernels_f32(), 1e-6);
}
