//! Numeric kernels under the ops: gemm (matrixmultiply), a matrix-vector path for batch 1,
//! products with a pre-packed right-hand matrix, and vectorizable activations. Kernels work on slices and know nothing of the tape.

pub mod activation;
pub mod gemm;
pub mod gemv;
pub mod packed;

pub use gemm::{gemm, MatRef};
pub use packed::PackedMatrix;
