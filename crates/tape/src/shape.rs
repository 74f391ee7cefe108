//! Shapes: small vectors of dimension sizes, and the helpers ops use to check them.

use smallvec::SmallVec;

/// A tensor shape; up to four dimensions live inline without allocating.
pub type Shape = SmallVec<[usize; 4]>;

/// Number of elements of a shape (1 for a scalar `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Splits a shape around `axis` into (outer, size, inner) element counts, the view every
/// axis-wise op works on: the tensor as `[outer, size, inner]`.
pub fn split_at_axis(op: &str, shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} out of range for shape {shape:?}"
    );
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// The shape without leading 1s (`[1, 1, 5]` → `[5]`), used to match broadcast operands.
pub fn strip_leading_ones(shape: &[usize]) -> &[usize] {
    let first = shape.iter().position(|&d| d != 1).unwrap_or(shape.len());
    &shape[first..]
}
