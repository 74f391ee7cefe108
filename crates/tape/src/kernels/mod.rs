//! Numeric kernels under the ops: gemm (matrixmultiply), a matrix-vector path for batch 1,
//! products with a pre-packed right-hand matrix (full precision or bf16, with AVX512_BF16
//! where the CPU has it), single-vector products with packed weights
//! (full precision or bf16), vectorizable activations, reusable scratch space, and a dispatcher
//! that compiles a loop for the CPU's widest vectors. Kernels work on slices and know
//! nothing of the tape.

pub mod activation;
pub mod bf16;
pub(crate) mod bf16_operands;
pub mod bf16_panel;
pub mod gemm;
pub mod gemv;
pub mod matvec;
pub mod packed;
pub(crate) mod panel;
pub mod product;
pub mod scan;
pub mod scratch;
pub mod simd;

pub use gemm::{gemm, MatRef};
pub use matvec::{PackedRows, Precision};
pub use packed::PackedMatrix;
pub use product::product;
