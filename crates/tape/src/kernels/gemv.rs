//! y ← α·x·M + β·y for a single row x: the batch-1 path. matrixmultiply packs panels for
//! every call, which costs far more than the product itself at these shapes.

use super::gemm::MatRef;
use super::simd::widest;
use crate::Element;

/// Computes y ← α·x·M + β·y when M has a contiguous row or column and x is contiguous.
/// Returns false (doing nothing) for other layouts, which the caller sends to gemm.
pub(crate) fn try_gemv<T: Element>(
    alpha: T,
    x: &[T],
    x_stride: usize,
    m: MatRef<T>,
    beta: T,
    y: &mut [T],
) -> bool {
    if x_stride != 1 && m.rows > 1 {
        return false;
    }
    let x = &x[..m.rows];
    if m.col_stride == 1 {
        widest(
            #[inline(always)]
            || rows_axpy(alpha, x, m, beta, y),
        );
        true
    } else if m.row_stride == 1 {
        widest(
            #[inline(always)]
            || cols_dot(alpha, x, m, beta, y),
        );
        true
    } else {
        false
    }
}

fn scale<T: Element>(beta: T, y: &mut [T]) {
    if beta == T::zero() {
        y.fill(T::zero());
    } else if beta != T::one() {
        y.iter_mut().for_each(|v| *v *= beta);
    }
}

/// M's rows are contiguous: y += Σ_k (α·x_k)·M[k, :], four rows per pass over y.
#[inline(always)]
fn rows_axpy<T: Element>(alpha: T, x: &[T], m: MatRef<T>, beta: T, y: &mut [T]) {
    let n = m.cols;
    let y = &mut y[..n];
    scale(beta, y);
    let row = |k: usize| &m.data[k * m.row_stride..k * m.row_stride + n];
    let mut k = 0;
    while k + 4 <= m.rows {
        let (x0, x1, x2, x3) = (
            alpha * x[k],
            alpha * x[k + 1],
            alpha * x[k + 2],
            alpha * x[k + 3],
        );
        let (r0, r1, r2, r3) = (row(k), row(k + 1), row(k + 2), row(k + 3));
        for j in 0..n {
            y[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j];
        }
        k += 4;
    }
    while k < m.rows {
        let xk = alpha * x[k];
        for (yj, &r) in y.iter_mut().zip(row(k)) {
            *yj += xk * r;
        }
        k += 1;
    }
}

const LANES: usize = 16;

/// M's columns are contiguous (M = Wᵀ for a row-major W): y_j = α·⟨x, M[:, j]⟩ + β·y_j.
#[inline(always)]
fn cols_dot<T: Element>(alpha: T, x: &[T], m: MatRef<T>, beta: T, y: &mut [T]) {
    let k = m.rows;
    let col = |j: usize| &m.data[j * m.col_stride..j * m.col_stride + k];
    let mut j = 0;
    while j + 4 <= m.cols {
        let cs = [col(j), col(j + 1), col(j + 2), col(j + 3)];
        let mut acc = [[T::zero(); LANES]; 4];
        let body = k / LANES * LANES;
        for i in (0..body).step_by(LANES) {
            let xs = &x[i..i + LANES];
            for (a, c) in acc.iter_mut().zip(&cs) {
                let cc = &c[i..i + LANES];
                for l in 0..LANES {
                    a[l] += xs[l] * cc[l];
                }
            }
        }
        for (q, (a, c)) in acc.iter().zip(&cs).enumerate() {
            let mut s = a.iter().fold(T::zero(), |s, &v| s + v);
            for i in body..k {
                s += x[i] * c[i];
            }
            y[j + q] = finish(alpha, s, beta, y[j + q]);
        }
        j += 4;
    }
    while j < m.cols {
        let s = x
            .iter()
            .zip(col(j))
            .fold(T::zero(), |s, (&a, &b)| s + a * b);
        y[j] = finish(alpha, s, beta, y[j]);
        j += 1;
    }
}

#[inline(always)]
fn finish<T: Element>(alpha: T, dot: T, beta: T, old: T) -> T {
    if beta == T::zero() {
        alpha * dot
    } else {
        alpha * dot + beta * old
    }
}
