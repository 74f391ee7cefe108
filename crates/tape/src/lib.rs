//! recur-tape: tensors and a reverse-mode autodiff tape.
//!
//! A [`Tape`] is an arena of recorded ops; a [`Var`] is a small `Copy` handle into it, so
//! model code reads like math (`(x.matmul(w) + b).tanh()`). [`Tape::backward`] walks the
//! arena once in reverse — no recursion, so a 100 000-step unroll is fine. Users add ops by
//! implementing [`Op`]; [`gradcheck()`] verifies any op against finite differences.
//!
//! ```
//! use recur_tape::{Tape, Tensor};
//!
//! let tape = Tape::new();
//! let w = tape.var(Tensor::from_vec(vec![0.5, -0.25], &[2, 1]));
//! let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[1, 2]));
//! let loss = x.matmul(w).tanh().sum();
//! let grads = tape.backward(loss);
//! assert_eq!(grads.wrt(w).shape(), &[2, 1]);
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod deferred;
mod element;
mod grad_slots;
pub mod gradcheck;
pub mod kernels;
mod op;
pub mod ops;
pub mod shape;
mod storage;
mod tape;
mod tensor;
#[cfg(test)]
mod testing;

pub use deferred::Products;
pub use element::Element;
pub use gradcheck::{
    assert_gradcheck, gradcheck, gradcheck_with, GradcheckOptions, GradcheckReport,
};
pub use op::{BackwardCtx, MultiOp, Op};
pub use ops::join::{concat, stack};
pub use ops::loss::Reduction;
pub use ops::scan::ScanOptions;
pub use shape::Shape;
pub use tape::{Gradients, Tape, Var};
pub use tensor::{ShapeError, Tensor};
