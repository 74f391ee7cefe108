//! C ← α·A·B + β·C through matrixmultiply, with arbitrary strides so transposes are free.
//! Products with a single row or column take the matrix-vector path in `gemv`.

use super::gemv;
use crate::Element;

/// A read-only strided view of a matrix: element (i, j) is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The values, read at `i * row_stride + j * col_stride`.
    pub data: &'a [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows' values.
    pub row_stride: usize,
    /// Distance between consecutive columns' values.
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view: no data moves.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check_bounds(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "gemm: {what} view {}x{} (strides {}, {}) reaches element {last} of a slice of {}",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                self.data.len()
            );
        }
    }
}

/// C ← α·A·B + β·C where C is `a.rows × b.cols`, row-major with row stride `c_row_stride`.
/// With β = 0, C is only written, never read.
pub fn gemm<T: Element>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    c_row_stride: usize,
) {
    assert_eq!(
        a.cols, b.rows,
        "gemm: [{}, {}] x [{}, {}]: inner dimensions differ",
        a.rows, a.cols, b.rows, b.cols
    );
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    a.check_bounds("A");
    b.check_bounds("B");
    assert!(
        (m - 1) * c_row_stride + n <= c.len() && c_row_stride >= n,
        "gemm: output slice of {} cannot hold {m}x{n} with row stride {c_row_stride}",
        c.len()
    );
    if k == 0 {
        scale_rows(beta, c, m, n, c_row_stride);
        return;
    }
    if m == 1 && gemv::try_gemv(alpha, a.data, a.col_stride, b, beta, &mut c[..n]) {
        return;
    }
    if n == 1
        && c_row_stride == 1
        && gemv::try_gemv(alpha, b.data, b.row_stride, a.t(), beta, &mut c[..m])
    {
        return;
    }
    // SAFETY: every index the product touches was bounds-checked above.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            c_row_stride as isize,
            1,
        )
    }
}

fn scale_rows<T: Element>(beta: T, c: &mut [T], m: usize, n: usize, stride: usize) {
    for i in 0..m {
        for v in &mut c[i * stride..i * stride + n] {
            *v = if beta == T::zero() {
                T::zero()
            } else {
                *v * beta
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(a: MatRef<f64>, b: MatRef<f64>) -> Vec<f64> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    c[i * b.cols + j] += a.data[i * a.row_stride + p * a.col_stride]
                        * b.data[p * b.row_stride + j * b.col_stride];
                }
            }
        }
        c
    }

    #[test]
    fn all_layouts_and_vector_shapes_match_naive() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &(m, k, n) in &[
            (1, 37, 29),
            (5, 1, 3),
            (4, 17, 1),
            (1, 256, 64),
            (9, 33, 21),
            (1, 3, 1),
            // Batch-sized row counts and odd sizes.
            (2, 40, 70),
            (4, 32, 64),
            (7, 129, 37),
            (16, 64, 96),
            (3, 15, 5),
            (17, 20, 9),
            // Tall products (the packed path), past its K and M blocks.
            (64, 33, 21),
            (200, 300, 70),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for ta in [false, true] {
                for tb in [false, true] {
                    let av = if ta {
                        MatRef::row_major(&a, k, m).t()
                    } else {
                        MatRef::row_major(&a, m, k)
                    };
                    let bv = if tb {
                        MatRef::row_major(&b, n, k).t()
                    } else {
                        MatRef::row_major(&b, k, n)
                    };
                    let want = naive(av, bv);
                    for (alpha, beta) in [(2.0, 0.5), (1.0, 0.0), (1.0, 1.0)] {
                        let mut c = vec![1.0; m * n];
                        gemm(alpha, av, bv, beta, &mut c, n);
                        for (g, w) in c.iter().zip(&want) {
                            approx::assert_relative_eq!(*g, alpha * w + beta, epsilon = 1e-12);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_matches_f64() {
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let mut c = vec![0.0f32; 4];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 3, 2),
            0.0,
            &mut c,
            2,
        );
        assert_eq!(c, vec![10.0, 13.0, 28.0, 40.0]);
    }

    #[test]
    #[should_panic(expected = "gemm: [2, 3] x [2, 3]: inner dimensions differ")]
    fn inner_dimension_mismatch_names_both_shapes() {
        let a = [0.0f32; 6];
        let mut c = [0.0f32; 9];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 2, 3),
            0.0,
            &mut c,
            3,
        );
    }
}
