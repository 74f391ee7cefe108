//! Numeric kernels under the ops: gemm (matrixmultiply), a matrix-vector path for batch 1,
//! and vectorizable activations. Kernels work on slices and know nothing of the tape.

pub mod activation;
pub mod gemm;
pub mod gemv;

pub use gemm::{gemm, MatRef};
