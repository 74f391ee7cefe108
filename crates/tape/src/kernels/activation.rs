//! Branch-free exp, tanh and sigmoid on slices, written so that LLVM vectorizes the loops.
//! Cephes-style range reduction and polynomials, evaluated with fused multiply-adds (half the
//! instructions and the dependency chain of separate ones); accurate to a few ulp of `std`'s.

// The polynomial coefficients are quoted as Cephes publishes them.
#![allow(clippy::excessive_precision)]

use super::simd::widest;

/// Two slice functions applying `$scalar`, vectorized for the CPU's widest vectors: `$name`
/// in place, and `$of` into a new vector (one pass, where a copy then an in-place pass would
/// take two).
macro_rules! slice_fn {
    ($name:ident, $of:ident, $t:ty, $scalar:ident) => {
        #[doc = concat!("`", stringify!($scalar), "` of every value, in place.")]
        pub fn $name(xs: &mut [$t]) {
            widest(
                #[inline(always)]
                || xs.iter_mut().for_each(|x| *x = $scalar(*x)),
            )
        }

        #[doc = concat!("`", stringify!($scalar), "` of every value, into a new vector.")]
        pub fn $of(xs: &[$t]) -> Vec<$t> {
            // Written through spare capacity, not collected: `collect`'s machinery is not
            // inlined into the `widest` closure, so the loop would be compiled for the
            // baseline target, with `mul_add` as a library call (0.53 of the custom cell's
            // speed; see "Unsafe code" in docs/benchmarks.md).
            let mut out = Vec::with_capacity(xs.len());
            widest(
                #[inline(always)]
                || {
                    let spare = &mut out.spare_capacity_mut()[..xs.len()];
                    for (o, &x) in spare.iter_mut().zip(xs) {
                        o.write($scalar(x));
                    }
                },
            );
            // SAFETY: the loop above wrote the first `xs.len()` values.
            unsafe { out.set_len(xs.len()) };
            out
        }
    };
}

// ---------------------------------------------------------------- f32

const LOG2E_F32: f32 = std::f32::consts::LOG2_E;
/// 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
const ROUND_F32: f32 = 12_582_912.0;

#[inline(always)]
fn pow2i_f32(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// eˣ, within a few ulp of `f32::exp` (branch-free, so loops of it vectorize).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(-103.0, 88.72);
    let t = xc.mul_add(LOG2E_F32, ROUND_F32);
    let n = t.to_bits() as i32 - ROUND_F32.to_bits() as i32;
    let nf = t - ROUND_F32;
    // r = x - n·ln2 in two parts for accuracy.
    let r = nf.mul_add(-0.693_359_4, xc);
    let r = nf.mul_add(2.121_944_4e-4, r);
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 5.000_000_1e-1);
    let e = p.mul_add(r * r, r) + 1.0;
    // Scale by 2^n in two halves so neither factor leaves the normal range.
    let half = n >> 1;
    let y = e * pow2i_f32(half) * pow2i_f32(n - half);
    if x > 88.72 {
        f32::INFINITY
    } else if x < -103.9 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// tanh x, within a few ulp of `f32::tanh` (branch-free).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small = (-5.704_988_7e-3f32)
        .mul_add(z, 2.063_908_9e-2)
        .mul_add(z, -5.373_971_6e-2)
        .mul_add(z, 1.333_144_2e-1)
        .mul_add(z, -3.333_328_2e-1)
        * z;
    let small = small.mul_add(x, x);
    let e = exp_f32((2.0 * a).min(88.0));
    let large = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    if a < 0.625 || x.is_nan() {
        small
    } else {
        large
    }
}

/// The logistic sigmoid 1 / (1 + e⁻ˣ) (branch-free).
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

slice_fn!(exp_slice_f32, exp_of_f32, f32, exp_f32);
slice_fn!(tanh_slice_f32, tanh_of_f32, f32, tanh_f32);
slice_fn!(sigmoid_slice_f32, sigmoid_of_f32, f32, sigmoid_f32);

// ---------------------------------------------------------------- f64

/// 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
const ROUND_F64: f64 = 6_755_399_441_055_744.0;

#[inline(always)]
fn pow2i_f64(n: i64) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// eˣ, within a few ulp of `f64::exp` (branch-free, so loops of it vectorize).
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    let xc = x.clamp(-745.0, 709.78);
    let t = xc.mul_add(std::f64::consts::LOG2_E, ROUND_F64);
    let n = t.to_bits() as i64 - ROUND_F64.to_bits() as i64;
    let nf = t - ROUND_F64;
    let r = nf.mul_add(-6.931_457_519_531_25e-1, xc);
    let r = nf.mul_add(-1.428_606_820_309_417_232_12e-6, r);
    // Padé approximation exp(r) = 1 + 2·r·P(r²) / (Q(r²) − r·P(r²)).
    let rr = r * r;
    let px = r * 1.261_771_930_748_105_908_78e-4f64
        .mul_add(rr, 3.029_944_077_074_419_613e-2)
        .mul_add(rr, 9.999_999_999_999_999_999_1e-1);
    let qx = 3.001_985_051_386_644_550_42e-6f64
        .mul_add(rr, 2.524_483_403_496_841_041_92e-3)
        .mul_add(rr, 2.272_655_482_081_550_287_66e-1)
        .mul_add(rr, 2.0);
    let e = 1.0 + 2.0 * px / (qx - px);
    let half = n >> 1;
    let y = e * pow2i_f64(half) * pow2i_f64(n - half);
    if x > 709.78 {
        f64::INFINITY
    } else if x < -745.2 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// tanh x, within a few ulp of `f64::tanh` (branch-free).
#[inline(always)]
pub fn tanh_f64(x: f64) -> f64 {
    let a = x.abs();
    let z = x * x;
    let p = (-9.643_991_794_250_522_386_28e-1f64)
        .mul_add(z, -9.928_772_310_019_185_865_64e1)
        .mul_add(z, -1.614_687_684_417_084_479_52e3);
    let q = (z + 1.128_116_784_916_329_314_02e2)
        .mul_add(z, 2.235_488_390_601_004_485_83e3)
        .mul_add(z, 4.844_063_053_251_254_860_48e3);
    let small = (x * z).mul_add(p / q, x);
    let e = exp_f64((2.0 * a).min(700.0));
    let large = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    if a < 0.625 || x.is_nan() {
        small
    } else {
        large
    }
}

/// The logistic sigmoid 1 / (1 + e⁻ˣ) (branch-free).
#[inline(always)]
pub fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + exp_f64(-x))
}

slice_fn!(exp_slice_f64, exp_of_f64, f64, exp_f64);
slice_fn!(tanh_slice_f64, tanh_of_f64, f64, tanh_f64);
slice_fn!(sigmoid_slice_f64, sigmoid_of_f64, f64, sigmoid_f64);

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_f32(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn ulp_f64(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i128 - b.to_bits() as i128).unsigned_abs() as u64
    }

    /// Evenly spaced points plus points near zero, where cancellation would show.
    fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n)
            .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
            .collect();
        v.extend((1..200).map(|i| 1e-6 * i as f64));
        v.extend((1..200).map(|i| -1e-3 * i as f64));
        v
    }

    #[test]
    fn f32_kernels_within_few_ulp_of_std() {
        let xs: Vec<f32> = grid(-87.0, 88.0, 200_001)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        let check = |name: &str, fast: fn(&mut [f32]), reference: fn(f32) -> f32, tol: u32| {
            let mut got = xs.clone();
            fast(&mut got);
            let worst = xs
                .iter()
                .zip(&got)
                .map(|(&x, &g)| (ulp_f32(g, reference(x)), x))
                .max_by_key(|p| p.0)
                .unwrap();
            assert!(worst.0 <= tol, "{name}: {} ulp at x = {}", worst.0, worst.1);
        };
        check("exp", exp_slice_f32, f32::exp, 2);
        check("tanh", tanh_slice_f32, f32::tanh, 3);
        check(
            "sigmoid",
            sigmoid_slice_f32,
            |x| 1.0 / (1.0 + (-x).exp()),
            3,
        );
    }

    #[test]
    fn f64_kernels_within_few_ulp_of_std() {
        let xs = grid(-700.0, 700.0, 200_001);
        let check = |name: &str, fast: fn(&mut [f64]), reference: fn(f64) -> f64, tol: u64| {
            let mut got = xs.clone();
            fast(&mut got);
            let worst = xs
                .iter()
                .zip(&got)
                .map(|(&x, &g)| (ulp_f64(g, reference(x)), x))
                .max_by_key(|p| p.0)
                .unwrap();
            assert!(worst.0 <= tol, "{name}: {} ulp at x = {}", worst.0, worst.1);
        };
        check("exp", exp_slice_f64, f64::exp, 2);
        check("tanh", tanh_slice_f64, f64::tanh, 3);
        check(
            "sigmoid",
            sigmoid_slice_f64,
            |x| 1.0 / (1.0 + (-x).exp()),
            3,
        );
    }

    /// Whether `fast` (over a slice) gives the bits `scalar` gives one value at a time
    /// (f32 widens to f64 exactly, so comparing the f64 bits compares the f32 bits).
    fn same_bits<T: crate::Element>(xs: &[T], fast: fn(&mut [T]), scalar: fn(T) -> T) -> bool {
        let mut got = xs.to_vec();
        fast(&mut got);
        let bits = |v: T| v.to_f64().expect("float to f64").to_bits();
        xs.iter()
            .zip(&got)
            .all(|(&x, &g)| bits(scalar(std::hint::black_box(x))) == bits(g))
    }

    /// The slice kernels run compiled for the CPU's widest vectors; the scalar functions are
    /// compiled for the baseline target. Both must give the same bits.
    #[test]
    fn vectorized_kernels_equal_the_scalar_functions_bit_for_bit() {
        let xs = grid(-120.0, 120.0, 20_011);
        let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        assert!(same_bits(&xs32, exp_slice_f32, exp_f32));
        assert!(same_bits(&xs32, tanh_slice_f32, tanh_f32));
        assert!(same_bits(&xs32, sigmoid_slice_f32, sigmoid_f32));
        assert!(same_bits(&xs, exp_slice_f64, exp_f64));
        assert!(same_bits(&xs, tanh_slice_f64, tanh_f64));
        assert!(same_bits(&xs, sigmoid_slice_f64, sigmoid_f64));
    }

    /// The kernels into a new vector give the bits of the in-place ones.
    #[test]
    fn kernels_into_a_new_vector_equal_the_in_place_ones() {
        fn same<T: crate::Element>(xs: &[T], in_place: fn(&mut [T]), of: fn(&[T]) -> Vec<T>) {
            let mut want = xs.to_vec();
            in_place(&mut want);
            let bits = |v: &[T]| -> Vec<u64> {
                v.iter()
                    .map(|x| x.to_f64().expect("float").to_bits())
                    .collect()
            };
            assert_eq!(bits(&of(xs)), bits(&want));
        }
        let xs = grid(-120.0, 120.0, 20_011);
        let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        same(&xs32, exp_slice_f32, exp_of_f32);
        same(&xs32, tanh_slice_f32, tanh_of_f32);
        same(&xs32, sigmoid_slice_f32, sigmoid_of_f32);
        same(&xs, exp_slice_f64, exp_of_f64);
        same(&xs, tanh_slice_f64, tanh_of_f64);
        same(&xs, sigmoid_slice_f64, sigmoid_of_f64);
    }

    #[test]
    fn special_values() {
        let mut v = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            100.0,
            -200.0,
        ];
        exp_slice_f32(&mut v);
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], &[f32::INFINITY, 0.0, 1.0, 1.0, f32::INFINITY, 0.0]);
        let mut t = [f32::INFINITY, f32::NEG_INFINITY, 0.0, 30.0, -30.0];
        tanh_slice_f32(&mut t);
        assert_eq!(t, [1.0, -1.0, 0.0, 1.0, -1.0]);
        let mut s = [f64::INFINITY, f64::NEG_INFINITY, 0.0];
        sigmoid_slice_f64(&mut s);
        assert_eq!(s, [1.0, 0.0, 0.5]);
    }
}
