//! Row gather: `index_select` along axis 0 (an embedding lookup), with a scatter-add backward.

use crate::shape::Shape;
use crate::{BackwardCtx, Element, Op, Tensor, Var};

struct IndexSelect {
    ids: Vec<usize>,
}

impl<T: Element> Op<T> for IndexSelect {
    fn name(&self) -> &'static str {
        "index_select"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let table = inputs[0];
        assert!(
            table.ndim() >= 1,
            "index_select: needs at least 1 dimension, got a scalar"
        );
        let rows = table.shape()[0];
        let mut shape = Shape::from_slice(table.shape());
        shape[0] = self.ids.len();
        let mut data = Vec::with_capacity(shape.iter().product());
        for &id in &self.ids {
            assert!(
                id < rows,
                "index_select: index {id} out of range for {rows} rows (shape {:?})",
                table.shape()
            );
            data.extend_from_slice(table.row(id));
        }
        Tensor::from_vec(data, &shape)
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let g = ctx.grad_output().data();
        let Some(gt) = ctx.grad_input(0) else { return };
        let width = g.len() / self.ids.len().max(1);
        for (&id, row) in self.ids.iter().zip(g.chunks_exact(width.max(1))) {
            gt[id * width..(id + 1) * width]
                .iter_mut()
                .zip(row)
                .for_each(|(a, &b)| *a += b);
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Rows `ids` of this tensor (along axis 0), in order, repeats allowed: `[n, ...]`.
    pub fn index_select(self, ids: &[usize]) -> Var<'t, T> {
        self.tape()
            .apply(IndexSelect { ids: ids.to_vec() }, &[self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn index_select_passes_gradcheck_with_repeats() {
        check_grad(&[&[5, 3]], |_, v| v[0].index_select(&[4, 0, 4, 2]));
        check_grad(&[&[4, 2, 3]], |_, v| v[0].index_select(&[1, 1]));
    }

    #[test]
    fn lookup_values() {
        let tape = Tape::new();
        let e = tape.constant(Tensor::<f32>::from_vec(
            vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0],
            &[3, 2],
        ));
        assert_eq!(
            e.index_select(&[2, 0]).to_tensor().data(),
            &[20.0, 21.0, 0.0, 1.0]
        );
    }

    #[test]
    #[should_panic(expected = "index_select: index 3 out of range for 3 rows (shape [3, 2])")]
    fn out_of_range_index_panics_with_shape() {
        let tape = Tape::<f32>::new();
        let _ = tape.constant(Tensor::zeros(&[3, 2])).index_select(&[3]);
    }
}
