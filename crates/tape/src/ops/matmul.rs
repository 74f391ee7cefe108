//! Matrix products: `matmul` (2-D, leading dimensions flattened against a 2-D right side,
//! and batched 3-D) and `linear` (x·Wᵀ + b, PyTorch's F.linear, with W never copied).

use crate::kernels::packed::AddTo;
use crate::kernels::{gemm, MatRef};
use crate::shape::{numel, Shape};
use crate::{BackwardCtx, Element, Op, Tensor, Var};

/// Products with fewer rows than this (a batch at one time step) use the right-hand matrix
/// packed once and cached on its tensor (`Tensor::packed`), so a weight used at every step
/// is not repacked for every product.
const PACK_BELOW_ROWS: usize = 128;
/// Right-hand matrices up to this size are packed and cached for products with more rows
/// too: the panel kernel reads A in place and beats gemm there (up to 20% for an output
/// layer's input gradient). A larger B changes every optimizer step and is used for one
/// product per pass, so repacking it costs what gemm's own packing does.
const PACK_MAX_ELEMENTS: usize = 1 << 18;

/// C ← A·B + what `add` says, where B is the matrix `b`, or its transpose. One row takes
/// gemm's matrix-vector path.
fn product_with<T: Element>(
    a: MatRef<T>,
    b: &Tensor<T>,
    transposed: bool,
    add: AddTo<'_, T>,
    c: &mut [T],
    ldc: usize,
) {
    let packs = a.rows < PACK_BELOW_ROWS || b.numel() <= PACK_MAX_ELEMENTS;
    if a.rows >= 2 && a.col_stride == 1 && packs {
        b.packed(transposed).product(a, c, ldc, add);
    } else {
        let bv = MatRef::row_major(b.data(), b.shape()[0], b.shape()[1]);
        let beta = match add {
            AddTo::Nothing => T::zero(),
            AddTo::Output => T::one(),
            AddTo::Row(row) => {
                // gemm adds to C: the row goes into every row of C first.
                let n = if transposed { bv.rows } else { bv.cols };
                for i in 0..a.rows {
                    c[i * ldc..i * ldc + n].copy_from_slice(&row[..n]);
                }
                T::one()
            }
        };
        gemm(
            T::one(),
            a,
            if transposed { bv.t() } else { bv },
            beta,
            c,
            ldc,
        );
    }
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
        let mut out = Tensor::zeros(&shape);
        let (a, b) = (inputs[0].data(), inputs[1].data());
        for (i, c) in out
            .data_mut()
            .chunks_exact_mut((m * n).max(1))
            .enumerate()
            .take(batch)
        {
            let av = MatRef::row_major(&a[i * m * k..(i + 1) * m * k], m, k);
            if inputs[1].ndim() == 2 {
                product_with(av, inputs[1], false, AddTo::Nothing, c, n);
            } else {
                let bv = MatRef::row_major(&b[i * k * n..(i + 1) * k * n], k, n);
                gemm(T::one(), av, bv, T::zero(), c, n);
            }
        }
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let Dims { batch, m, k, n } = self.dims;
        let (a, b, g) = (
            ctx.input(0).data(),
            ctx.input(1).data(),
            ctx.grad_output().data(),
        );
        for i in 0..batch {
            let av = MatRef::row_major(&a[i * m * k..(i + 1) * m * k], m, k);
            let bv = MatRef::row_major(&b[i * k * n..(i + 1) * k * n], k, n);
            let gv = MatRef::row_major(&g[i * m * n..(i + 1) * m * n], m, n);
            let b_matrix = ctx.input(1);
            if let Some(ga) = ctx.grad_input(0) {
                let ga = &mut ga[i * m * k..(i + 1) * m * k];
                if b_matrix.ndim() == 2 {
                    product_with(gv, b_matrix, true, AddTo::Output, ga, k);
                } else {
                    gemm(T::one(), gv, bv.t(), T::one(), ga, k);
                }
            }
            if b_matrix.ndim() == 2 {
                // One weight for all rows (batch is 1).
                ctx.add_transposed_product(1, ctx.input(0), ctx.grad_output());
            } else if let Some(gb) = ctx.grad_input(1) {
                gemm(
                    T::one(),
                    av.t(),
                    gv,
                    T::one(),
                    &mut gb[i * k * n..(i + 1) * k * n],
                    n,
                );
            }
        }
    }
}

/// y = x·Wᵀ (+ b) over the last dimension of x, with W of shape [out, in].
struct Linear {
    rows: usize,
    fan_in: usize,
    fan_out: usize,
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
        *self = Linear {
            rows: numel(&xs[..xs.len() - 1]),
            fan_in,
            fan_out,
        };
        let mut shape = Shape::from_slice(xs);
        *shape.last_mut().unwrap() = fan_out;
        let mut out = Tensor::zeros(&shape);
        let add = inputs
            .get(2)
            .map_or(AddTo::Nothing, |b| AddTo::Row(b.data()));
        let xv = MatRef::row_major(x.data(), self.rows, fan_in);
        product_with(xv, w, true, add, out.data_mut(), fan_out);
        out
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, T>) {
        let Linear {
            rows,
            fan_in,
            fan_out,
        } = *self;
        let (w, g) = (ctx.input(1), ctx.grad_output().data());
        let gv = MatRef::row_major(g, rows, fan_out);
        if let Some(gx) = ctx.grad_input(0) {
            product_with(gv, w, false, AddTo::Output, gx, fan_in);
        }
        ctx.add_transposed_product(1, ctx.grad_output(), ctx.input(0));
        if ctx.num_inputs() == 3 {
            if let Some(gb) = ctx.grad_input(2) {
                for row in g.chunks_exact(fan_out) {
                    gb.iter_mut().zip(row).for_each(|(b, &r)| *b += r);
                }
            }
        }
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// Matrix product: `[.., m, k] x [k, n] → [.., m, n]` or `[b, m, k] x [b, k, n] → [b, m, n]`.
    pub fn matmul(self, other: Var<'t, T>) -> Var<'t, T> {
        self.tape().apply(Matmul::default(), &[self, other])
    }

    /// `x·Wᵀ + b` over the last dimension (PyTorch's `F.linear`); W is `[out, in]`.
    pub fn linear(self, weight: Var<'t, T>, bias: Option<Var<'t, T>>) -> Var<'t, T> {
        let op = Linear {
            rows: 0,
            fan_in: 0,
            fan_out: 0,
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
