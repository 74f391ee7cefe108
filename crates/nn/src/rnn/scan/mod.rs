//! Cells whose recurrence is linear in the state, h_t = a_t ⊙ h_{t−1} + b_t with a and b
//! computed from the inputs alone: minGRU, minLSTM, LRU, RG-LRU and QRNN. Each runs a whole
//! sequence as products over all B·T rows plus one `linear_scan` ([`Cell::sequence`]), and a
//! single step as the same computation over one step, so both forms agree.

mod layers;
mod lru;
mod min_gru;
mod min_lstm;
mod qrnn;
mod rg_lru;

pub use layers::{Lru, MinGru, MinLstm, Qrnn, RgLru};
pub use lru::{LruCell, LruOptions};
pub use min_gru::MinGruCell;
pub use min_lstm::MinLstmCell;
pub use qrnn::QrnnCell;
pub use rg_lru::RgLruCell;

use super::cell::{Cell, State};
use crate::init;
use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use rand::Rng;
use recur_tape::kernels::simd::widest;
use recur_tape::{BackwardCtx, Element, Op, ScanOptions, Tensor, Var};

/// Where a scan cell's parameters go: `{prefix}.{name}{suffix}`, suffix `_l{k}[_reverse]`
/// inside a layer.
pub(crate) struct Names<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
}

impl Names<'_> {
    pub fn of(&self, name: &str) -> String {
        join_name(self.prefix, &format!("{name}{}", self.suffix))
    }
}

/// The input projection every scan cell has: `weight_ih` `[rows, input]` and `bias_ih`
/// `[rows]`, initialised as `nn.Linear`'s (U(±1/√input)), split by rows into equal gates.
#[derive(Clone, Debug)]
pub(crate) struct Projection {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub gates: usize,
}

impl Projection {
    pub fn new<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        gates: usize,
        width: usize,
        input: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let bound = 1.0 / (input as f64).sqrt();
        let weight = store.add(
            names.of("weight_ih"),
            init::uniform(&[gates * width, input], bound, rng),
        );
        let bias = bias.then(|| {
            store.add(
                names.of("bias_ih"),
                init::uniform(&[gates * width], bound, rng),
            )
        });
        Projection {
            weight,
            bias,
            gates,
        }
    }

    /// Each gate's pre-activation W_k·x + b_k for `x` `[..., input]`: one product per gate,
    /// over the weight's rows as a view, so no gate is copied out of a wider result.
    pub fn gates<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Vec<Var<'t, T>> {
        let (w, b) = (s.param(self.weight), self.bias.map(|b| s.param(b)));
        let rows = w.shape()[0] / self.gates;
        (0..self.gates)
            .map(|k| {
                let r = k * rows..(k + 1) * rows;
                x.linear(w.slice(0, r.clone()), b.map(|b| b.slice(0, r)))
            })
            .collect()
    }
}

/// The scan's options for `lengths` and a direction, on the threads ops may use.
pub(crate) fn scan_options(lengths: Option<&[usize]>, reverse: bool) -> ScanOptions {
    ScanOptions {
        lengths: lengths.map(<[usize]>::to_vec),
        reverse,
        threads: crate::parallel::threads(),
    }
}

/// Each row's value at its last step of the scan's order, `[B, ...]` from `[T, B, ...]`:
/// step `len − 1` forward, step 0 in reverse.
pub(crate) fn last_steps<'t, T: Element>(
    seq: Var<'t, T>,
    lengths: Option<&[usize]>,
    reverse: bool,
) -> Var<'t, T> {
    let shape = seq.shape();
    let (steps, batch) = (shape[0], shape[1]);
    let rest: Vec<usize> = shape[2..].to_vec();
    let ids: Vec<usize> = (0..batch)
        .map(|b| {
            let t = match (reverse, lengths) {
                (true, _) => 0,
                (false, Some(l)) => l[b] - 1,
                (false, None) => steps - 1,
            };
            t * batch + b
        })
        .collect();
    let flat: Vec<usize> = [steps * batch]
        .into_iter()
        .chain(rest.iter().copied())
        .collect();
    seq.reshape(&flat).index_select(&ids)
}

/// h = the scan of a and b from `h0`, with each row's last h: the output and final state of a
/// cell whose state is h alone.
pub(crate) fn scan_state<'t, T: Element>(
    a: Var<'t, T>,
    b: Var<'t, T>,
    h0: Var<'t, T>,
    lengths: Option<&[usize]>,
    reverse: bool,
) -> (Var<'t, T>, State<'t, T>) {
    let h = a.linear_scan(b, Some(h0), &scan_options(lengths, reverse));
    (h, smallvec::smallvec![last_steps(h, lengths, reverse)])
}

/// A cell's single step as its sequence form over one step: x `[B, input]`.
pub(crate) fn step_as_sequence<'t, T: Element, C: Cell<T>>(
    cell: &C,
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    state: &[Var<'t, T>],
) -> State<'t, T> {
    let shape = x.shape();
    let (_, state) = cell
        .sequence(s, x.reshape(&[1, shape[0], shape[1]]), state, None, false)
        .expect("a scan cell runs whole sequences");
    state
}

/// g(v) = v + ½ for v ≥ 0, σ(v) below: the positive, continuous map minGRU and minLSTM apply
/// to their candidate state in the paper's log-space form (Feng et al. 2024), so that every
/// state stays positive.
struct PositiveG;

impl<T: Element> Op<T> for PositiveG {
    fn name(&self) -> &'static str {
        "positive_g"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let x = inputs[0].data();
        // σ over the whole slice on the vectorized kernel, then the branch as a select.
        let mut y = T::sigmoid_of(x);
        let half = T::of(0.5);
        widest(
            #[inline(always)]
            || {
                for (y, &v) in y.iter_mut().zip(x) {
                    if v >= T::zero() {
                        *y = v + half;
                    }
                }
            },
        );
        Tensor::from_vec(y, inputs[0].shape())
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let (x, y, g) = (
            ctx.input(0).data(),
            ctx.output().data(),
            ctx.grad_output().data(),
        );
        let grads = x.iter().zip(y).zip(g).map(|((&x, &y), &g)| {
            if x >= T::zero() {
                g
            } else {
                g * y * (T::one() - y)
            }
        });
        ctx.accumulate_grad_input(0, grads);
    }
}

/// The candidate state: g(u) in the positive form, u itself otherwise.
pub(crate) fn candidate<T: Element>(u: Var<'_, T>, positive: bool) -> Var<'_, T> {
    if positive {
        u.tape().apply(PositiveG, &[u])
    } else {
        u
    }
}

#[cfg(test)]
mod tests {
    use super::PositiveG;
    use recur_tape::{assert_gradcheck, Tape, Tensor};

    #[test]
    fn positive_g_passes_gradcheck_and_is_continuous() {
        let x = Tensor::from_vec(vec![-2.0, -0.3, 0.2, 1.5, 3.0, -5.0], &[2, 3]);
        assert_gradcheck(|t: &Tape<f64>, v| t.apply(PositiveG, &[v[0]]), &[x]);
        let tape = Tape::new();
        let at = |v: f64| {
            let x = tape.constant(Tensor::from_vec(vec![v], &[1]));
            tape.apply(PositiveG, &[x]).item()
        };
        assert_eq!(at(0.0), 0.5);
        assert!((at(-1e-12) - 0.5).abs() < 1e-12);
    }
}
