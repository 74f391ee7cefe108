//! The differentiable linear scan h_t = a_t ⊙ h_{t−1} + b_t over `[T, B, H]` (real) or
//! `[T, B, H, 2]` (complex, LRU's diagonal recurrence), with an optional initial state,
//! per-row lengths and a reverse direction: the recurrence of minGRU, minLSTM, LRU, RG-LRU
//! and QRNN. Forward and backward are each one fused pass (`kernels::scan`).

use crate::kernels::scan::{scan_backward, scan_forward, ScanLayout};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// The options of [`Var::linear_scan`]: per-row lengths and the direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanOptions {
    /// Each row's true length (a padded batch): outputs past it are zero, the state is not
    /// changed there, and those steps get zero gradients.
    pub lengths: Option<Vec<usize>>,
    /// Scan from each row's last step back to step 0 (the backward half of a bidirectional
    /// layer); `h0` is then the state before each row's last step.
    pub reverse: bool,
    /// Threads the scan may split its channels over (results do not depend on it); 0 or 1
    /// runs on the calling thread.
    pub threads: usize,
}

impl ScanOptions {
    /// The scan over each row's first `lengths[b]` steps.
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = Some(lengths.to_vec());
        self
    }
    /// Scan backwards in time.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }
    /// Split the channels over up to `threads` threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

struct LinearScan {
    options: ScanOptions,
    complex: bool,
    shared_a: bool,
    has_h0: bool,
}

impl LinearScan {
    fn layout<'a>(&'a self, b_shape: &[usize]) -> ScanLayout<'a> {
        ScanLayout {
            steps: b_shape[0],
            batch: b_shape[1],
            width: b_shape[2..].iter().product(),
            lengths: self.options.lengths.as_deref(),
            reverse: self.options.reverse,
            complex: self.complex,
            shared_a: self.shared_a,
        }
    }
}

/// The op's name in messages.
fn op_name(complex: bool) -> &'static str {
    if complex {
        "linear_scan_complex"
    } else {
        "linear_scan"
    }
}

impl<T: Element> Op<T> for LinearScan {
    fn name(&self) -> &'static str {
        op_name(self.complex)
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (a, b) = (inputs[0], inputs[1]);
        let lay = self.layout(b.shape());
        let mut h = vec![T::zero(); b.numel()];
        scan_forward(
            &lay,
            a.data(),
            b.data(),
            inputs.get(2).map(|h0| h0.data()),
            &mut h,
            self.options.threads,
        );
        Tensor::from_vec(h, b.shape())
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let h0 = self.has_h0.then(|| ctx.input(2).data());
        let lay = self.layout(ctx.input(1).shape());
        let (da, db, dh0) = scan_backward(
            &lay,
            ctx.input(0).data(),
            h0,
            ctx.output().data(),
            ctx.grad_output().data(),
            self.options.threads,
        );
        ctx.add_grad_input(0, da);
        ctx.add_grad_input(1, db);
        if self.has_h0 {
            ctx.add_grad_input(2, dh0);
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The linear recurrence h_t = a_t ⊙ h_{t−1} + b_t along the first axis of `b`
    /// (`[T, B, H]`), from `h0` (`[B, H]`; zeros if `None`). Returns every h_t, `[T, B, H]`.
    /// `self` is `a`: of `b`'s shape, or `[H]` for a decay shared by every step and row.
    ///
    /// ```
    /// use recur_tape::{ops::scan::ScanOptions, Tape, Tensor};
    ///
    /// let tape = Tape::new();
    /// let a = tape.var(Tensor::from_vec(vec![0.5, 0.5, 0.5], &[3, 1, 1]));
    /// let b = tape.var(Tensor::from_vec(vec![1.0, 1.0, 1.0], &[3, 1, 1]));
    /// let h = a.linear_scan(b, None, &ScanOptions::default());
    /// assert_eq!(h.to_tensor().data(), &[1.0, 1.5, 1.75]);
    /// ```
    pub fn linear_scan(
        self,
        b: Var<'t, T>,
        h0: Option<Var<'t, T>>,
        options: &ScanOptions,
    ) -> Var<'t, T> {
        scan(self, b, h0, options, false)
    }

    /// [`linear_scan`](Self::linear_scan) over complex numbers stored as (re, im) pairs in a
    /// last axis of 2: `b` is `[T, B, H, 2]`, `a` of `b`'s shape or `[H, 2]` (a diagonal
    /// shared by every step, as LRU's Λ), `h0` `[B, H, 2]`; a_t ⊙ h_{t−1} is the complex product.
    pub fn linear_scan_complex(
        self,
        b: Var<'t, T>,
        h0: Option<Var<'t, T>>,
        options: &ScanOptions,
    ) -> Var<'t, T> {
        scan(self, b, h0, options, true)
    }
}

fn scan<'t, T: Element>(
    a: Var<'t, T>,
    b: Var<'t, T>,
    h0: Option<Var<'t, T>>,
    options: &ScanOptions,
    complex: bool,
) -> Var<'t, T> {
    let (a_shape, b_shape) = (a.shape(), b.shape());
    let name = op_name(complex);
    let dims = if complex { 4 } else { 3 };
    assert!(
        b_shape.len() == dims && (!complex || b_shape[3] == 2),
        "{name}: b has shape {:?}, expected [T, B, H{}]",
        b_shape.as_slice(),
        if complex { ", 2" } else { "" }
    );
    let shared_a = a_shape.as_slice() == &b_shape[2..];
    assert!(
        shared_a || a_shape == b_shape,
        "{name}: a has shape {:?}, expected b's {:?} or {:?}",
        a_shape.as_slice(),
        b_shape.as_slice(),
        &b_shape[2..]
    );
    if let Some(h0) = h0 {
        assert!(
            h0.shape().as_slice() == &b_shape[1..],
            "{name}: h0 has shape {:?}, expected {:?}",
            h0.shape().as_slice(),
            &b_shape[1..]
        );
    }
    if let Some(lengths) = &options.lengths {
        assert!(
            lengths.len() == b_shape[1] && lengths.iter().all(|&l| l <= b_shape[0]),
            "{name}: lengths {lengths:?} must give a length of at most {} for each of {} rows",
            b_shape[0],
            b_shape[1]
        );
    }
    let op = LinearScan {
        options: options.clone(),
        complex,
        shared_a,
        has_h0: h0.is_some(),
    };
    let inputs: Vec<Var<'t, T>> = [a, b].into_iter().chain(h0).collect();
    a.tape().apply(op, &inputs)
}

#[cfg(test)]
mod tests {
    use super::ScanOptions;
    use crate::testing::check_grad;
    use crate::{Tape, Tensor, Var};
    use rand::SeedableRng;

    /// The recurrence as a plain loop over (t, b, channel), the reference for the kernel.
    fn reference(
        a: &Tensor<f64>,
        b: &Tensor<f64>,
        h0: Option<&Tensor<f64>>,
        o: &ScanOptions,
        complex: bool,
    ) -> Vec<f64> {
        let s = b.shape();
        let (steps, batch, w) = (s[0], s[1], s[2..].iter().product::<usize>());
        let shared = a.numel() == w;
        let mut h = vec![0.0; b.numel()];
        for r in 0..batch {
            let len = o.lengths.as_ref().map_or(steps, |l| l[r]);
            let mut state: Vec<f64> =
                h0.map_or(vec![0.0; w], |h0| h0.data()[r * w..][..w].to_vec());
            let order: Vec<usize> = if o.reverse {
                (0..len).rev().collect()
            } else {
                (0..len).collect()
            };
            for t in order {
                let at = (t * batch + r) * w;
                let aa = if shared {
                    &a.data()[..w]
                } else {
                    &a.data()[at..at + w]
                };
                let bb = &b.data()[at..at + w];
                if complex {
                    for j in (0..w).step_by(2) {
                        let (re, im) = (state[j], state[j + 1]);
                        state[j] = aa[j] * re - aa[j + 1] * im + bb[j];
                        state[j + 1] = aa[j] * im + aa[j + 1] * re + bb[j + 1];
                    }
                } else {
                    for j in 0..w {
                        state[j] = aa[j] * state[j] + bb[j];
                    }
                }
                h[at..at + w].copy_from_slice(&state);
            }
        }
        h
    }

    fn options() -> Vec<ScanOptions> {
        let mut all = Vec::new();
        for reverse in [false, true] {
            all.push(ScanOptions::default().reverse(reverse));
            all.push(ScanOptions::default().reverse(reverse).lengths(&[4, 2, 3]));
        }
        all
    }

    fn scan<'t>(v: &[Var<'t, f64>], o: &ScanOptions, complex: bool) -> Var<'t, f64> {
        let h0 = v.get(2).copied();
        if complex {
            v[0].linear_scan_complex(v[1], h0, o)
        } else {
            v[0].linear_scan(v[1], h0, o)
        }
    }

    #[test]
    fn matches_a_plain_loop() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for complex in [false, true] {
            let bs: &[usize] = if complex { &[4, 3, 5, 2] } else { &[4, 3, 5] };
            for shared in [false, true] {
                let a_shape = if shared { &bs[2..] } else { bs };
                for with_h0 in [false, true] {
                    for o in options() {
                        let a = Tensor::uniform(a_shape, -1.0, 1.0, &mut rng);
                        let b = Tensor::uniform(bs, -1.0, 1.0, &mut rng);
                        let h0 = Tensor::uniform(&bs[1..], -1.0, 1.0, &mut rng);
                        let tape = Tape::new();
                        let mut v = vec![tape.var(a.clone()), tape.var(b.clone())];
                        if with_h0 {
                            v.push(tape.var(h0.clone()));
                        }
                        let got = scan(&v, &o, complex).to_tensor();
                        let want = reference(&a, &b, with_h0.then_some(&h0), &o, complex);
                        for (g, w) in got.data().iter().zip(&want) {
                            approx::assert_relative_eq!(*g, *w, max_relative = 1e-14);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn passes_gradcheck() {
        for complex in [false, true] {
            let bs: &[usize] = if complex { &[4, 3, 2, 2] } else { &[4, 3, 2] };
            for shared in [false, true] {
                let a_shape = if shared { &bs[2..] } else { bs };
                for o in options() {
                    let o2 = o.clone();
                    check_grad(&[a_shape, bs, &bs[1..]], move |_, v| scan(v, &o2, complex));
                    check_grad(&[a_shape, bs], move |_, v| scan(v, &o, complex));
                }
            }
        }
    }

    /// Channels split over threads compute exactly what one thread does.
    #[test]
    fn threads_give_the_same_bits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for complex in [false, true] {
            for shared in [false, true] {
                let bs: &[usize] = if complex {
                    &[3, 2, 4100, 2]
                } else {
                    &[3, 4, 4100]
                };
                let a_shape = if shared { &bs[2..] } else { bs };
                let a = Tensor::<f32>::uniform(a_shape, -1.0, 1.0, &mut rng);
                let b = Tensor::<f32>::uniform(bs, -1.0, 1.0, &mut rng);
                let h0 = Tensor::<f32>::uniform(&bs[1..], -1.0, 1.0, &mut rng);
                let dh = Tensor::<f32>::uniform(bs, -1.0, 1.0, &mut rng);
                let lengths = if complex {
                    vec![3, 2]
                } else {
                    vec![3, 1, 2, 3]
                };
                let run = |threads: usize| {
                    let o = ScanOptions::default()
                        .reverse(true)
                        .lengths(&lengths)
                        .threads(threads);
                    let tape = Tape::new();
                    let v = [
                        tape.var(a.clone()),
                        tape.var(b.clone()),
                        tape.var(h0.clone()),
                    ];
                    let h = if complex {
                        v[0].linear_scan_complex(v[1], Some(v[2]), &o)
                    } else {
                        v[0].linear_scan(v[1], Some(v[2]), &o)
                    };
                    let g = tape.backward_seeded(vec![(h, dh.clone())]);
                    let mut all = h.to_tensor().into_vec();
                    for x in v {
                        all.extend(g.wrt(x).into_vec());
                    }
                    all
                };
                assert_eq!(run(1), run(2));
            }
        }
    }

    #[test]
    fn padded_steps_change_nothing_real() {
        // Values past a row's length must not reach its outputs or any gradient.
        let o = ScanOptions::default().lengths(&[2, 3]).reverse(true);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = Tensor::<f64>::uniform(&[3, 2, 4], -1.0, 1.0, &mut rng);
        let b = Tensor::<f64>::uniform(&[3, 2, 4], -1.0, 1.0, &mut rng);
        let run = |a: &Tensor<f64>, b: &Tensor<f64>| {
            let tape = Tape::new();
            let (va, vb) = (tape.var(a.clone()), tape.var(b.clone()));
            let h = va.linear_scan(vb, None, &o);
            let loss = (h * h).sum();
            let g = tape.backward(loss);
            (h.to_tensor(), g.wrt(va), g.wrt(vb))
        };
        let (mut a2, mut b2) = (a.clone(), b.clone());
        // Row 0's step 2 is padding: fill it with something else.
        for j in 0..4 {
            a2.data_mut()[(2 * 2) * 4 + j] = 9.0;
            b2.data_mut()[(2 * 2) * 4 + j] = -9.0;
        }
        let (h, ga, gb) = run(&a, &b);
        let (h2, ga2, gb2) = run(&a2, &b2);
        assert_eq!(h.data(), h2.data());
        assert_eq!(ga.data(), ga2.data());
        assert_eq!(gb.data(), gb2.data());
        assert!(h.data()[16..20].iter().all(|&v| v == 0.0));
        assert!(ga.data()[16..20].iter().all(|&v| v == 0.0));
    }

    #[test]
    #[should_panic(expected = "linear_scan: a has shape [2, 3], expected b's [4, 2, 3] or [3]")]
    fn mismatch_names_the_op_and_shapes() {
        let tape = Tape::<f32>::new();
        let a = tape.var(Tensor::zeros(&[2, 3]));
        let b = tape.var(Tensor::zeros(&[4, 2, 3]));
        let _ = a.linear_scan(b, None, &ScanOptions::default());
    }
}
