//! Runs a closure compiled for the widest vectors the CPU has (AVX-512, else AVX2, chosen at
//! run time), so that plain loops over slices vectorize to the machine's width in a binary
//! built for the baseline target. Rust never contracts a multiply and an add into an FMA,
//! and LLVM keeps the order of floating-point operations, so every path gives bit-identical
//! results: only the vector width differs. A kernel that wants a fused multiply-add asks for
//! it (`mul_add`): it is exactly rounded on every path, one instruction where the closure is
//! compiled with FMA (both wide paths) and the C library's `fma` on the baseline.

/// Calls `f` inside a function compiled with the widest vector features this CPU has; `f`
/// is inlined there, so its loops are vectorized for them.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Σ f(aᵢ, bᵢ) over two runs of equal length, in 16 lanes (each summing every 16th term, in
/// order) added pairwise at the end: a fixed order, whatever the machine's vector width. It
/// vectorizes where it is inlined into a [`widest`] closure.
#[inline(always)]
pub fn lane_sum<T: crate::Element>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    const LANES: usize = 16;
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [T::zero(); LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *l += f(x, y);
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    let rest = ca.remainder().iter().zip(cb.remainder());
    rest.fold(lanes[0], |s, (&x, &y)| s + f(x, y))
}
