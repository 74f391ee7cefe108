//! lm_bench's scan-op case (torch_scan_bench.py's scan-op-b16-t512-h1024): the linear scan
//! alone, and against a plain copy of as many bytes in the same run.

use super::time_per;
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::tape::{ScanOptions, Tape, Tensor};

pub const OP_CASE: &str = "scan-op-b16-t512-h1024";

/// The scan op alone: forward h of a ~ U[0.5, 1), b ~ U[0.1, 1) `[512, 16, 1024]`, then the
/// backward of h.sum() to a and b; elements per second over T·B·H. Beside it, the op alone
/// (backward seeded with ∂h = 1) as bytes per second over what it reads and writes (forward:
/// a, b, h; backward: ∂h, a, h, ∂a, ∂b), a plain copy that moves as many bytes, and the op's
/// share of the copy's rate.
pub fn scan_op(threads: usize) {
    let shape = [512, 16, 1024];
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(0);
    let a = Tensor::<f32>::uniform(&shape, 0.5, 1.0, &mut rng);
    let b = Tensor::<f32>::uniform(&shape, 0.1, 1.0, &mut rng);
    let dt = time_per(2, 10, || {
        let tape = Tape::new();
        let (va, vb) = (tape.var(a.clone()), tape.var(b.clone()));
        let h = va.linear_scan(vb, None, &ScanOptions::default().threads(threads));
        let g = tape.backward(h.sum());
        std::hint::black_box((g.wrt(va), g.wrt(vb)));
    });
    // The op alone: its backward seeded with ∂h (made outside the timed work), no sum.
    let ones = Tensor::<f32>::ones(&shape);
    let op_s = time_per(2, 10, || {
        let tape = Tape::new();
        let (va, vb) = (tape.var(a.clone()), tape.var(b.clone()));
        let h = va.linear_scan(vb, None, &ScanOptions::default().threads(threads));
        let g = tape.backward_seeded(vec![(h, ones.clone())]);
        std::hint::black_box((g.wrt(va), g.wrt(vb)));
    });
    let moved = 8 * n * std::mem::size_of::<f32>();
    let src = vec![1.0f32; 4 * n];
    let mut dst = vec![0.0f32; 4 * n];
    let copy_s = time_per(2, 10, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    });
    let (op_rate, copy_rate) = (moved as f64 / op_s, moved as f64 / copy_s);
    println!(
        "{{\"case\": \"{OP_CASE}\", \"threads\": {threads}, \"elements_per_s\": {}, \"step_ms\": {:.2}, \"op_ms\": {:.2}, \"gb_per_s\": {:.2}, \"copy_gb_per_s\": {:.2}, \"of_copy\": {:.3}}}",
        (n as f64 / dt).round(),
        dt * 1e3,
        op_s * 1e3,
        op_rate / 1e9,
        copy_rate / 1e9,
        op_rate / copy_rate
    );
}
