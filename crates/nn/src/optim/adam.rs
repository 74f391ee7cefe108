//! Adam and AdamW as `torch.optim.Adam` / `AdamW`, in PyTorch's exact arithmetic:
//! m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε).
//! Adam adds λθ to g (L2); AdamW instead decays θ ← θ(1 − lr·λ) first.

use super::{load_slots, named_slots, Optimizer};
use crate::parallel::{map_parts, PART};
use crate::params::{ParamGrads, ParamStore};
use recur_tape::kernels::simd::widest;
use recur_tape::{Element, Tensor};

/// The hyper-parameters of `torch.optim.Adam` and `AdamW`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamOptions {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the first and second moments.
    pub betas: (f64, f64),
    /// ε, added to the second moment's root.
    pub eps: f64,
    /// Weight decay λ (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW) instead of L2 in the gradient (Adam).
    pub decoupled: bool,
}

impl AdamOptions {
    /// `torch.optim.Adam` defaults.
    pub fn adam(lr: f64) -> Self {
        AdamOptions {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
    /// `torch.optim.AdamW` defaults (weight decay 0.01).
    pub fn adamw(lr: f64) -> Self {
        AdamOptions {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: true,
        }
    }
}

/// `torch.optim.Adam` / `AdamW`, with both moments and a step count per parameter.
///
/// ```
/// use recur_nn::optim::{Adam, AdamOptions, Optimizer};
/// use recur_nn::{ParamGrads, ParamStore};
/// use recur_tape::Tensor;
///
/// let mut store = ParamStore::<f64>::new();
/// let w = store.add("w", Tensor::from_vec(vec![1.0, -1.0], &[2]));
/// let mut grads = ParamGrads::empty(store.len());
/// grads.set(w, Tensor::from_vec(vec![3.0, -0.1], &[2]));
/// let mut adam = Adam::new(AdamOptions::adam(0.01));
/// adam.step(&mut store, &grads);
/// // Adam's first step moves every weight by about lr against its gradient's sign.
/// let moved: Vec<f64> = store.get(w).data().iter().map(|v| (v.abs() - 1.0).abs()).collect();
/// assert!(moved.iter().all(|m| (m - 0.01).abs() < 1e-6));
/// ```
pub struct Adam<T: Element> {
    /// The hyper-parameters (change `lr` between steps freely).
    pub options: AdamOptions,
    exp_avg: Vec<Option<Tensor<T>>>,
    exp_avg_sq: Vec<Option<Tensor<T>>>,
    /// Steps taken per parameter (PyTorch keeps the count per parameter too).
    steps: Vec<u64>,
}

impl<T: Element> Adam<T> {
    /// Adam or AdamW with `options` (see [`AdamOptions::adam`], [`AdamOptions::adamw`]).
    pub fn new(options: AdamOptions) -> Self {
        Adam {
            options,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) {
        let o = self.options;
        let n = params.len();
        self.exp_avg.resize(n, None);
        self.exp_avg_sq.resize(n, None);
        self.steps.resize(n, 0);
        grads.assert_within(params.len(), "Adam step");
        let (b1, b2) = (T::of(o.betas.0), T::of(o.betas.1));
        let (one, eps, wd, lr) = (T::one(), T::of(o.eps), T::of(o.weight_decay), T::of(o.lr));
        let mut parts = Vec::new();
        let slots = params
            .values_mut()
            .zip(&grads.grads)
            .zip(self.exp_avg.iter_mut().zip(&mut self.exp_avg_sq))
            .zip(&mut self.steps);
        for (((p, g), (m, v)), steps) in slots {
            let Some(g) = g else { continue };
            *steps += 1;
            let t = *steps as i32;
            let bc2_sqrt = (one - b2.powi(t)).sqrt();
            let step_size = lr / (one - b1.powi(t));
            let m = m.get_or_insert_with(|| Tensor::zeros(g.shape())).data_mut();
            let v = v.get_or_insert_with(|| Tensor::zeros(g.shape())).data_mut();
            let values = p.data_mut().chunks_mut(PART).zip(g.data().chunks(PART));
            let moments = m.chunks_mut(PART).zip(v.chunks_mut(PART));
            parts.extend(
                values
                    .zip(moments)
                    .map(|((p, g), (m, v))| (p, g, m, v, step_size, bc2_sqrt)),
            );
        }
        map_parts(
            parts,
            |part| part.0.len(),
            |(p, g, m, v, step_size, bc2_sqrt)| {
                let moments = m.iter_mut().zip(v.iter_mut());
                widest(
                    #[inline(always)]
                    || {
                        for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(moments) {
                            if o.decoupled {
                                *p *= one - lr * wd;
                            }
                            let g = if o.decoupled { g } else { g + wd * *p };
                            *m = *m + (g - *m) * (one - b1);
                            *v = *v * b2 + (one - b2) * g * g;
                            let denom = v.sqrt() / bc2_sqrt + eps;
                            *p += (-step_size) * (*m / denom);
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
        let mut out = named_slots("exp_avg", params, &self.exp_avg);
        out.extend(named_slots("exp_avg_sq", params, &self.exp_avg_sq));
        for id in params.ids() {
            if let Some(&s) = self.steps.get(id.index()).filter(|&&s| s > 0) {
                out.push((
                    format!("step.{}", params.name(id)),
                    Tensor::scalar(T::of(s as f64)),
                ));
            }
        }
        out
    }

    fn load_state_tensors(&mut self, params: &ParamStore<T>, tensors: &[(String, Tensor<T>)]) {
        load_slots("exp_avg", params, tensors, &mut self.exp_avg);
        load_slots("exp_avg_sq", params, tensors, &mut self.exp_avg_sq);
        self.steps = params
            .ids()
            .map(|id| {
                let key = format!("step.{}", params.name(id));
                tensors
                    .iter()
                    .find(|(n, t)| *n == key && t.numel() == 1)
                    .and_then(|(_, t)| t.item().to_u64())
                    .unwrap_or(0)
            })
            .collect();
    }
}
