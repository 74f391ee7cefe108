//! Weight gradients summed as one product. A matrix used at every step of an unrolled
//! sequence gets ∂W += ∂Yₜᵀ·Xₜ from each step: products with as few rows as the batch, which
//! run well below the kernel's speed because each loads and stores all of ∂W. Backward
//! collects such terms per node and sums a block of them as one product over all their rows
//! (read where they lie, nothing copied), before anything reads the node's gradient.

use crate::grad_slots::accumulator;
use crate::kernels::packed::{suits_many_rows, AddTo, PackedMatrix};
use crate::kernels::{product, MatRef, Precision};
use crate::shape::Shape;
use crate::{Element, Tensor};

/// A node's terms are summed once they have this many rows in all, and a term this tall is
/// summed at once: enough rows that loading and storing ∂W is a small part of the product,
/// few enough that the terms are still in L2. The custom LSTM cell (B = 32, H = 128) was
/// 2.5–3% faster with 64 or 128 than with a product per step, and no faster with 256.
const BLOCK_ROWS: usize = 128;

/// The terms aᵢᵀ·bᵢ waiting to be added to one node's gradient.
struct Terms<T: Element> {
    node: usize,
    shape: Shape,
    pairs: Products<T>,
    rows: usize,
}

/// The terms waiting during one backward pass, per node.
pub(crate) struct Deferred<T: Element> {
    pending: Vec<Terms<T>>,
    /// Nodes whose terms are kept, never summed here, and handed to the caller.
    kept: Vec<usize>,
}

/// Terms aᵢᵀ·bᵢ of one node's gradient, in the order they were made.
pub type Products<T> = Vec<(Tensor<T>, Tensor<T>)>;

impl<T: Element> Deferred<T> {
    /// Defers terms for every node; those of `kept` are only collected, for the caller.
    pub(crate) fn new(kept: Vec<usize>) -> Self {
        Deferred {
            pending: Vec::new(),
            kept,
        }
    }

    /// Adds aᵀ·b to the gradient of `node` (of shape `shape`, m × n values), now or with
    /// the node's next terms: `a` holds rows × m values and `b` rows × n, row-major.
    pub(crate) fn add(
        &mut self,
        node: usize,
        shape: &[usize],
        grad: &mut Option<Tensor<T>>,
        a: &Tensor<T>,
        b: &Tensor<T>,
    ) {
        let (m, n) = matrix_dims(shape);
        let rows = match (m, n) {
            (0, 0) => 0,
            (0, n) => b.numel() / n,
            (m, _) => a.numel() / m,
        };
        assert!(
            m * n == shape.iter().product::<usize>()
                && rows * m == a.numel()
                && rows * n == b.numel(),
            "add_transposed_product: a of {} and b of {} values do not make aᵀ·b of shape {shape:?}",
            a.numel(),
            b.numel()
        );
        if m == 0 || n == 0 {
            accumulator(grad, shape, 0); // an empty gradient: nothing to add
            return;
        }
        let kept = self.kept.contains(&node);
        if rows >= BLOCK_ROWS && !kept {
            add_product(accumulator(grad, shape, 0), m, n, a, b, precision_of(a, b));
            return;
        }
        let at = match self.pending.iter().position(|t| t.node == node) {
            Some(at) => at,
            None => {
                self.pending.push(Terms {
                    node,
                    shape: Shape::from_slice(shape),
                    pairs: Vec::new(),
                    rows: 0,
                });
                self.pending.len() - 1
            }
        };
        let terms = &mut self.pending[at];
        terms.pairs.push((a.clone(), b.clone()));
        terms.rows += rows;
        if terms.rows >= BLOCK_ROWS && !kept {
            let terms = self.pending.swap_remove(at);
            terms.sum_into(grad);
        }
    }

    /// Adds the terms waiting for `node`, if any, to its gradient.
    pub(crate) fn flush(&mut self, node: usize, grads: &mut [Option<Tensor<T>>]) {
        if let Some(at) = self.pending.iter().position(|t| t.node == node) {
            let terms = self.pending.swap_remove(at);
            terms.sum_into(&mut grads[node]);
        }
    }

    /// Adds every waiting term to its node's gradient, and returns the kept nodes' terms.
    pub(crate) fn finish(self, grads: &mut [Option<Tensor<T>>]) -> Vec<(usize, Products<T>)> {
        let mut kept = Vec::new();
        for terms in self.pending {
            if self.kept.contains(&terms.node) {
                kept.push((terms.node, terms.pairs));
            } else {
                let node = terms.node;
                terms.sum_into(&mut grads[node]);
            }
        }
        kept
    }
}

impl<T: Element> Terms<T> {
    /// grad += Σ aᵢᵀ·bᵢ as one product: [a₁; a₂; …]ᵀ·[b₁; b₂; …].
    fn sum_into(self, grad: &mut Option<Tensor<T>>) {
        // Only nonempty gradients get terms (see `add`).
        let (m, n) = matrix_dims(&self.shape);
        let c = accumulator(grad, &self.shape, 0);
        let precision = match self
            .pairs
            .iter()
            .all(|(a, b)| precision_of(a, b) == Precision::Bf16)
        {
            true => Precision::Bf16,
            false => Precision::Full,
        };
        if let [(a, b)] = &self.pairs[..] {
            // A weight used once (an output layer): gemm, with nothing to gain from packing.
            return add_product(c, m, n, a, b, precision);
        }
        if suits_many_rows::<T>(precision) {
            // The panel kernel reads every term where it lies.
            let a: Vec<MatRef<T>> = self.pairs.iter().map(|(a, _)| rows_of(a, m).t()).collect();
            let b: Vec<MatRef<T>> = self.pairs.iter().map(|(_, b)| rows_of(b, n)).collect();
            PackedMatrix::stacked_in(&b, precision).product_of_blocks(&a, c, n, AddTo::Output);
        } else {
            // gemm is faster where the panel kernel does not suit many rows (AVX2), even
            // with the terms copied side by side first: the custom LSTM cell (B = 32,
            // H = 128) took 0.94 of the time on a Zen 3 (see docs/benchmarks.md).
            let a = gather(self.pairs.iter().map(|(a, _)| a));
            let b = gather(self.pairs.iter().map(|(_, b)| b));
            let rows = a.len() / m;
            let (a, b) = (
                MatRef::row_major(&a, rows, m),
                MatRef::row_major(&b, rows, n),
            );
            product(a.t(), b, c, n, true, precision);
        }
    }
}

/// The values of `parts`, one after another.
fn gather<'a, T: Element>(parts: impl Iterator<Item = &'a Tensor<T>> + Clone) -> Vec<T> {
    let mut all = Vec::with_capacity(parts.clone().map(Tensor::numel).sum());
    parts.for_each(|p| all.extend_from_slice(p.data()));
    all
}

/// c (m × n) += aᵀ·b through gemm (or the bf16 kernels).
fn add_product<T: Element>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &Tensor<T>,
    b: &Tensor<T>,
    precision: Precision,
) {
    product(rows_of(a, m).t(), rows_of(b, n), c, n, true, precision);
}

/// A term's precision: terms of bf16 operands (mixed precision) are bf16 products.
fn precision_of<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Precision {
    match (a.precision(), b.precision()) {
        (Precision::Bf16, Precision::Bf16) => Precision::Bf16,
        _ => Precision::Full,
    }
}

/// A term's values as a row-major matrix `width` wide (nonzero).
fn rows_of<T: Element>(t: &Tensor<T>, width: usize) -> MatRef<'_, T> {
    MatRef::row_major(t.data(), t.numel() / width, width)
}

/// A gradient's shape as a matrix: all but the last dimension × the last.
fn matrix_dims(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&n, rest)) => (rest.iter().product(), n),
        None => (1, 1),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Tape, Tensor};
    use rand::SeedableRng;

    /// Weights used at 40 steps of 7 rows (terms summed in blocks, some left at the end):
    /// a leaf u, a linear weight computed as tanh(w) and a matmul weight computed as v + v,
    /// whose own backward must see every use's term first. Checked against the sums
    /// written out.
    #[test]
    fn weight_gradients_summed_later_equal_the_sum_of_every_use() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (steps, rows, fan_in, fan_out) = (40, 7, 5, 6);
        let tape = Tape::<f64>::new();
        let w0 = Tensor::uniform(&[fan_out, fan_in], -1.0, 1.0, &mut rng);
        let v0 = Tensor::uniform(&[fan_in, fan_out], -0.5, 0.5, &mut rng);
        let u0 = Tensor::uniform(&[fan_out, fan_in], -0.5, 0.5, &mut rng);
        let (w, v, u) = (
            tape.var(w0.clone()),
            tape.var(v0.clone()),
            tape.var(u0.clone()),
        );
        let (w_used, v_used) = (w.tanh(), v + v);
        let xs: Vec<Tensor<f64>> = (0..steps)
            .map(|_| Tensor::uniform(&[rows, fan_in], -1.0, 1.0, &mut rng))
            .collect();
        let mut loss = None;
        for x in &xs {
            let x = tape.constant(x.clone());
            let y = (x.linear(w_used, None) + x.matmul(v_used) + x.linear(u, None))
                .tanh()
                .sum();
            loss = Some(loss.map_or(y, |l| l + y));
        }
        let grads = tape.backward(loss.unwrap());

        let (wt, vd) = (w0.map(f64::tanh), v0.data());
        let (mut dw, mut dv) = (vec![0.0; fan_out * fan_in], vec![0.0; fan_in * fan_out]);
        let mut du = dw.clone();
        for x in &xs {
            let x = x.data();
            for r in 0..rows {
                for o in 0..fan_out {
                    let y: f64 = (0..fan_in)
                        .map(|i| {
                            x[r * fan_in + i]
                                * (wt.data()[o * fan_in + i]
                                    + 2.0 * vd[i * fan_out + o]
                                    + u0.data()[o * fan_in + i])
                        })
                        .sum();
                    let g = 1.0 - y.tanh().powi(2);
                    for i in 0..fan_in {
                        dw[o * fan_in + i] += g * x[r * fan_in + i];
                        dv[i * fan_out + o] += 2.0 * g * x[r * fan_in + i];
                        du[o * fan_in + i] += g * x[r * fan_in + i];
                    }
                }
            }
        }
        for (k, d) in dw.iter_mut().enumerate() {
            *d *= 1.0 - wt.data()[k].powi(2);
        }
        for (got, want) in [(grads.wrt(w), dw), (grads.wrt(v), dv), (grads.wrt(u), du)] {
            for (g, e) in got.data().iter().zip(&want) {
                assert!((g - e).abs() < 1e-10 * e.abs().max(1.0), "{g} vs {e}");
            }
        }
    }

    /// A weight with no columns, used at several steps: an empty gradient, no panic.
    #[test]
    fn an_empty_weight_used_at_several_steps_gets_an_empty_gradient() {
        let tape = Tape::<f64>::new();
        let v = tape.var(Tensor::zeros(&[5, 0]));
        let x = tape.var(Tensor::from_vec((0..15).map(f64::from).collect(), &[3, 5]));
        let loss = (0..3)
            .map(|t| x.slice(0, t..t + 1).matmul(v).sum() + x.slice(0, t..t + 1).sum())
            .reduce(|a, b| a + b)
            .unwrap();
        let grads = tape.backward(loss);
        assert_eq!(grads.wrt(v).shape(), &[5, 0]);
        assert!(grads.wrt(x).data().iter().all(|&g| g == 1.0));
    }
}
