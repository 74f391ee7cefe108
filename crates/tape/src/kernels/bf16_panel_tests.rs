//! Tests of the bf16 products: the portable kernel against a scalar transcription of
//! `vdpbf16ps` (Intel SDM), subnormal sums flushed as the instruction flushes them, and the
//! native kernel against the portable one bit for bit where the CPU has AVX512_BF16.

use super::*;
use crate::kernels::bf16::{bf16_bits, round_bf16};
use crate::kernels::bf16_operands::least_exponent;
use crate::kernels::{MatRef, PackedMatrix};
use rand::{Rng, SeedableRng};

const K_BLOCK: usize = 256;

/// `x`, or zero of its sign if subnormal: the instruction's flush of its sums.
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// C ← A·B + what `add` says, one element at a time as `vdpbf16ps` sums (per pair of
/// columns: the odd product, then the even one, each sum rounded and flushed), each block of
/// K summed from +0 and added to C. `a` is `m × k` and `b` is `k × n`, both row-major.
fn reference(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    c: &mut [f32],
    add: AddTo<'_, f32>,
) {
    let at = |v: &[f32], i: usize, stride: usize, inner: usize, p: usize| {
        if p < inner {
            round_bf16(v[i * stride + p])
        } else {
            0.0
        }
    };
    for i in 0..m {
        for j in 0..n {
            for k0 in (0..k).step_by(K_BLOCK) {
                let mut sum = 0.0f32;
                for p in (k0..(k0 + K_BLOCK).min(k)).step_by(2) {
                    let a_pair = (at(a, i, k, k, p), at(a, i, k, k, p + 1));
                    let b_pair = (b_at(b, p, j, k, n), b_at(b, p + 1, j, k, n));
                    sum = flush(a_pair.1.mul_add(b_pair.1, sum));
                    sum = flush(a_pair.0.mul_add(b_pair.0, sum));
                }
                let out = &mut c[i * n + j];
                *out = if k0 > 0 {
                    sum + *out
                } else {
                    add.added(sum, *out, j)
                };
            }
        }
    }
}

/// B's element (p, j) rounded to bf16, or 0 past its k rows.
fn b_at(b: &[f32], p: usize, j: usize, k: usize, n: usize) -> f32 {
    if p < k {
        round_bf16(b[p * n + j])
    } else {
        0.0
    }
}

/// Bits equal, or both NaN.
fn same_bits(x: &[f32], y: &[f32]) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
}

/// `kernel`'s product of `a` (`m × k`) and `b` (`k × n`), B packed from its transpose's view
/// so that packing reads strided columns too, over C starting at 0.5, with `add`.
fn product(
    kernel: Bf16Kernel,
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    add: AddTo<'_, f32>,
) -> Vec<f32> {
    let packed = PackedMatrix::bf16_with(&[MatRef::row_major(b, k, n)], kernel);
    let mut c = vec![0.5f32; m * n];
    packed.product(MatRef::row_major(a, m, k), &mut c, n, add);
    c
}

/// Matrices of uniform values in ±`scale`, some exact zeros and negative zeros among them.
fn values(rng: &mut rand::rngs::StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| match i % 17 {
            3 => 0.0,
            11 => -0.0,
            _ => rng.gen_range(-1.0f32..1.0) * scale,
        })
        .collect()
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 2, 33),
    (3, 7, 5),
    (2, 64, 32),
    (9, 33, 70),
    (8, 256, 64),
    (17, 257, 31),
    (5, 513, 40),
    (200, 300, 65),
];

#[test]
fn the_portable_kernel_sums_as_vdpbf16ps() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (m, k, n) in SHAPES {
        let (a, b) = (values(&mut rng, m * k, 1.0), values(&mut rng, k * n, 1.0));
        let row: Vec<f32> = (0..n).map(|j| 0.25 * j as f32 - 1.0).collect();
        for add in [AddTo::Nothing, AddTo::Output, AddTo::Row(&row)] {
            let got = product(Bf16Kernel::Portable, &a, &b, (m, k, n), add);
            let mut want = vec![0.5f32; m * n];
            reference(&a, &b, (m, k, n), &mut want, add);
            assert!(same_bits(&got, &want), "{m}x{k}x{n} {add:?}");
        }
    }
}

#[test]
fn subnormal_sums_are_flushed_to_zero() {
    // Products of 2^-64 and 2^-63 lie below f32's normal range: the instruction flushes
    // each sum of them to zero, so a row of them sums to zero although their exact total,
    // 3·2^-127, is normal. Products of 1 and 2^-63 are normal and sum exactly.
    let (tiny_a, tiny_b) = (2f32.powi(-64), 2f32.powi(-63));
    let least = |v: f32| least_exponent(&[bf16_bits(v)]);
    assert!(flush_needed(least(tiny_a), least(tiny_b)));
    assert!(!flush_needed(least(0.5), least(2f32.powi(-100))));
    let (m, k, n) = (2, 6, 3);
    let a = [
        tiny_a, tiny_a, -tiny_a, tiny_a, 0.0, tiny_a, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
    ];
    let b = vec![tiny_b; k * n];
    let got = product(Bf16Kernel::Portable, &a, &b, (m, k, n), AddTo::Nothing);
    let mut want = vec![0.0f32; m * n];
    reference(&a, &b, (m, k, n), &mut want, AddTo::Nothing);
    assert!(same_bits(&got, &want));
    assert_eq!(&got[..n], &[0.0; 3], "tiny products flushed");
    let exact = (0..k)
        .map(|p| f64::from(a[p]) * f64::from(b[p * n]))
        .sum::<f64>();
    assert_eq!(exact, 3.0 * 2f64.powi(-127));
    assert_eq!(&got[n..], &[6.0 * tiny_b; 3]);
}

#[test]
fn stacked_b_and_column_blocks_of_a_give_one_product() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (m, k, n) = (7, 45, 37);
    let (a, b) = (values(&mut rng, m * k, 1.0), values(&mut rng, k * n, 2.0));
    let whole = product(Bf16Kernel::Portable, &a, &b, (m, k, n), AddTo::Output);
    // B as three stacked blocks (one odd-sized, one a transposed view); A as two column
    // blocks read in place, transposed.
    let b_t: Vec<f32> = (0..n * 20).map(|i| b[(13 + i % 20) * n + i / 20]).collect();
    let stacked = PackedMatrix::bf16_with(
        &[
            MatRef::row_major(&b[..13 * n], 13, n),
            MatRef::row_major(&b_t, n, 20).t(),
            MatRef::row_major(&b[33 * n..], 12, n),
        ],
        Bf16Kernel::Portable,
    );
    let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let blocks = [
        MatRef {
            data: &a_t,
            rows: m,
            cols: 21,
            row_stride: 1,
            col_stride: m,
        },
        MatRef {
            data: &a_t[21 * m..],
            rows: m,
            cols: k - 21,
            row_stride: 1,
            col_stride: m,
        },
    ];
    let mut c = vec![0.5f32; m * n];
    stacked.product_of_blocks(&blocks, &mut c, n, AddTo::Output);
    assert!(same_bits(&c, &whole));
}

/// The native kernel gives the portable kernel's bits, on ordinary values, on values whose
/// sums go subnormal, and with infinities and NaN. On a CPU without AVX512_BF16 there is no
/// native kernel to compare, and the test says so.
#[test]
fn native_and_portable_kernels_give_the_same_bits() {
    if !Bf16Kernel::Native.available() {
        eprintln!("no AVX512_BF16 on this CPU: the native kernel is not compared here");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    for (m, k, n) in SHAPES {
        // Ordinary values; products below f32's normal range; sums that overflow.
        for scale in [1.0, 3e-20, 1e19] {
            let (mut a, b) = (
                values(&mut rng, m * k, scale),
                values(&mut rng, k * n, scale),
            );
            if k > 40 {
                a[k / 2] = f32::INFINITY;
                a[k + 5] = f32::NAN;
            }
            let row: Vec<f32> = (0..n).map(|j| 0.25 * j as f32 - 1.0).collect();
            for add in [AddTo::Nothing, AddTo::Output, AddTo::Row(&row)] {
                let native = product(Bf16Kernel::Native, &a, &b, (m, k, n), add);
                let portable = product(Bf16Kernel::Portable, &a, &b, (m, k, n), add);
                let first =
                    (0..native.len()).find(|&i| !same_bits(&native[i..=i], &portable[i..=i]));
                assert!(
                    first.is_none(),
                    "{m}x{k}x{n}, scale {scale}, {add:?}: at {first:?}, {:?} against {:?}; a {:?}, b {:?}",
                    first.map(|i| native[i]),
                    first.map(|i| portable[i]),
                    &a[..k.min(4)],
                    first.map(|i| (0..k.min(4)).map(|p| b[p * n + i % n]).collect::<Vec<_>>()),
                );
            }
        }
    }
}

/// A whole f32 tape in bf16 (a weight used at several steps, so that its gradient terms are
/// summed late; a batched product; forward and backward) gives the same bits on both
/// kernels.
#[test]
fn a_bf16_tape_gives_the_same_bits_on_both_kernels() {
    use crate::{Tape, Tensor};
    if !Bf16Kernel::Native.available() {
        eprintln!("no AVX512_BF16 on this CPU: the native kernel is not compared here");
        return;
    }
    let run = |kernel: Bf16Kernel| {
        kernel.run_with(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            let tape = Tape::<f32>::new();
            tape.set_product_precision(crate::kernels::Precision::Bf16);
            let w = tape.var(Tensor::uniform(&[40, 33], -1.0, 1.0, &mut rng));
            let b = tape.var(Tensor::uniform(&[40], -1.0, 1.0, &mut rng));
            let u = tape.var(Tensor::uniform(&[3, 33, 7], -1.0, 1.0, &mut rng));
            let mut h = tape.var(Tensor::uniform(&[6, 33], -1.0, 1.0, &mut rng));
            let mut loss = tape.constant(Tensor::from_vec(vec![0.0], &[1])).sum();
            for _step in 0..5 {
                let y = h.linear(w, Some(b)).tanh();
                loss = loss + y.sum();
                h = y.slice(1, 0..33);
            }
            let batched = h.reshape(&[3, 2, 33]).matmul(u);
            loss = loss + (batched * batched).sum();
            let grads = tape.backward(loss);
            let mut all = vec![loss.to_tensor(), batched.to_tensor()];
            all.extend([w, b, u].map(|v| grads.wrt(v)));
            all
        })
    };
    let (native, portable) = (run(Bf16Kernel::Native), run(Bf16Kernel::Portable));
    for (n, p) in native.iter().zip(&portable) {
        assert!(same_bits(n.data(), p.data()));
    }
}
