//! The built-in ops, one family per file; each file holds the ops' forward, backward, the
//! `Var` methods that record them, and their gradcheck tests.

pub mod activation;
pub mod arith;
pub mod elementwise;
pub mod index;
pub mod join;
pub mod layout;
pub mod loss;
pub mod mask;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod scan;
pub mod softmax;
