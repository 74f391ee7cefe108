//! The scalar types a tensor can hold (f32 and f64), with the kernels each one dispatches to.

use crate::kernels::activation as act;
use crate::kernels::panel::{self, PanelKernel};
use num_traits::{Float, FromPrimitive, NumAssign};
use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A floating-point element type: `f32` for training, `f64` for gradient checks and parity.
pub trait Element:
    Float
    + FromPrimitive
    + NumAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + bytemuck::Pod
    + 'static
{
    /// The safetensors / PyTorch name of the type ("F32", "F64").
    const DTYPE: &'static str;

    /// Raw strided gemm, C ← α·A·B + β·C (matrixmultiply's contract).
    ///
    /// # Safety
    /// Every element addressed through the sizes and strides must be inside its allocation.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// The best kernel for products with a [`PackedMatrix`](crate::kernels::PackedMatrix).
    fn panel_kernel() -> PanelKernel<Self>;

    /// In-place elementwise exp, vectorized.
    fn exp_slice(xs: &mut [Self]);
    /// In-place elementwise tanh, vectorized.
    fn tanh_slice(xs: &mut [Self]);
    /// In-place elementwise logistic sigmoid, vectorized.
    fn sigmoid_slice(xs: &mut [Self]);
    /// Elementwise exp into a new vector, vectorized.
    fn exp_of(xs: &[Self]) -> Vec<Self>;
    /// Elementwise tanh into a new vector, vectorized.
    fn tanh_of(xs: &[Self]) -> Vec<Self>;
    /// Elementwise logistic sigmoid into a new vector, vectorized.
    fn sigmoid_of(xs: &[Self]) -> Vec<Self>;

    /// Converts to f32 (rounding an f64 to nearest): what bf16 rounding starts from.
    fn to_f32_nearest(self) -> f32;
    /// Converts from f32, exactly.
    fn of_f32(v: f32) -> Self;

    /// Converts from f64 (for constants and initialisers).
    fn of(v: f64) -> Self {
        Self::from_f64(v).expect("every f64 converts to a float type")
    }
}

macro_rules! element {
    (
        $t:ty,
        $name:literal,
        $gemm:path,
        $panel:path,
        [$exp:path, $tanh:path, $sigmoid:path],
        [$exp_of:path, $tanh_of:path, $sigmoid_of:path]
    ) => {
        impl Element for $t {
            const DTYPE: &'static str = $name;

            unsafe fn gemm_raw(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: the caller keeps every addressed element inside its allocation
                // (this function's contract is matrixmultiply's).
                unsafe { $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }

            fn panel_kernel() -> PanelKernel<Self> {
                $panel()
            }

            fn to_f32_nearest(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn of_f32(v: f32) -> Self {
                v as $t
            }

            fn exp_slice(xs: &mut [Self]) {
                $exp(xs)
            }
            fn tanh_slice(xs: &mut [Self]) {
                $tanh(xs)
            }
            fn sigmoid_slice(xs: &mut [Self]) {
                $sigmoid(xs)
            }
            fn exp_of(xs: &[Self]) -> Vec<Self> {
                $exp_of(xs)
            }
            fn tanh_of(xs: &[Self]) -> Vec<Self> {
                $tanh_of(xs)
            }
            fn sigmoid_of(xs: &[Self]) -> Vec<Self> {
                $sigmoid_of(xs)
            }
        }
    };
}

element!(
    f32,
    "F32",
    matrixmultiply::sgemm,
    panel::kernel_f32,
    [
        act::exp_slice_f32,
        act::tanh_slice_f32,
        act::sigmoid_slice_f32
    ],
    [act::exp_of_f32, act::tanh_of_f32, act::sigmoid_of_f32]
);
element!(
    f64,
    "F64",
    matrixmultiply::dgemm,
    panel::kernel_f64,
    [
        act::exp_slice_f64,
        act::tanh_slice_f64,
        act::sigmoid_slice_f64
    ],
    [act::exp_of_f64, act::tanh_of_f64, act::sigmoid_of_f64]
);
