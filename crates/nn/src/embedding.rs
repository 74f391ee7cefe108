//! `Embedding`: a lookup table of row vectors, with an optional `padding_idx` whose row is
//! zero and receives no gradient, as `torch.nn.Embedding`.

use crate::init;
use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Tensor, Var};

/// `torch.nn.Embedding`: row `i` of the weight for token id `i`.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The table `[num_embeddings, embedding_dim]` (`{prefix}.weight`).
    pub weight: ParamId,
    /// Rows of the table (the vocabulary size).
    pub num_embeddings: usize,
    /// Width of each row.
    pub embedding_dim: usize,
    /// The id whose row stays zero and gets no gradient.
    pub padding_idx: Option<usize>,
}

impl Embedding {
    /// Registers `{prefix}.weight` ~ N(0, 1), with the padding row zeroed.
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        num_embeddings: usize,
        embedding_dim: usize,
        padding_idx: Option<usize>,
        rng: &mut impl Rng,
    ) -> Self {
        let mut w: Tensor<T> = init::normal(&[num_embeddings, embedding_dim], rng);
        if let Some(p) = padding_idx {
            assert!(
                p < num_embeddings,
                "Embedding: padding_idx {p} out of range for {num_embeddings} rows"
            );
            w.data_mut()[p * embedding_dim..(p + 1) * embedding_dim].fill(T::zero());
        }
        let weight = store.add(join_name(prefix, "weight"), w);
        Embedding {
            weight,
            num_embeddings,
            embedding_dim,
            padding_idx,
        }
    }

    /// Rows for `ids`, shaped `[ids.len(), embedding_dim]`. Padding positions are masked so
    /// that the padding row gets no gradient.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, ids: &[usize]) -> Var<'t, T> {
        let rows = s.param(self.weight).index_select(ids);
        match self.padding_idx {
            Some(p) if ids.contains(&p) => {
                let keep = ids
                    .iter()
                    .flat_map(|&i| {
                        std::iter::repeat_n(
                            if i == p { T::zero() } else { T::one() },
                            self.embedding_dim,
                        )
                    })
                    .collect();
                rows.mask(&Tensor::from_vec(keep, &[ids.len(), self.embedding_dim]))
            }
            _ => rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Mode;
    use rand::SeedableRng;
    use recur_tape::Tape;

    #[test]
    fn padding_row_is_zero_and_gets_no_gradient() {
        let mut store = ParamStore::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let emb = Embedding::new(&mut store, "emb", 5, 3, Some(0), &mut rng);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let y = emb.forward(&s, &[2, 0, 2, 4]);
        assert_eq!(y.shape().as_slice(), &[4, 3]);
        assert_eq!(&y.to_tensor().data()[3..6], &[0.0; 3]);
        let g = s.backward(y.sum());
        let gw = g.get(emb.weight).unwrap();
        assert_eq!(gw.row(0), &[0.0; 3]);
        assert_eq!(gw.row(2), &[2.0; 3]);
        assert_eq!(gw.row(1), &[0.0; 3]);
    }
}
