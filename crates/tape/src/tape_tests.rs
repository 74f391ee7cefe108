//! Tests of the tape: deep chains, detach, no-grad, ops with several outputs.

use crate::{Element, Tape, Tensor};

/// How many ops the tape recorded.
fn recorded_ops<T: Element>(tape: &Tape<T>) -> usize {
    tape.nodes
        .borrow()
        .iter()
        .filter(|n| n.op.is_some())
        .count()
}

#[test]
fn backward_of_a_100_000_step_recurrence_does_not_recurse() {
    // h_t = tanh(w · h_{t-1} + x), T = 100 000: a chain of 300 000 recorded ops.
    const STEPS: usize = 100_000;
    let tape = Tape::<f64>::with_capacity(3 * STEPS + 4);
    let w = tape.var(Tensor::scalar(0.9));
    let x = tape.constant(Tensor::scalar(0.1));
    let mut h = tape.constant(Tensor::scalar(0.0));
    for _ in 0..STEPS {
        h = (w * h + x).tanh();
    }
    let grads = tape.backward(h);
    // At the fixed point h* = tanh(0.9 h* + 0.1) the derivative is h*(1-h*²)/(1-0.9(1-h*²)).
    let hs = h.item();
    let d = 1.0 - hs * hs;
    approx::assert_relative_eq!(
        grads.wrt(w).item(),
        hs * d / (1.0 - 0.9 * d),
        max_relative = 1e-9
    );
}

#[test]
fn detach_stops_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::scalar(3.0));
    let y = x * x;
    let z = y.detach() * x + y;
    // dz/dx = y (through the second factor) + 2x (through y) = 9 + 6.
    assert_eq!(tape.backward(z).wrt(x).item(), 15.0);
    assert!(!y.detach().requires_grad());
}

#[test]
fn no_grad_records_no_graph() {
    let tape = Tape::<f32>::new();
    let w = tape.var(Tensor::ones(&[2, 2]));
    let y = tape.no_grad(|| {
        assert!(!tape.is_recording());
        (w.matmul(w) + 1.0).tanh()
    });
    assert!(tape.is_recording());
    assert!(!y.requires_grad());
    assert_eq!(recorded_ops(&tape), 0);
}

#[test]
fn constants_get_no_gradient_and_unused_vars_get_zeros() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::scalar(2.0));
    let c = tape.constant(Tensor::scalar(5.0));
    let unused = tape.var(Tensor::zeros(&[3]));
    let grads = tape.backward(a * c);
    assert_eq!(grads.get(a).unwrap().item(), 5.0);
    assert!(grads.get(c).is_none());
    assert_eq!(grads.wrt(unused).data(), &[0.0; 3]);
}

#[test]
fn f32_and_f64_agree() {
    fn run<T: crate::Element>() -> Vec<f64> {
        let tape = Tape::<T>::new();
        let x = tape.var(Tensor::from_f64s(
            &[0.5, -1.0, 2.0, 0.25, 1.5, -0.75],
            &[2, 3],
        ));
        let w = tape.var(Tensor::from_f64s(
            &[0.1, 0.2, -0.3, 0.4, 0.5, -0.6],
            &[3, 2],
        ));
        let loss =
            x.matmul(w)
                .tanh()
                .log_softmax()
                .cross_entropy(&[1, 0], None, crate::Reduction::Mean);
        let g = tape.backward(loss).wrt(w);
        g.data().iter().map(|v| v.to_f64().unwrap()).collect()
    }
    for (a, b) in run::<f32>().iter().zip(run::<f64>()) {
        approx::assert_relative_eq!(*a, b, max_relative = 1e-5);
    }
}

#[test]
fn clear_keeps_capacity() {
    let mut tape = Tape::<f32>::with_capacity(16);
    for _ in 0..10 {
        tape.var(Tensor::scalar(1.0));
    }
    tape.clear();
    assert!(tape.is_empty());
    assert!(tape.nodes.borrow().capacity() >= 16);
}

#[test]
#[should_panic(expected = "backward: the loss must be a single value, got shape [2]")]
fn backward_of_a_vector_panics() {
    let tape = Tape::<f32>::new();
    let x = tape.var(Tensor::zeros(&[2]));
    tape.backward(x * 2.0);
}

#[test]
#[should_panic(expected = "add: an input belongs to a different tape")]
fn mixing_tapes_panics() {
    let (t1, t2) = (Tape::<f32>::new(), Tape::<f32>::new());
    let _ = t1.var(Tensor::scalar(1.0)) + t2.var(Tensor::scalar(1.0));
}

/// (x + y, x·y, x − y) as one op with three outputs.
struct ThreeWays;

impl crate::MultiOp<f64> for ThreeWays {
    fn name(&self) -> &'static str {
        "three_ways"
    }
    fn forward(&mut self, inputs: &[&Tensor<f64>]) -> Vec<Tensor<f64>> {
        let (x, y) = (inputs[0], inputs[1]);
        let zip = |f: fn(f64, f64) -> f64| {
            let v = x.data().iter().zip(y.data()).map(|(&a, &b)| f(a, b));
            Tensor::from_vec(v.collect(), x.shape())
        };
        vec![zip(|a, b| a + b), zip(|a, b| a * b), zip(|a, b| a - b)]
    }
    fn backward(&self, ctx: &mut crate::BackwardCtx<'_, f64>) {
        let (x, y) = (ctx.input(0).data().to_vec(), ctx.input(1).data().to_vec());
        let n = x.len();
        let g = |i: usize| {
            ctx.grad_output_at(i)
                .map_or(vec![0.0; n], |g| g.data().to_vec())
        };
        let (gs, gp, gd) = (g(0), g(1), g(2));
        ctx.add_grad_input(0, (0..n).map(|i| gs[i] + gp[i] * y[i] + gd[i]).collect());
        ctx.add_grad_input(1, (0..n).map(|i| gs[i] + gp[i] * x[i] - gd[i]).collect());
    }
}

#[test]
fn an_op_with_several_outputs_passes_gradcheck_whichever_outputs_are_used() {
    use crate::testing::check_grad;
    check_grad(&[&[2, 3], &[2, 3]], |t, v| {
        let out = t.apply_multi(ThreeWays, &[v[0], v[1]]);
        out[0] * 2.0 + out[1].tanh() + out[2] * out[0]
    });
    // Output 1 unused: its gradient is None, the others still flow.
    check_grad(&[&[4], &[4]], |t, v| {
        let out = t.apply_multi(ThreeWays, &[v[0], v[1]]);
        out[2].exp() + out[0]
    });
}

#[test]
fn an_op_with_several_outputs_records_nothing_without_gradients() {
    let tape = Tape::<f64>::new();
    let (x, y) = (tape.var(Tensor::scalar(2.0)), tape.var(Tensor::scalar(5.0)));
    let out = tape.no_grad(|| tape.apply_multi(ThreeWays, &[x, y]));
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|v| !v.requires_grad()));
    assert_eq!(
        out.iter().map(|v| v.item()).collect::<Vec<_>>(),
        [7.0, 10.0, -3.0]
    );
    assert_eq!(recorded_ops(&tape), 0);
    // Recorded, the loss reaching one output: gradients through it alone.
    let out = tape.apply_multi(ThreeWays, &[x, y]);
    let grads = tape.backward(out[1]);
    assert_eq!((grads.wrt(x).item(), grads.wrt(y).item()), (5.0, 2.0));
}
