//! LRU, the Linear Recurrent Unit (Orvieto et al. 2023): a complex diagonal recurrence
//! h_t = λ ⊙ h_{t−1} + γ ⊙ (B·x_t), λ = exp(−exp(ν) + i·exp(θ)), γ = √(1 − |λ|²), read out
//! as y_t = Re(C·h_t) + D ⊙ x_t. Parameter names follow the paper's code (`nu_log`,
//! `theta_log`, `B_re`, `B_im`, `C_re`, `C_im`, `D`).

use super::{last_steps, scan_options, step_as_sequence, Names};
use crate::init;
use crate::params::{ParamId, ParamStore};
use crate::rnn::cell::{Cell, State};
use crate::session::Session;
use rand::Rng;
use recur_tape::{stack, Element, Tensor, Var};
use smallvec::{smallvec, SmallVec};

/// LRU's sizes and its ring initialisation: |λ| uniform on the ring [r_min, r_max] (by area),
/// arg λ uniform in [0, max_phase].
#[derive(Clone, Debug, PartialEq)]
pub struct LruOptions {
    /// Complex channels of the state (N); the output has the layer's hidden size.
    pub state_size: usize,
    /// Smallest |λ| at initialisation.
    pub r_min: f64,
    /// Largest |λ| at initialisation.
    pub r_max: f64,
    /// Largest arg λ at initialisation.
    pub max_phase: f64,
}

impl LruOptions {
    /// The paper's defaults for long sequences: r in [0.9, 0.999], phase in [0, 2π].
    pub fn new(state_size: usize) -> Self {
        LruOptions {
            state_size,
            r_min: 0.9,
            r_max: 0.999,
            max_phase: std::f64::consts::TAU,
        }
    }
}

/// An LRU cell. State parts: the output y `[B, H]` and the complex state `[B, 2N]` as
/// (re, im) pairs. `D` (the skip) exists when input and output widths are equal.
#[derive(Clone, Debug)]
pub struct LruCell {
    nu_log: ParamId,
    theta_log: ParamId,
    b_re: ParamId,
    b_im: ParamId,
    c_re: ParamId,
    c_im: ParamId,
    d: Option<ParamId>,
    /// Width of x_t.
    pub input_size: usize,
    /// Width of the output y.
    pub hidden_size: usize,
    /// Complex channels N of the state.
    pub state_size: usize,
}

impl LruCell {
    pub(crate) fn with_names<T: Element>(
        store: &mut ParamStore<T>,
        names: &Names<'_>,
        input_size: usize,
        hidden_size: usize,
        options: &LruOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let n = options.state_size;
        let (r2min, r2max) = (options.r_min.powi(2), options.r_max.powi(2));
        let nu: Vec<f64> = (0..n)
            .map(|_| (-0.5 * (rng.gen::<f64>() * (r2max - r2min) + r2min).ln()).ln())
            .collect();
        let theta: Vec<f64> = (0..n)
            .map(|_| (options.max_phase * rng.gen_range(f64::EPSILON..1.0)).ln())
            .collect();
        let scaled = |t: Tensor<T>, scale: f64| t.map(|v| v * T::of(scale));
        let nu_log = store.add(names.of("nu_log"), Tensor::from_f64s(&nu, &[n]));
        let theta_log = store.add(names.of("theta_log"), Tensor::from_f64s(&theta, &[n]));
        let b_scale = 1.0 / (2.0 * input_size as f64).sqrt();
        let b_re = store.add(
            names.of("B_re"),
            scaled(init::normal(&[n, input_size], rng), b_scale),
        );
        let b_im = store.add(
            names.of("B_im"),
            scaled(init::normal(&[n, input_size], rng), b_scale),
        );
        let c_scale = 1.0 / (n as f64).sqrt();
        let c_re = store.add(
            names.of("C_re"),
            scaled(init::normal(&[hidden_size, n], rng), c_scale),
        );
        let c_im = store.add(
            names.of("C_im"),
            scaled(init::normal(&[hidden_size, n], rng), c_scale),
        );
        let d = (input_size == hidden_size)
            .then(|| store.add(names.of("D"), init::normal(&[hidden_size], rng)));
        LruCell {
            nu_log,
            theta_log,
            b_re,
            b_im,
            c_re,
            c_im,
            d,
            input_size,
            hidden_size,
            state_size: n,
        }
    }

    /// λ as `[N, 2]` (re, im) and γ duplicated over each pair, `[2N]`.
    fn diagonal<'t, T: Element>(&self, s: &Session<'t, '_, T>) -> (Var<'t, T>, Var<'t, T>) {
        let magnitude = (-s.param(self.nu_log).exp()).exp();
        let phase = s.param(self.theta_log).exp();
        let lambda = stack(&[magnitude * phase.cos(), magnitude * phase.sin()], 1);
        let gamma = (-(magnitude * magnitude) + T::one()).sqrt();
        let n = self.state_size;
        (lambda, stack(&[gamma, gamma], 1).reshape(&[2 * n]))
    }
}

impl<T: Element> Cell<T> for LruCell {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn state_sizes(&self) -> SmallVec<[usize; 2]> {
        smallvec![self.hidden_size, 2 * self.state_size]
    }

    fn step<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
    ) -> State<'t, T> {
        step_as_sequence(self, s, x, state)
    }

    fn sequence<'t>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        state: &[Var<'t, T>],
        lengths: Option<&[usize]>,
        reverse: bool,
    ) -> Option<(Var<'t, T>, State<'t, T>)> {
        let shape = x.shape();
        let (steps, batch, n) = (shape[0], shape[1], self.state_size);
        let (lambda, gamma) = self.diagonal(s);
        // B's rows interleaved (re, im) per channel, so B·x comes out as pairs.
        let b_weight =
            stack(&[s.param(self.b_re), s.param(self.b_im)], 1).reshape(&[2 * n, self.input_size]);
        let b = (x.linear(b_weight, None) * gamma).reshape(&[steps, batch, n, 2]);
        let h0 = state[1].reshape(&[batch, n, 2]);
        let h = lambda.linear_scan_complex(b, Some(h0), &scan_options(lengths, reverse));
        // Re(C·h) = C_re·h_re − C_im·h_im, as one product over the pairs.
        let c_weight = stack(&[s.param(self.c_re), -s.param(self.c_im)], 2)
            .reshape(&[self.hidden_size, 2 * n]);
        let mut y = h.reshape(&[steps, batch, 2 * n]).linear(c_weight, None);
        if let Some(d) = self.d {
            let skip = x * s.param(d);
            y = y + match lengths {
                Some(l) => skip.mask(&active(l, steps, self.hidden_size)),
                None => skip,
            };
        }
        let last_h = last_steps(h, lengths, reverse).reshape(&[batch, 2 * n]);
        Some((y, smallvec![last_steps(y, lengths, reverse), last_h]))
    }
}

/// 1 where step t is inside row b, as `[T, B, width]`.
fn active<T: Element>(lengths: &[usize], steps: usize, width: usize) -> Tensor<T> {
    let data = (0..steps)
        .flat_map(|t| {
            lengths.iter().flat_map(move |&len| {
                std::iter::repeat_n(if t < len { T::one() } else { T::zero() }, width)
            })
        })
        .collect();
    Tensor::from_vec(data, &[steps, lengths.len(), width])
}
