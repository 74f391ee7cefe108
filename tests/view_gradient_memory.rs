//! The gradient of a leading slice (a view) is extended to its input's size in place: the
//! accumulator that first receives it is made with room for the extension, whether an op
//! adds into an accumulator (`grad_input`) or hands over fresh values
//! (`accumulate_grad_input`). Reallocating it instead would keep the old gradient and a
//! vector grown by doubling alive at once, the way the fused layers' output sequences did.

use recur::memory::{peak_since, start_peak, CountingAllocator};
use recur::tape::{Tape, Tensor, Var};
use std::sync::Mutex;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The counters are global: tests must not interleave.
static SERIAL: Mutex<()> = Mutex::new(());

/// A loss of the view.
type Loss = fn(Var<'_, f32>) -> Var<'_, f32>;

const ROWS: usize = 100_000;
const WIDTH: usize = 8;

/// Peak bytes above the start of backward, for a loss of `head`, the first `ROWS − 1` rows
/// of a `[ROWS, WIDTH]` leaf (a view), and the gradient the leaf gets.
fn backward_peak(loss_of: Loss) -> (usize, Tensor<f32>) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tape = Tape::new();
    let x = tape.var(Tensor::full(&[ROWS, WIDTH], 0.5f32));
    let loss = loss_of(x.slice(0, 0..ROWS - 1));
    let base = start_peak();
    let grads = tape.backward(loss);
    let peak = peak_since(base);
    (peak, grads.wrt(x).clone())
}

#[test]
fn a_views_gradient_is_extended_without_a_second_copy() {
    let gradient_bytes = ROWS * WIDTH * 4;
    // The loss, and how many gradients of the leaf's size are rightly alive at once: tanh's
    // backward holds its output's gradient while it makes its input's.
    let cases: [(&str, Loss, usize); 2] = [
        ("mean", |v| v.mean(), 1),
        ("tanh then sum", |v| v.tanh().sum(), 2),
    ];
    for (name, loss, live) in cases {
        let (peak, dx) = backward_peak(loss);
        let last_row = &dx.data()[(ROWS - 1) * WIDTH..];
        assert!(
            last_row.iter().all(|&v| v == 0.0),
            "{name}: the row past the view"
        );
        assert!(dx.data()[0] != 0.0, "{name}: a row inside the view");
        // Plus at most a few small tensors; reallocating the view's gradient would add a
        // vector of twice its size next to it.
        assert!(
            peak < gradient_bytes * live + gradient_bytes / 2,
            "{name}: backward peaked at {peak} bytes for {live} gradient(s) of {gradient_bytes}"
        );
    }
}
