//! `Tensor<T>`: a dense, contiguous, row-major array with a small shape. A tensor is a plain
//! value: it knows nothing of gradients, which live on the tape. Its storage is shared and
//! copied on write, so cloning (binding a parameter to a tape, detaching) costs O(1). Its
//! values are `numel` consecutive values of the storage's from an offset: a slice along the
//! first axis (`window`) shares its source's storage.

use crate::kernels::bf16::round_slice_bf16;
use crate::kernels::{PackedMatrix, Precision};
use crate::shape::{numel, Shape};
use crate::storage::Storage;
use crate::Element;
use rand::Rng;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A dense row-major array of `f32` or `f64` values with a shape: the values that parameters,
/// inputs and gradients hold. Cloning one is O(1) (its storage is shared, copied on write).
///
/// ```
/// use recur_tape::Tensor;
///
/// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.at(&[1, 0]), 4.0);
/// assert_eq!(t.row(1), &[4.0, 5.0, 6.0]);
/// let doubled = t.map(|v| 2.0 * v).reshape(&[3, 2]);
/// assert_eq!(doubled.data(), &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
/// assert!(Tensor::<f32>::try_from_vec(vec![1.0; 5], &[2, 3]).is_err());
/// ```
#[derive(Clone)]
pub struct Tensor<T> {
    /// At least `offset + numel(shape)` values; those outside the window belong to other
    /// tensors sharing the storage.
    data: Arc<Storage<T>>,
    offset: usize,
    shape: Shape,
}

impl<T: PartialEq> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.offset, other.offset);
        let n = numel(&self.shape);
        self.shape == other.shape && self.data[a..a + n] == other.data[b..b + n]
    }
}

/// A data vector whose length does not fill the shape it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// How many values were given.
    pub len: usize,
    /// The shape they were meant to fill.
    pub shape: Vec<usize>,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} values do not fill shape {:?} ({} elements)",
            self.len,
            self.shape,
            numel(&self.shape)
        )
    }
}

impl std::error::Error for ShapeError {}

impl<T: Element> Tensor<T> {
    /// Wraps `data` as a tensor of `shape`; panics if the lengths differ.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Self {
        Self::try_from_vec(data, shape).unwrap_or_else(|e| panic!("Tensor::from_vec: {e}"))
    }

    /// Wraps `data` as a tensor of `shape`, or says why it cannot.
    pub fn try_from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self, ShapeError> {
        if data.len() != numel(shape) {
            return Err(ShapeError {
                len: data.len(),
                shape: shape.to_vec(),
            });
        }
        Ok(Tensor {
            data: Arc::new(Storage::new(data)),
            offset: 0,
            shape: Shape::from_slice(shape),
        })
    }

    /// A tensor of `shape` with every value `value`.
    pub fn full(shape: &[usize], value: T) -> Self {
        Tensor {
            data: Arc::new(Storage::new(vec![value; numel(shape)])),
            offset: 0,
            shape: Shape::from_slice(shape),
        }
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::zero())
    }

    /// A tensor of `shape` filled with ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::one())
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Self::full(&[], value)
    }

    /// Values drawn uniformly from `[low, high)`.
    pub fn uniform(shape: &[usize], low: f64, high: f64, rng: &mut impl Rng) -> Self {
        let data: Vec<T> = (0..numel(shape))
            .map(|_| T::of(rng.gen_range(low..high)))
            .collect();
        Tensor {
            data: Arc::new(Storage::new(data)),
            offset: 0,
            shape: Shape::from_slice(shape),
        }
    }

    /// Builds a tensor from f64 values (handy for constants in tests and examples).
    pub fn from_f64s(values: &[f64], shape: &[usize]) -> Self {
        Self::from_vec(values.iter().map(|&v| T::of(v)).collect(), shape)
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of values (the product of the shape).
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        &self.data[self.offset..self.offset + self.numel()]
    }

    /// Mutable access; copies the values first if another tensor shares the storage (or
    /// this one is a window into a larger storage).
    pub fn data_mut(&mut self) -> &mut [T] {
        let n = self.numel();
        if self.offset > 0 || Arc::get_mut(&mut self.data).is_none() {
            self.data = Arc::new(Storage::new(self.data().to_vec()));
            self.offset = 0;
        }
        let values = Arc::get_mut(&mut self.data)
            .expect("the storage was just made unique")
            .values_mut();
        values.truncate(n);
        values.as_mut_slice()
    }

    /// `numel(shape)` of this tensor's values from `start` on, under `shape`, sharing its
    /// storage (no copy): a slice along the first axis.
    pub(crate) fn window(&self, start: usize, shape: &[usize]) -> Self {
        assert!(
            start + numel(shape) <= self.numel(),
            "window: shape {shape:?} from value {start} does not fit in {:?}",
            self.shape
        );
        Tensor {
            data: Arc::clone(&self.data),
            offset: self.offset + start,
            shape: Shape::from_slice(shape),
        }
    }

    /// This tensor on storage of its own if it is a window over less than half of a larger
    /// one, so that keeping it (a state carried across batches) does not keep the rest alive;
    /// a larger window (a layer's output sequence) is kept as it is, not copied.
    pub(crate) fn compact(self) -> Self {
        if 2 * self.numel() >= self.data.len() {
            self
        } else {
            Tensor::from_vec(self.data().to_vec(), &self.shape)
        }
    }

    /// This 2-D tensor packed as the right-hand side B of products (B = Aᵀ if `transposed`),
    /// packed on first use and kept until the values change.
    pub fn packed(&self, transposed: bool) -> Cow<'_, PackedMatrix<T>>
    where
        T: Element,
    {
        assert!(
            self.ndim() == 2,
            "packed: needs a matrix, got shape {:?}",
            self.shape()
        );
        self.data
            .packed(self.offset, self.shape[0], self.shape[1], transposed)
    }

    /// This tensor with its values rounded to bf16 (kept in its own type): for a tensor
    /// sharing a parameter's storage, rounded once per version of the values and kept (with
    /// its own packed copies) until they change.
    pub fn bf16_rounded(&self) -> Self
    where
        T: Element,
    {
        Tensor {
            data: self.data.bf16(),
            offset: self.offset,
            shape: self.shape.clone(),
        }
    }

    /// A new tensor holding this one's values rounded to bf16, for the products at hand (an
    /// activation's rounded copy is not kept with it, as a parameter's is).
    pub fn bf16_copy(&self) -> Self
    where
        T: Element,
    {
        let mut values = self.data().to_vec();
        round_slice_bf16(&mut values);
        Tensor {
            data: Arc::new(Storage::rounded_bf16(values)),
            offset: 0,
            shape: self.shape.clone(),
        }
    }

    /// How products read this tensor: [`Precision::Bf16`] for a copy rounded to bf16
    /// ([`bf16_rounded`](Self::bf16_rounded), [`bf16_copy`](Self::bf16_copy)), whose f32
    /// products run the bf16 kernels.
    pub fn precision(&self) -> Precision {
        self.data.precision()
    }

    /// The values as a vector (without a copy when the storage is not shared).
    pub fn into_vec(self) -> Vec<T> {
        let n = self.numel();
        if self.offset > 0 {
            return self.data().to_vec();
        }
        match Arc::try_unwrap(self.data) {
            Ok(storage) => {
                let mut values = storage.into_values();
                values.truncate(n);
                values
            }
            Err(shared) => shared[..n].to_vec(),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> T {
        assert_eq!(
            self.numel(),
            1,
            "item: tensor of shape {:?} is not a single value",
            self.shape
        );
        self.data()[0]
    }

    /// The element at a multi-index.
    pub fn at(&self, index: &[usize]) -> T {
        assert_eq!(
            index.len(),
            self.ndim(),
            "at: index {index:?} for shape {:?}",
            self.shape
        );
        let mut flat = 0;
        for (&i, &d) in index.iter().zip(self.shape.iter()) {
            assert!(
                i < d,
                "at: index {index:?} out of bounds for shape {:?}",
                self.shape
            );
            flat = flat * d + i;
        }
        self.data()[flat]
    }

    /// The same data under a new shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Self {
        assert_eq!(
            numel(shape),
            self.numel(),
            "reshape: cannot view shape {:?} as {shape:?}",
            self.shape
        );
        self.shape = Shape::from_slice(shape);
        self
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(T) -> T) -> Self {
        Tensor {
            data: Arc::new(Storage::new(self.data().iter().map(|&v| f(v)).collect())),
            offset: 0,
            shape: self.shape.clone(),
        }
    }

    /// Converts to another element type.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        let data: Vec<U> = self
            .data()
            .iter()
            .map(|v| U::of(v.to_f64().expect("float to f64")))
            .collect();
        Tensor {
            data: Arc::new(Storage::new(data)),
            offset: 0,
            shape: self.shape.clone(),
        }
    }

    /// Largest absolute difference to another tensor of the same shape.
    pub fn max_abs_diff(&self, other: &Tensor<T>) -> T {
        assert_eq!(
            self.shape, other.shape,
            "max_abs_diff: shapes {:?} and {:?}",
            self.shape, other.shape
        );
        self.data()
            .iter()
            .zip(other.data())
            .fold(T::zero(), |m, (&a, &b)| m.max((a - b).abs()))
    }

    /// Row `i` of a tensor viewed as `[shape[0], rest]`.
    pub fn row(&self, i: usize) -> &[T] {
        let width = numel(&self.shape[1..]);
        &self.data()[i * width..(i + 1) * width]
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        write!(f, "Tensor<{}>{:?} [", T::DTYPE, self.shape.as_slice())?;
        for (i, v) in self.data().iter().take(SHOWN).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{v}")?;
        }
        if self.numel() > SHOWN {
            write!(f, ", … {} more", self.numel() - SHOWN)?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window shares storage; writing either copies, and nothing outside the window shows.
    #[test]
    fn windows_share_storage_and_copy_on_write() {
        let mut whole = Tensor::<f64>::from_vec((0..6).map(f64::from).collect(), &[3, 2]);
        let mut head = whole.window(0, &[2, 2]);
        assert_eq!(head.numel(), 4);
        assert_eq!(head, Tensor::from_vec(vec![0.0, 1.0, 2.0, 3.0], &[2, 2]));
        assert_eq!(format!("{head:?}"), "Tensor<F64>[2, 2] [0, 1, 2, 3]");
        head.data_mut()[0] = 10.0;
        assert_eq!(whole.data()[0], 0.0);
        assert_eq!(head.data(), &[10.0, 1.0, 2.0, 3.0]);
        whole.data_mut()[5] = 50.0;
        assert_eq!(whole.clone().reshape(&[6]).data()[5], 50.0);
        let compacted = whole.window(2, &[2]).compact();
        assert_eq!(
            (compacted.data.len(), compacted.data()),
            (2, &[2.0, 3.0][..])
        );
        let kept = whole.window(1, &[4]).compact();
        assert!(
            Arc::ptr_eq(&kept.data, &whole.data),
            "a large window is not copied"
        );
        let tail_hidden = whole.window(0, &[1, 2]);
        assert_eq!(tail_hidden.clone().into_vec(), vec![0.0, 1.0]);
        let mut middle = whole.window(2, &[2, 1]);
        assert_eq!(middle, Tensor::from_vec(vec![2.0, 3.0], &[2, 1]));
        assert_eq!((middle.at(&[1, 0]), middle.row(0)), (3.0, &[2.0][..]));
        assert_eq!(middle.clone().reshape(&[2]).window(1, &[1]).item(), 3.0);
        drop(whole);
        assert_eq!(tail_hidden.into_vec(), vec![0.0, 1.0]);
        // The window alone holds the storage now: writing still copies out only its values.
        middle.data_mut()[1] = 30.0;
        assert_eq!(middle.clone().into_vec(), vec![2.0, 30.0]);
        assert_eq!(format!("{middle:?}"), "Tensor<F64>[2, 1] [2, 30]");
    }

    #[test]
    fn construction_and_access() {
        let t = Tensor::<f32>::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]);
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.at(&[1, 2]), 5.0);
        assert_eq!(t.row(1), &[3.0, 4.0, 5.0]);
        let r = t.clone().reshape(&[3, 2]);
        assert_eq!(r.at(&[2, 0]), 4.0);
        assert_eq!(Tensor::<f64>::scalar(2.5).item(), 2.5);
        assert_eq!(t.cast::<f64>().data()[5], 5.0f64);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let e = Tensor::<f32>::try_from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "5 values do not fill shape [2, 3] (6 elements)"
        );
    }

    #[test]
    #[should_panic(expected = "reshape: cannot view shape [2, 3] as [4]")]
    fn bad_reshape_names_both_shapes() {
        Tensor::<f32>::zeros(&[2, 3]).reshape(&[4]);
    }
}
