//! Regularisers of a recurrent layer's steps, for any cell: variational dropout (Gal &
//! Ghahramani 2016: one mask per sequence, the same at every step) on the recurrent input
//! h_{t−1}, and zoneout (Krueger et al. 2016: each state unit keeps its previous value with
//! probability p at each step). Their random draws are fixed when a direction starts, so the
//! checkpointed op's recomputation draws the same masks again.

use super::cell::State;
use crate::session::{keep_mask, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur_tape::{Element, Tensor, Var};

/// What one direction's steps apply to the state; nothing by default.
#[derive(Clone, Default)]
pub(crate) struct StateNoise<T: Element> {
    /// Variational dropout on state part 0 as the steps read it: the keep-mask `[B, width]`
    /// and the drop probability.
    dropout: Option<(Tensor<T>, f64)>,
    zoneout: Option<Zoneout>,
}

#[derive(Clone, Copy)]
struct Zoneout {
    p: f64,
    /// In training, the seed of every step's masks; in evaluation `None`: the state is the
    /// expected mix p·old + (1 − p)·new.
    seed: Option<u64>,
}

impl<T: Element> StateNoise<T> {
    /// The noise of one direction over `batch` rows whose state part 0 is `width` wide:
    /// `dropout` (training only) and `zoneout` probabilities.
    pub fn new(
        s: &Session<'_, '_, T>,
        batch: usize,
        width: usize,
        dropout: f64,
        zoneout: f64,
    ) -> Self {
        let training = s.is_training();
        StateNoise {
            dropout: (training && dropout > 0.0)
                .then(|| (s.bernoulli_mask(&[batch, width], dropout), dropout)),
            zoneout: (zoneout > 0.0).then(|| Zoneout {
                p: zoneout,
                seed: training.then(|| s.seed()),
            }),
        }
    }

    /// The state as a step reads it: part 0 dropped out by the sequence's mask.
    pub fn read<'t>(&self, state: &State<'t, T>) -> State<'t, T> {
        let mut read = state.clone();
        if let Some((mask, p)) = &self.dropout {
            read[0] = read[0].dropout_with_mask(mask, *p);
        }
        read
    }

    /// The state after step `t`: `new`, or with zoneout each unit's `old` value kept with
    /// probability p (its expectation in evaluation).
    pub fn update<'t>(&self, t: usize, old: &State<'t, T>, new: State<'t, T>) -> State<'t, T> {
        let Some(Zoneout { p, seed }) = self.zoneout else {
            return new;
        };
        new.iter()
            .zip(old)
            .enumerate()
            .map(|(part, (&new, &old))| match seed {
                Some(seed) => {
                    let mut rng = StdRng::seed_from_u64(step_seed(seed, t, part));
                    // 1: take the new value; 0 (probability p): keep the old one.
                    let take_new = keep_mask(&mut rng, &new.shape(), p);
                    new.where_mask(&take_new, old)
                }
                None => old * T::of(p) + new * T::of(1.0 - p),
            })
            .collect()
    }
}

/// The seed of step `t`'s mask for state part `part`.
fn step_seed(seed: u64, t: usize, part: usize) -> u64 {
    seed ^ (t as u64 * 4 + part as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Variational dropout on a layer's input `[T, B, F]`: one keep-mask `[B, F]` for every step.
pub(crate) fn variational_dropout<'t, T: Element>(
    s: &Session<'t, '_, T>,
    x: Var<'t, T>,
    p: f64,
) -> Var<'t, T> {
    if !s.is_training() || p == 0.0 {
        return x;
    }
    let shape = x.shape();
    x.dropout_with_mask(&s.bernoulli_mask(&shape[1..], p), p)
}

#[cfg(test)]
mod tests {
    use crate::params::ParamStore;
    use crate::rnn::{Cell, Lstm, Recurrent, RnnOptions, State};
    use crate::session::{Mode, Session};
    use recur_tape::{Element, Tape, Tensor, Var};
    use smallvec::{smallvec, SmallVec};

    /// h' = x + h (as the step reads h): what the regularisers do to the state shows in the
    /// output directly.
    #[derive(Clone)]
    struct Sum(usize);

    impl<T: Element> Cell<T> for Sum {
        fn input_size(&self) -> usize {
            self.0
        }
        fn state_sizes(&self) -> SmallVec<[usize; 2]> {
            smallvec![self.0]
        }
        fn step<'t>(
            &self,
            _: &Session<'t, '_, T>,
            x: Var<'t, T>,
            h: &[Var<'t, T>],
        ) -> State<'t, T> {
            smallvec![x + h[0]]
        }
    }

    /// The outputs `[T, B, W]` of the `Sum` layer over `x`, from h0 = `h0` everywhere.
    fn sum_outputs(options: RnnOptions, mode: Mode, x: Tensor<f64>, h0: f64) -> Vec<f64> {
        let shape = x.shape().to_vec();
        let layer = Recurrent::build(options, "sum", |_, _, w| Sum(w));
        let store = ParamStore::new();
        let tape = Tape::new();
        let s = Session::new(&tape, &store, mode, 7);
        let init = tape.constant(Tensor::full(&[1, shape[1], shape[2]], h0));
        let out = layer.forward(&s, tape.constant(x), Some(&[init]), None);
        out.output.to_tensor().data().to_vec()
    }

    #[test]
    fn state_dropout_drops_the_same_units_of_h_at_every_step() {
        let (steps, batch, width, p) = (4, 50, 40, 0.3);
        let options = RnnOptions::new(width, width).variational_dropout(0.0, p);
        let zeros = Tensor::zeros(&[steps, batch, width]);
        // x = 0 and h0 = 1: h_t = m/(1 − p)^t for the sequence's one mask m.
        let out = sum_outputs(options.clone(), Mode::Train, zeros.clone(), 1.0);
        let n = batch * width;
        let kept: Vec<bool> = out[..n].iter().map(|&v| v != 0.0).collect();
        for t in 0..steps {
            let scale = (1.0 - p).powi(t as i32 + 1).recip();
            for (i, &v) in out[t * n..(t + 1) * n].iter().enumerate() {
                let want = if kept[i] { scale } else { 0.0 };
                assert!((v - want).abs() < 1e-12, "step {t} unit {i}: {v} vs {want}");
            }
        }
        let dropped = kept.iter().filter(|&&k| !k).count() as f64 / n as f64;
        assert!((dropped - p).abs() < 0.05, "dropped {dropped}");
        // Evaluation reads h as it is.
        let eval = sum_outputs(options, Mode::Eval, zeros, 1.0);
        assert!(eval.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn zoneout_keeps_units_with_probability_p_and_mixes_in_evaluation() {
        let (steps, batch, width, p) = (20, 20, 50, 0.25);
        let options = RnnOptions::new(width, width).zoneout(p);
        let ones = Tensor::ones(&[steps, batch, width]);
        // new = old + 1: each unit counts the steps at which it took the new value.
        let out = sum_outputs(options.clone(), Mode::Train, ones.clone(), 0.0);
        let n = batch * width;
        for t in 1..steps {
            for i in 0..n {
                let step = out[t * n + i] - out[(t - 1) * n + i];
                assert!(step == 0.0 || step == 1.0, "a unit moved by {step}");
            }
        }
        let updated = out[(steps - 1) * n..].iter().sum::<f64>() / (n * steps) as f64;
        assert!((updated - (1.0 - p)).abs() < 0.02, "updated {updated}");
        // Evaluation: h_t = p·h + (1 − p)·(h + 1) = h + 1 − p.
        let eval = sum_outputs(options, Mode::Eval, ones, 0.0);
        for t in 0..steps {
            let want = (t + 1) as f64 * (1.0 - p);
            assert!(eval[t * n..(t + 1) * n]
                .iter()
                .all(|&v| (v - want).abs() < 1e-12));
        }
    }

    #[test]
    fn input_dropout_drops_the_same_features_at_every_step() {
        let (steps, batch, width, p) = (5, 30, 20, 0.4);
        let store = ParamStore::<f64>::new();
        let options = RnnOptions::new(width, width).variational_dropout(p, 0.0);
        let layer = Recurrent::build(options, "sum", |_, _, w| Sum(w));
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 3);
        let x = tape.var(Tensor::ones(&[steps, batch, width]));
        let loss = layer.forward(&s, x, None, None).output.sum();
        let g = tape.backward(loss).wrt(x);
        let n = batch * width;
        let first: Vec<bool> = g.data()[..n].iter().map(|&v| v == 0.0).collect();
        for t in 1..steps {
            let dropped: Vec<bool> = g.data()[t * n..(t + 1) * n]
                .iter()
                .map(|&v| v == 0.0)
                .collect();
            assert_eq!(dropped, first, "step {t} drops other features");
        }
        let share = first.iter().filter(|&&d| d).count() as f64 / n as f64;
        assert!((share - p).abs() < 0.06, "dropped {share}");
    }

    /// With noise the layer steps (built-in cells leave the fused kernels), and checkpointing
    /// through time redraws the same masks when it recomputes: same outputs and gradients.
    #[test]
    fn checkpointing_repeats_the_noise() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let mut store = ParamStore::<f64>::new();
        let options = RnnOptions::new(3, 5)
            .num_layers(2)
            .bidirectional(true)
            .variational_dropout(0.2, 0.3)
            .zoneout(0.2);
        let lstm = Lstm::new(&mut store, "", options, &mut rng);
        let x = Tensor::uniform(&[9, 4, 3], -1.0, 1.0, &mut rng);
        let run = |checkpoint: bool| {
            let mut layer = lstm.clone();
            layer.options.checkpoint = checkpoint;
            let tape = Tape::new();
            let s = Session::new(&tape, &store, Mode::Train, 11);
            let xv = tape.var(x.clone());
            let out = layer.forward(&s, xv, None, Some(&[9, 3, 7, 1]));
            let loss = (out.output * out.output).sum() + out.c_n().unwrap().sum();
            let grads = tape.backward(loss);
            let mut all = vec![loss.item(), grads.wrt(xv).data().iter().sum::<f64>()];
            all.extend(
                store
                    .ids()
                    .map(|id| grads.wrt(s.param(id)).data().iter().sum::<f64>()),
            );
            all
        };
        let (plain, checkpointed) = (run(false), run(true));
        for (a, b) in plain.iter().zip(&checkpointed) {
            assert!((a - b).abs() < 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }
        // The noise acts: evaluation differs from training.
        assert!(plain[0] != run_eval(&lstm, &store, &x));
    }

    fn run_eval(lstm: &Lstm, store: &ParamStore<f64>, x: &Tensor<f64>) -> f64 {
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Eval, 11);
        let out = lstm.forward(&s, tape.constant(x.clone()), None, Some(&[9, 3, 7, 1]));
        ((out.output * out.output).sum() + out.c_n().unwrap().sum()).item()
    }
}
