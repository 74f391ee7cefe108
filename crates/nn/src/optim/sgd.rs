//! SGD as `torch.optim.SGD`: g ← g + λθ; b ← μb + (1−τ)g (b = g at first); g ← g + μb
//! (nesterov) or b; θ ← θ − lr·g.

use super::{load_slots, named_slots, Optimizer};
use crate::params::{ParamGrads, ParamStore};
use recur_tape::{Element, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdOptions {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdOptions {
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

pub struct Sgd<T: Element> {
    pub options: SgdOptions,
    momentum: Vec<Option<Tensor<T>>>,
}

impl<T: Element> Sgd<T> {
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
        for (id, g) in grads.iter() {
            let p = params.get_mut(id).data_mut();
            let mut d: Vec<T> = g
                .data()
                .iter()
                .zip(p.iter())
                .map(|(&g, &p)| g + wd * p)
                .collect();
            if o.momentum != 0.0 {
                let slot = &mut self.momentum[id.index()];
                match slot {
                    None => *slot = Some(Tensor::from_vec(d.clone(), g.shape())),
                    Some(buf) => buf
                        .data_mut()
                        .iter_mut()
                        .zip(&d)
                        .for_each(|(b, &d)| *b = mu * *b + damp * d),
                }
                let buf = slot.as_ref().expect("set just above").data();
                if o.nesterov {
                    d.iter_mut().zip(buf).for_each(|(d, &b)| *d += mu * b);
                } else {
                    d.copy_from_slice(buf);
                }
            }
            p.iter_mut().zip(&d).for_each(|(p, &d)| *p -= lr * d);
        }
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
