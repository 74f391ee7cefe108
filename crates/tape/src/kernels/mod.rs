//! Numeric kernels under the ops: gemm (matrixmultiply), a matrix-vector path for batch 1,
//! products with a pre-packed right-hand matrix, single-vector products with packed weights
//! (full precision or bf16), vectorizable activations, reusable scratch space, and a dispatcher
//! that compiles a loop for the CPU's widest vectors. Kernels work on slices and know
//! nothing of the tape.

pub mod activation;
pub mod bf16;
pub mod gemm;
pub mod gemv;
pub mod matvec;
pub mod packed;
pub(crate) mod panel;
pub mod scan;
pub mod scratch;
pub mod simd;

pub use gemm::{gemm, MatRef};
pub use matvec::{PackedRows, Precision};
pub use packed::PackedMatrix;
