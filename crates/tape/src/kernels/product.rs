//! One product C ← A·B (+ C) in a chosen precision: bf16 products of f32 matrices run the
//! bf16 kernels (B packed for the call), as every bf16 product does, so that mixed precision
//! gives the same bits with or without AVX512_BF16; all others run `gemm`.

use super::packed::{runs_bf16_kernels, AddTo, PackedMatrix};
use super::{gemm, MatRef, Precision};
use crate::Element;

/// C ← A·B, or C ← A·B + C if `accumulate`; C is `a.rows × b.cols` with row stride `ldc`. In
/// bf16, A has unit column or unit row stride (as [`PackedMatrix::product`] takes it); an
/// f64 product in bf16 multiplies the values as they are (the caller rounds them).
pub fn product<T: Element>(
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
    precision: Precision,
) {
    if runs_bf16_kernels::<T>(precision) {
        let add = if accumulate {
            AddTo::Output
        } else {
            AddTo::Nothing
        };
        PackedMatrix::stacked_in(&[b], precision).product(a, c, ldc, add);
    } else {
        let beta = if accumulate { T::one() } else { T::zero() };
        gemm(T::one(), a, b, beta, c, ldc);
    }
}
