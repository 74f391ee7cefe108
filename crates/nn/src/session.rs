//! A session binds a parameter store to a tape for one forward/backward pass, with the
//! training flag and the random stream that dropout draws from.

use crate::params::{ParamGrads, ParamId, ParamStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recur_tape::{Element, Gradients, Tape, Tensor, Var};
use std::cell::RefCell;

/// Whether layers behave as in training (dropout active) or evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout and zoneout masks are drawn.
    Train,
    /// Evaluation: no masks, zoneout's expected mix.
    Eval,
}

/// Parameters on a tape (lifetime `'t`) from a store (lifetime `'s`) for one step. Each
/// parameter becomes a leaf the first time a layer asks for it, so a pass that uses a few
/// parameters copies only those.
pub struct Session<'t, 's, T: Element> {
    tape: &'t Tape<T>,
    store: &'s ParamStore<T>,
    bound: RefCell<Vec<Option<Var<'t, T>>>>,
    mode: Mode,
    rng: RefCell<StdRng>,
    checkpoint_through_time: std::cell::Cell<bool>,
}

impl<'t, 's, T: Element> Session<'t, 's, T> {
    /// A session whose dropout masks come from `seed`.
    pub fn new(tape: &'t Tape<T>, store: &'s ParamStore<T>, mode: Mode, seed: u64) -> Self {
        Session {
            tape,
            store,
            bound: RefCell::new(vec![None; store.len()]),
            mode,
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
            checkpoint_through_time: std::cell::Cell::new(false),
        }
    }

    /// The tape this session records on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The parameters it reads.
    pub fn store(&self) -> &'s ParamStore<T> {
        self.store
    }

    /// Training or evaluation.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the mode is [`Mode::Train`].
    pub fn is_training(&self) -> bool {
        self.mode == Mode::Train
    }

    /// Asks every sequence layer run in this session to checkpoint through time (as if its
    /// `RnnOptions::checkpoint` were set): O(√T) activation memory, identical gradients.
    pub fn set_checkpoint_through_time(&self, on: bool) {
        self.checkpoint_through_time.set(on);
    }

    /// Whether [`set_checkpoint_through_time`](Self::set_checkpoint_through_time) is on.
    pub fn checkpoint_through_time(&self) -> bool {
        self.checkpoint_through_time.get()
    }

    /// The parameter as a variable on this session's tape. Bound inside `no_grad` it is a
    /// constant; the first use while recording makes it a leaf that receives gradients.
    pub fn param(&self, id: ParamId) -> Var<'t, T> {
        let mut bound = self.bound.borrow_mut();
        let recording = self.tape.is_recording();
        match bound[id.index()] {
            Some(v) if v.requires_grad() || !recording => v,
            _ => {
                let value = self.store.get(id).clone();
                let v = if recording {
                    self.tape.var(value)
                } else {
                    self.tape.constant(value)
                };
                bound[id.index()] = Some(v);
                v
            }
        }
    }

    /// Uses `var` for the parameter from now on instead of a copy of the stored value: ties
    /// two parameters together, or feeds parameters in from `gradcheck`'s inputs.
    pub fn bind_param(&self, id: ParamId, var: Var<'t, T>) {
        let value = var.shape();
        assert!(
            value.as_slice() == self.store.get(id).shape(),
            "bind_param: {} has shape {:?}, the variable {:?}",
            self.store.name(id),
            self.store.get(id).shape(),
            value.as_slice()
        );
        self.bound.borrow_mut()[id.index()] = Some(var);
    }

    /// The parameters bound so far (those the pass has used), in id order.
    pub fn bound_params(&self) -> Vec<ParamId> {
        self.bound
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| ParamId(i))
            .collect()
    }

    /// A constant on this session's tape.
    pub fn constant(&self, value: Tensor<T>) -> Var<'t, T> {
        self.tape.constant(value)
    }

    /// A fresh seed from the session's random generator (for draws to be repeated later).
    pub fn seed(&self) -> u64 {
        self.rng.borrow_mut().gen()
    }

    /// A keep-mask of ones with probability 1 − p, for dropout.
    pub fn bernoulli_mask(&self, shape: &[usize], p: f64) -> Tensor<T> {
        keep_mask(&mut *self.rng.borrow_mut(), shape, p)
    }

    /// Runs backward from `loss` and collects the gradient of every bound parameter.
    pub fn backward(&self, loss: Var<'t, T>) -> ParamGrads<T> {
        let mut grads: Gradients<T> = self.tape.backward(loss);
        let mut out = ParamGrads::empty(self.store.len());
        for (i, v) in self.bound.borrow().iter().enumerate() {
            if let Some(g) = v.and_then(|v| grads.take(v)) {
                out.set(ParamId(i), g);
            }
        }
        out
    }
}

/// A mask of `shape` drawn from `rng`: each element 0 with probability p, else 1.
pub(crate) fn keep_mask<T: Element>(rng: &mut impl Rng, shape: &[usize], p: f64) -> Tensor<T> {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            if rng.gen::<f64>() < p {
                T::zero()
            } else {
                T::one()
            }
        })
        .collect();
    Tensor::from_vec(data, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_first_used_without_grad_still_gets_gradients_later() {
        let mut store = ParamStore::<f64>::new();
        let w = store.add("w", Tensor::from_vec(vec![2.0], &[1]));
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let frozen = tape.no_grad(|| s.param(w));
        assert!(!frozen.requires_grad());
        let loss = (s.param(w) * 3.0).sum();
        assert_eq!(s.backward(loss).get(w).unwrap().data(), &[3.0]);
    }
}
