//! Numeric kernels under the ops: gemm (matrixmultiply), a matrix-vector path for batch 1,
//! products with a pre-packed right-hand matrix, vectorizable activations, and a dispatcher
//! that compiles a loop for the CPU's widest vectors. Kernels work on slices and know
//! nothing of the tape.

pub mod activation;
pub mod gemm;
pub mod gemv;
pub mod packed;
pub(crate) mod panel;
pub mod scan;
pub mod simd;

pub use gemm::{gemm, MatRef};
pub use packed::PackedMatrix;
