//! SGD as `torch.optim.SGD`: g ← g + λθ; b ← μb + (1−τ)g (b = g at first); g ← g + μb
//! (nesterov) or b; θ ← θ − lr·g.

use super::{load_slots, named_slots, Optimizer};
use crate::parallel::{map_parts, PART};
use crate::params::{ParamGrads, ParamStore};
use recur_tape::kernels::simd::widest;
use recur_tape::{Element, Tensor};

/// The hyper-parameters of `torch.optim.SGD`, with its defaults from [`SgdOptions::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdOptions {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor μ (0: plain SGD).
    pub momentum: f64,
    /// Dampening τ of the momentum.
    pub dampening: f64,
    /// L2 penalty λ, added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
}

impl SgdOptions {
    /// Learning rate `lr`, everything else off.
    pub fn new(lr: f64) -> Self {
        SgdOptions {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.SGD`, with one momentum buffer per parameter.
///
/// ```
/// use recur_nn::optim::{Optimizer, Sgd, SgdOptions};
/// use recur_nn::{ParamGrads, ParamStore};
/// use recur_tape::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let w = store.add("w", Tensor::from_vec(vec![1.0, 2.0], &[2]));
/// let mut grads = ParamGrads::empty(store.len());
/// grads.set(w, Tensor::from_vec(vec![0.5, -0.5], &[2]));
/// let mut sgd = Sgd::new(SgdOptions { momentum: 0.9, ..SgdOptions::new(0.1) });
/// sgd.step(&mut store, &grads);
/// assert_eq!(store.get(w).data(), &[0.95, 2.05]);
/// ```
pub struct Sgd<T: Element> {
    /// The hyper-parameters (change `lr` between steps freely).
    pub options: SgdOptions,
    momentum: Vec<Option<Tensor<T>>>,
}

impl<T: Element> Sgd<T> {
    /// SGD with `options`; panics on nesterov without momentum or with dampening.
    pub fn new(options: SgdOptions) -> Self {
        assert!(
            !options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0),
            "SGD: nesterov needs momentum > 0 and dampening 0"
        );
        Sgd {
            options,
            momentum: Vec::new(),
        }
    }
}

/// One part of one parameter's update: its values, gradient and momentum buffer (with
/// whether the buffer starts from this step's gradient).
struct Part<'a, T> {
    p: &'a mut [T],
    g: &'a [T],
    buf: Option<(&'a mut [T], bool)>,
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) {
        let o = self.options;
        let (lr, mu, damp, wd) = (
            T::of(o.lr),
            T::of(o.momentum),
            T::of(1.0 - o.dampening),
            T::of(o.weight_decay),
        );
        self.momentum.resize(params.len(), None);
        grads.assert_within(params.len(), "SGD step");
        let mut parts = Vec::new();
        let slots = params
            .values_mut()
            .zip(&grads.grads)
            .zip(&mut self.momentum);
        for ((p, g), buf) in slots {
            let Some(g) = g else { continue };
            let values = p.data_mut().chunks_mut(PART).zip(g.data().chunks(PART));
            if o.momentum == 0.0 {
                parts.extend(values.map(|(p, g)| Part { p, g, buf: None }));
            } else {
                let first = buf.is_none();
                let buf = buf.get_or_insert_with(|| Tensor::zeros(g.shape()));
                let bufs = buf.data_mut().chunks_mut(PART);
                parts.extend(values.zip(bufs).map(|((p, g), b)| Part {
                    p,
                    g,
                    buf: Some((b, first)),
                }));
            }
        }
        // As torch.optim.SGD: d = g + λθ; b = d on the first step, else μb + (1−τ)d;
        // d = d + μb (nesterov) or b; θ ← θ − lr·d.
        map_parts(
            parts,
            |part| part.p.len(),
            |Part { p, g, buf }| {
                widest(
                    #[inline(always)]
                    || match buf {
                        None => p
                            .iter_mut()
                            .zip(g)
                            .for_each(|(p, &g)| *p -= lr * (g + wd * *p)),
                        Some((b, first)) => {
                            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                                let d = g + wd * *p;
                                *b = if first { d } else { mu * *b + damp * d };
                                *p -= lr * if o.nesterov { d + mu * *b } else { *b };
                            }
                        }
                    },
                )
            },
        );
    }

    fn lr(&self) -> f64 {
        self.options.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.options.lr = lr;
    }

    fn state_tensors(&self, params: &ParamStore<T>) -> Vec<(String, Tensor<T>)> {
        named_slots("momentum_buffer", params, &self.momentum)
    }

    fn load_state_tensors(&mut self, params: &ParamStore<T>, tensors: &[(String, Tensor<T>)]) {
        load_slots("momentum_buffer", params, tensors, &mut self.momentum);
    }
}
