//! A tensor's shared data, with packed copies for repeated matrix products and a bf16-rounded
//! copy for mixed precision, made on first use and dropped by any write. A weight used at
//! every step of a sequence (a user's cell on the tape) is then packed once per version of
//! its values instead of once per product.

use crate::kernels::bf16::round_slice_bf16;
use crate::kernels::{MatRef, PackedMatrix, Precision};
use crate::Element;
use std::borrow::Cow;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

pub(crate) struct Storage<T> {
    values: Vec<T>,
    /// B = this matrix, and B = its transpose.
    packed: [OnceLock<PackedMatrix<T>>; 2],
    /// The values rounded to bf16 (with packed copies of their own).
    bf16: OnceLock<Arc<Storage<T>>>,
    /// `Bf16` for that rounded copy: its packed copies run bf16 products.
    precision: Precision,
}

impl<T> Storage<T> {
    /// Storage holding `values`.
    pub fn new(values: Vec<T>) -> Self {
        Storage {
            values,
            packed: [OnceLock::new(), OnceLock::new()],
            bf16: OnceLock::new(),
            precision: Precision::Full,
        }
    }

    /// Storage holding `values`, already rounded to bf16: its packed copies run bf16 products.
    pub fn rounded_bf16(values: Vec<T>) -> Self {
        Storage {
            precision: Precision::Bf16,
            ..Storage::new(values)
        }
    }

    /// How products read these values: `Bf16` for a rounded copy.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Write access: the packed and rounded copies no longer match, so they go.
    pub fn values_mut(&mut self) -> &mut Vec<T> {
        self.packed = [OnceLock::new(), OnceLock::new()];
        self.bf16 = OnceLock::new();
        &mut self.values
    }

    /// The values back, without a copy.
    pub fn into_values(self) -> Vec<T> {
        self.values
    }
}

impl<T: Element> Storage<T> {
    /// Every value rounded to bf16, made on first use and kept until the values change.
    pub fn bf16(&self) -> Arc<Storage<T>> {
        self.bf16
            .get_or_init(|| {
                let mut values = self.values.clone();
                round_slice_bf16(&mut values);
                Arc::new(Storage::rounded_bf16(values))
            })
            .clone()
    }

    /// `rows × cols` values from `offset` on as a matrix packed as the right-hand side of
    /// products, transposed (`[cols, rows]`) if asked. The first shape asked for at offset 0
    /// is cached; tensors sharing the storage under another shape or at another offset (a
    /// reshape, a slice) get a fresh copy.
    pub fn packed(
        &self,
        offset: usize,
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> Cow<'_, PackedMatrix<T>> {
        let pack = |offset: usize| {
            let m = MatRef::row_major(&self.values[offset..], rows, cols);
            PackedMatrix::stacked_in(&[if transposed { m.t() } else { m }], self.precision)
        };
        if offset > 0 {
            return Cow::Owned(pack(offset));
        }
        let cached = self.packed[usize::from(transposed)].get_or_init(|| pack(0));
        let shape = if transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if (cached.rows(), cached.cols()) == shape {
            Cow::Borrowed(cached)
        } else {
            Cow::Owned(pack(0))
        }
    }
}

impl<T: Clone> Clone for Storage<T> {
    fn clone(&self) -> Self {
        Storage {
            precision: self.precision,
            ..Storage::new(self.values.clone())
        }
    }
}

impl<T: PartialEq> PartialEq for Storage<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl<T> Deref for Storage<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::MatRef;
    use crate::Tensor;

    /// x·B through the tensor's packed copy.
    fn product(x: &[f64], b: &Tensor<f64>, transposed: bool) -> Vec<f64> {
        let packed = b.packed(transposed);
        let mut out = vec![0.0; packed.cols()];
        packed.mul_into(
            MatRef::row_major(x, 1, packed.rows()),
            &mut out,
            packed.cols(),
            false,
        );
        out
    }

    /// Tensors sharing one storage under different shapes (a reshape, a slice) each get a
    /// packed copy of their own shape and values.
    #[test]
    fn shared_storage_under_other_shapes_packs_each_shape() {
        let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        assert_eq!(product(&[1.0, 1.0, 1.0], &w, false), vec![9.0, 12.0]);
        assert_eq!(product(&[1.0, 0.0], &w, true), vec![1.0, 3.0, 5.0]);
        let reshaped = w.clone().reshape(&[2, 3]);
        assert_eq!(product(&[1.0, 1.0], &reshaped, false), vec![5.0, 7.0, 9.0]);
        assert_eq!(product(&[1.0, 0.0, 0.0], &reshaped, true), vec![1.0, 4.0]);
        let head = w.window(0, &[2, 2]);
        assert_eq!(product(&[1.0, 1.0], &head, false), vec![4.0, 6.0]);
        assert_eq!(product(&[0.0, 1.0], &head, true), vec![2.0, 4.0]);
        let tail = w.window(2, &[2, 2]);
        assert_eq!(product(&[1.0, 1.0], &tail, false), vec![8.0, 10.0]);
        assert_eq!(product(&[0.0, 1.0], &tail, true), vec![4.0, 6.0]);
    }

    #[test]
    fn packed_copies_follow_every_write_and_are_not_shared_by_clones() {
        let mut w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        assert_eq!(product(&[1.0, 1.0], &w, false), vec![5.0, 7.0, 9.0]);
        assert_eq!(product(&[1.0, 0.0, 1.0], &w, true), vec![4.0, 10.0]);
        let shared = w.clone();
        w.data_mut()[0] = 11.0;
        assert_eq!(product(&[1.0, 1.0], &w, false), vec![15.0, 7.0, 9.0]);
        assert_eq!(product(&[1.0, 0.0, 1.0], &w, true), vec![14.0, 10.0]);
        assert_eq!(product(&[1.0, 1.0], &shared, false), vec![5.0, 7.0, 9.0]);
        // Written in place (the only owner): the cache goes too.
        w.data_mut()[5] = 0.0;
        assert_eq!(product(&[1.0, 0.0, 1.0], &w, true), vec![14.0, 4.0]);
    }
}
