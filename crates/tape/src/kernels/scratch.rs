//! Scratch space kept from call to call and lent out as values of any element type, so that
//! a loop that needs a buffer on every call allocates (and faults pages in) only when the
//! buffer grows.

use crate::Element;

/// The first `len` values of `words` seen as `T`s, holding whatever was left there; `words`
/// grows (with zeros) if it is too short.
pub fn as_elements<T: Element>(words: &mut Vec<u64>, len: usize) -> &mut [T] {
    let needed = (len * std::mem::size_of::<T>()).div_ceil(8);
    if words.len() < needed {
        words.resize(needed, 0);
    }
    &mut bytemuck::cast_slice_mut(&mut words[..needed])[..len]
}
