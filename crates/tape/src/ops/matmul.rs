//! Matrix products: `matmul` (2-D, leading dimensions flattened against a 2-D right side,
//! and batched 3-D) and `linear` (x·Wᵀ + b, PyTorch's F.linear, with W never copied).

use crate::kernels::packed::{runs_bf16_kernels, suits_many_rows, AddTo};
use crate::kernels::simd::widest;
use crate::kernels::{gemm, product, MatRef, Precision};
use crate::shape::{numel, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};
use std::borrow::Cow;

/// Products with fewer rows than this (a batch at one time step) use the right-hand matrix
/// packed once and cached on its tensor (`Tensor::packed`), so a weight used at every step
/// is not repacked for every product.
const PACK_BELOW_ROWS: usize = 128;
/// Right-hand matrices up to this size are packed and cached for products with more rows
/// too, where the panel kernel suits many rows (`packed::suits_many_rows`: AVX-512): it reads
/// A in place and beats gemm there (up to 20% for an output layer's input gradient). A
/// larger B changes every optimizer step and is used for one product per pass, so repacking
/// it costs what gemm's own packing does.
const PACK_MAX_ELEMENTS: usize = 1 << 18;

/// Whether a product of `a` with `b` runs on `b`'s packed copy rather than gemm (one row
/// takes gemm's matrix-vector path). A bf16 f32 `b` always does: its packed copy runs the
/// bf16 kernels.
fn packs<T: Element>(a: MatRef<T>, b: &Tensor<T>) -> bool {
    let many_rows = suits_many_rows::<T>(Precision::Full);
    let packs = a.rows < PACK_BELOW_ROWS || (b.numel() <= PACK_MAX_ELEMENTS && many_rows);
    a.col_stride == 1 && (runs_bf16_kernels::<T>(b.precision()) || (a.rows >= 2 && packs))
}

/// The matrix `b`, or its transpose, as gemm's right-hand side.
fn gemm_view<T: Element>(b: &Tensor<T>, transposed: bool) -> MatRef<'_, T> {
    let bv = MatRef::row_major(b.data(), b.shape()[0], b.shape()[1]);
    if transposed {
        bv.t()
    } else {
        bv
    }
}

/// C ← A·B + C, where B is the matrix `b`, or its transpose.
fn add_product<T: Element>(a: MatRef<T>, b: &Tensor<T>, transposed: bool, c: &mut [T], ldc: usize) {
    if packs(a, b) {
        b.packed(transposed).product(a, c, ldc, AddTo::Output);
    } else {
        gemm(T::one(), a, gemm_view(b, transposed), T::one(), c, ldc);
    }
}

/// A·B, plus `row` added to every row, as a new row-major vector; B is the matrix `b`, or
/// its transpose.
fn new_product<T: Element>(
    a: MatRef<T>,
    b: &Tensor<T>,
    transposed: bool,
    row: Option<&[T]>,
) -> Vec<T> {
    let bv = gemm_view(b, transposed);
    let len = a.rows * bv.cols;
    if packs(a, b) {
        let mut c = vec![T::zero(); len];
        let add = row.map_or(AddTo::Nothing, AddTo::Row);
        b.packed(transposed).product(a, &mut c, bv.cols, add);
        return c;
    }
    // gemm adds to C: C starts as the row repeated, written once (no zero fill first: for
    // a large vocabulary this is the step's largest tensor), or as zeros.
    let mut c = Vec::with_capacity(len);
    match row {
        Some(row) => (0..a.rows).for_each(|_| c.extend_from_slice(&row[..bv.cols])),
        None => c.resize(len, T::zero()),
    }
    let beta = if row.is_some() { T::one() } else { T::zero() };
    gemm(T::one(), a, bv, beta, &mut c, bv.cols);
    c
}

/// How the operands of a matmul are laid out, decided from their shapes.
#[derive(Clone, Copy, Default)]
struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}

#[derive(Default)]
struct Matmul {
    dims: Dims,
    /// Round the operands of every product to bf16 (the tape's product precision).
    bf16: bool,
}

/// `t`, or a copy rounded to bf16 if `bf16`. A parameter's copy (`cached`) is made once per
/// version of its values; an activation's is made for the product at hand.
fn operand<T: Element>(t: &Tensor<T>, bf16: bool, cached: bool) -> Cow<'_, Tensor<T>> {
    match (bf16, cached) {
        (false, _) => Cow::Borrowed(t),
        (true, true) => Cow::Owned(t.bf16_rounded()),
        (true, false) => Cow::Owned(t.bf16_copy()),
    }
}

fn matmul_dims(a: &[usize], b: &[usize]) -> (Dims, Shape) {
    let fail = |why: &str| -> ! { panic!("matmul: {a:?} x {b:?}: {why}") };
    if a.len() < 2 || b.len() < 2 {
        fail("operands must have at least 2 dimensions");
    }
    let k = a[a.len() - 1];
    let kb = b[b.len() - 2];
    if k != kb {
        fail(&format!("inner dimensions {k} and {kb} differ"));
    }
    let n = b[b.len() - 1];
    let mut out = Shape::from_slice(&a[..a.len() - 1]);
    out.push(n);
    match (a.len(), b.len()) {
        (_, 2) => (
            Dims {
                batch: 1,
                m: numel(&a[..a.len() - 1]),
                k,
                n,
            },
            out,
        ),
        (3, 3) if a[0] == b[0] => (
            Dims {
                batch: a[0],
                m: a[1],
                k,
                n,
            },
            out,
        ),
        (3, 3) => fail(&format!("batch sizes {} and {} differ", a[0], b[0])),
        _ => fail("supported: [.., m, k] x [k, n] and [b, m, k] x [b, k, n]"),
    }
}

impl<T: Element> Op<T> for Matmul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (dims, shape) = matmul_dims(inputs[0].shape(), inputs[1].shape());
        self.dims = dims;
        let Dims { batch, m, k, n } = dims;
        let weight = inputs[1].ndim() == 2;
        let (a, b) = (
            operand(inputs[0], self.bf16, false),
            operand(inputs[1], self.bf16, weight),
        );
        let (a, b_matrix) = (a.data(), &*b);
        let b = b_matrix.data();
        if weight {
            let av = MatRef::row_major(a, m, k);
            return Tensor::from_vec(new_product(av, b_matrix, false, None), &shape);
        }
        let mut out = Tensor::zeros(&shape);
        for (i, c) in out
            .data_mut()
            .chunks_exact_mut((m * n).max(1))
            .enumerate()
            .take(batch)
        {
            let av = MatRef::row_major(&a[i * m * k..(i + 1) * m * k], m, k);
            let bv = MatRef::row_major(&b[i * k * n..(i + 1) * k * n], k, n);
            product(av, bv, c, n, false, Precision::bf16_if(self.bf16));
        }
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let Dims { batch, m, k, n } = self.dims;
        let weight = ctx.input(1).ndim() == 2;
        let (a_t, b_t, g_t) = (
            operand(ctx.input(0), self.bf16, false).into_owned(),
            operand(ctx.input(1), self.bf16, weight).into_owned(),
            operand(ctx.grad_output(), self.bf16, false).into_owned(),
        );
        let (a, b, g) = (a_t.data(), b_t.data(), g_t.data());
        for i in 0..batch {
            let av = MatRef::row_major(&a[i * m * k..(i + 1) * m * k], m, k);
            let bv = MatRef::row_major(&b[i * k * n..(i + 1) * k * n], k, n);
            let gv = MatRef::row_major(&g[i * m * n..(i + 1) * m * n], m, n);
            if let Some(ga) = ctx.grad_input(0) {
                let ga = &mut ga[i * m * k..(i + 1) * m * k];
                if weight {
                    add_product(gv, &b_t, true, ga, k);
                } else {
                    product(gv, bv.t(), ga, k, true, Precision::bf16_if(self.bf16));
                }
            }
            if weight {
                // One weight for all rows (batch is 1).
                ctx.add_transposed_product(1, &a_t, &g_t);
            } else if let Some(gb) = ctx.grad_input(1) {
                let gb = &mut gb[i * k * n..(i + 1) * k * n];
                product(av.t(), gv, gb, n, true, Precision::bf16_if(self.bf16));
            }
        }
    }
}

/// y = x·Wᵀ (+ b) over the last dimension of x, with W of shape [out, in].
struct Linear {
    rows: usize,
    fan_in: usize,
    fan_out: usize,
    /// Round the operands of every product to bf16 (the tape's product precision).
    bf16: bool,
}

impl<T: Element> Op<T> for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Tensor<T> {
        let (x, w) = (inputs[0], inputs[1]);
        let xs = x.shape();
        if w.ndim() != 2 || xs.is_empty() || xs[xs.len() - 1] != w.shape()[1] {
            panic!(
                "linear: input {xs:?} x weight {:?}: the weight must be [out, in] with in = the input's last dimension",
                w.shape()
            );
        }
        let (fan_out, fan_in) = (w.shape()[0], w.shape()[1]);
        if let Some(b) = inputs.get(2) {
            assert!(
                b.shape() == [fan_out],
                "linear: bias {:?} does not match weight {:?} (expected [{fan_out}])",
                b.shape(),
                w.shape()
            );
        }
        self.rows = numel(&xs[..xs.len() - 1]);
        self.fan_in = fan_in;
        self.fan_out = fan_out;
        let mut shape = Shape::from_slice(xs);
        *shape.last_mut().unwrap() = fan_out;
        let (x, w) = (operand(x, self.bf16, false), operand(w, self.bf16, true));
        let xv = MatRef::row_major(x.data(), self.rows, fan_in);
        let bias = inputs.get(2).map(|b| b.data());
        Tensor::from_vec(new_product(xv, &w, true, bias), &shape)
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let Linear {
            rows,
            fan_in,
            fan_out,
            bf16,
        } = *self;
        let w = operand(ctx.input(1), bf16, true).into_owned();
        let g_operand = operand(ctx.grad_output(), bf16, false).into_owned();
        let gv = MatRef::row_major(g_operand.data(), rows, fan_out);
        if let Some(gx) = ctx.grad_input(0) {
            add_product(gv, &w, false, gx, fan_in);
        }
        let x = operand(ctx.input(0), bf16, false).into_owned();
        ctx.add_transposed_product(1, &g_operand, &x);
        let g = ctx.grad_output().data();
        if ctx.num_inputs() == 3 {
            if let Some(gb) = ctx.grad_input(2) {
                // The output gradient's column sums, compiled for the widest vectors (a
                // vocabulary-sized output layer makes this a large pass).
                widest(
                    #[inline(always)]
                    || {
                        for row in g.chunks_exact(fan_out) {
                            gb.iter_mut().zip(row).for_each(|(b, &r)| *b += r);
                        }
                    },
                )
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Matrix product: `[.., m, k] x [k, n] → [.., m, n]` or `[b, m, k] x [b, k, n] → [b, m, n]`.
    pub fn matmul(self, other: Var<'t, T>) -> Var<'t, T> {
        let op = Matmul {
            dims: Dims::default(),
            bf16: self.tape().product_precision() == Precision::Bf16,
        };
        self.tape().apply(op, &[self, other])
    }

    /// `x·Wᵀ + b` over the last dimension (PyTorch's `F.linear`); W is `[out, in]`.
    pub fn linear(self, weight: Var<'t, T>, bias: Option<Var<'t, T>>) -> Var<'t, T> {
        let op = Linear {
            rows: 0,
            fan_in: 0,
            fan_out: 0,
            bf16: self.tape().product_precision() == Precision::Bf16,
        };
        match bias {
            Some(b) => self.tape().apply(op, &[self, weight, b]),
            None => self.tape().apply(op, &[self, weight]),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::check_grad;
    use crate::{Tape, Tensor};

    #[test]
    fn matmul_passes_gradcheck() {
        check_grad(&[&[3, 4], &[4, 5]], |_, v| v[0].matmul(v[1]));
        check_grad(&[&[1, 6], &[6, 3]], |_, v| v[0].matmul(v[1]));
        check_grad(&[&[4, 6], &[6, 1]], |_, v| v[0].matmul(v[1]));
        check_grad(&[&[2, 3, 4], &[4, 2]], |_, v| v[0].matmul(v[1]));
        check_grad(&[&[2, 3, 4], &[2, 4, 5]], |_, v| v[0].matmul(v[1]));
    }

    #[test]
    fn linear_passes_gradcheck() {
        check_grad(&[&[3, 4], &[5, 4], &[5]], |_, v| {
            v[0].linear(v[1], Some(v[2]))
        });
        check_grad(&[&[1, 4], &[5, 4], &[5]], |_, v| {
            v[0].linear(v[1], Some(v[2]))
        });
        check_grad(&[&[2, 3, 4], &[2, 4]], |_, v| v[0].linear(v[1], None));
    }

    /// On each path of the product: one row (matrix-vector), a few rows (the packed weight,
    /// the bias added in the kernel), many rows by a large weight (gemm, the bias rows first).
    #[test]
    fn linear_equals_matmul_with_transpose_plus_bias() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        for (rows, fan_in, fan_out) in [(1, 3, 2), (4, 3, 2), (13, 40, 70), (130, 300, 900)] {
            let tape = Tape::new();
            let x = Tensor::<f64>::uniform(&[rows, fan_in], -1.0, 1.0, &mut rng);
            let x = tape.constant(x);
            let w = tape.constant(Tensor::uniform(&[fan_out, fan_in], -1.0, 1.0, &mut rng));
            let b = tape.constant(Tensor::uniform(&[fan_out], -1.0, 1.0, &mut rng));
            let fused = x.linear(w, Some(b)).to_tensor();
            let composed = (x.matmul(w.t()) + b).to_tensor();
            let tolerance = 1e-15 * fan_in as f64;
            assert!(
                fused.max_abs_diff(&composed) < tolerance,
                "{rows}x{fan_in}x{fan_out}"
            );
        }
    }

    /// With bf16 products a tape computes what a full-precision tape computes from operands
    /// rounded to bf16, forward and backward: exactly in f64, and in f32 up to the order
    /// and roundings of the bf16 kernels' sums (the bias gradient sums the unrounded output
    /// gradient); the weight's rounded copy follows its writes.
    #[test]
    fn bf16_products_are_products_of_rounded_operands() {
        use crate::kernels::bf16::round_bf16;
        use crate::kernels::Precision;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let round = |t: &Tensor<f64>| t.map(round_bf16);
        let to_f32 = |t: &Tensor<f64>| {
            Tensor::from_vec(t.data().iter().map(|&v| v as f32).collect(), t.shape())
        };
        for (rows, fan_in, fan_out) in [(1, 3, 2), (6, 20, 30), (200, 64, 96), (3, 300, 40)] {
            let x = Tensor::<f64>::uniform(&[rows, fan_in], -1.0, 1.0, &mut rng);
            let mut w = Tensor::uniform(&[fan_out, fan_in], -1.0, 1.0, &mut rng);
            let b = Tensor::uniform(&[fan_out], -1.0, 1.0, &mut rng);
            let g = Tensor::uniform(&[rows, fan_out], -1.0, 1.0, &mut rng);
            for _version in 0..2 {
                // Both products on a tape of bf16 products, then the gradients.
                fn run<T: crate::Element>(
                    x: &Tensor<T>,
                    w: &Tensor<T>,
                    b: &Tensor<T>,
                    g: &Tensor<T>,
                    precision: Precision,
                ) -> Vec<Tensor<T>> {
                    let tape = Tape::new();
                    tape.set_product_precision(precision);
                    let (vx, vw, vb) = (
                        tape.var(x.clone()),
                        tape.var(w.clone()),
                        tape.var(b.clone()),
                    );
                    let y = vx.linear(vw, Some(vb));
                    let z = vx.matmul(vw.t());
                    let grads = tape.backward_seeded(vec![(y, g.clone()), (z, g.clone())]);
                    vec![
                        y.to_tensor(),
                        z.to_tensor(),
                        grads.wrt(vx),
                        grads.wrt(vw),
                        grads.wrt(vb),
                    ]
                }
                let mixed64 = run(&x, &w, &b, &g, Precision::Bf16);
                let full64 = run(&round(&x), &round(&w), &b, &round(&g), Precision::Full);
                assert_eq!(&mixed64[..4], &full64[..4], "{rows}x{fan_in}x{fan_out}");
                let mixed32 = run(
                    &to_f32(&x),
                    &to_f32(&w),
                    &to_f32(&b),
                    &to_f32(&g),
                    Precision::Bf16,
                );
                for (got, want) in mixed32.iter().zip(&mixed64) {
                    let got = Tensor::from_vec(
                        got.data().iter().map(|&v| f64::from(v)).collect(),
                        got.shape(),
                    );
                    let diff = got.max_abs_diff(want);
                    assert!(
                        diff < 1e-6 * (fan_in.max(rows) as f64),
                        "{rows}x{fan_in}x{fan_out}: {diff}"
                    );
                }
                let unrounded = run(&x, &w, &b, &g, Precision::Full);
                assert_ne!(mixed64[0], unrounded[0], "bf16 changed nothing");
                // The optimizer writes the weight: the next tape rounds the new values.
                w.data_mut().iter_mut().for_each(|v| *v *= 0.75);
            }
        }
    }

    #[test]
    #[should_panic(expected = "matmul: [32, 128] x [64, 512]: inner dimensions 128 and 64 differ")]
    fn inner_mismatch_names_both_shapes() {
        let tape = Tape::<f32>::new();
        let a = tape.constant(Tensor::zeros(&[32, 128]));
        let b = tape.constant(Tensor::zeros(&[64, 512]));
        let _ = a.matmul(b);
    }

    #[test]
    #[should_panic(expected = "linear: input [2, 3] x weight [4, 5]")]
    fn linear_mismatch_names_both_shapes() {
        let tape = Tape::<f32>::new();
        let x = tape.constant(Tensor::zeros(&[2, 3]));
        let w = tape.constant(Tensor::zeros(&[4, 5]));
        let _ = x.linear(w, None);
    }
}
