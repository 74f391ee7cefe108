//! bfloat16: f32's sign and exponent with 8 significant bits. recur rounds to it as the
//! hardware does (`vcvtneps2bf16`): to nearest, ties to even; subnormal inputs become zero
//! of the same sign (bf16 kernels treat subnormals as zero); NaN stays a quiet NaN. A
//! product of two bf16 values is exact in f32, so "bf16 operands, f32 accumulation" is
//! f32 arithmetic on rounded operands, the same on every machine.

use super::simd::widest;
use crate::Element;

/// `v` rounded to bf16, as its 16 bits. Branch-free, so that loops over slices vectorize.
#[inline(always)]
pub fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let nan = bits & 0x7FFF_FFFF > 0x7F80_0000;
    let zero_or_subnormal = bits & 0x7F80_0000 == 0;
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
    let high = bits >> 16;
    let out = if nan {
        high | 0x40
    } else if zero_or_subnormal {
        high & 0x8000
    } else {
        rounded
    };
    out as u16
}

/// The f32 holding the bf16 value `bits`.
#[inline(always)]
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `v` rounded to bf16 precision, kept in its own type (an f64 is rounded to f32 first).
#[inline(always)]
pub fn round_bf16<T: Element>(v: T) -> T {
    T::of_f32(bf16_value(bf16_bits(v.to_f32_nearest())))
}

/// Rounds every value of `values` to bf16 precision in place (vectorized).
pub fn round_slice_bf16<T: Element>(values: &mut [T]) {
    widest(
        #[inline(always)]
        || values.iter_mut().for_each(|v| *v = round_bf16(*v)),
    )
}

/// `values` rounded to bf16 precision, appended to `out` (vectorized).
pub fn extend_rounded_bf16<T: Element>(out: &mut Vec<T>, values: &[T]) {
    let start = out.len();
    out.extend_from_slice(values);
    round_slice_bf16(&mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2⁻⁸ lies halfway between bf16's 1 and 1 + 2⁻⁷: ties go to the even one, 1.
        assert_eq!(bf16_value(bf16_bits(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
        assert_eq!(
            bf16_value(bf16_bits(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above halfway rounds up.
        let above = f32::from_bits((1.0f32 + 2f32.powi(-8)).to_bits() + 1);
        assert_eq!(bf16_value(bf16_bits(above)), 1.0 + 2f32.powi(-7));
        // Just below rounds down.
        assert_eq!(bf16_value(bf16_bits(1.0 + 2f32.powi(-9))), 1.0);
        assert_eq!(bf16_value(bf16_bits(-3.0)), -3.0);
        assert_eq!(bf16_value(bf16_bits(0.1)), 205.0 / 2048.0);
    }

    #[test]
    fn keeps_special_values_and_flushes_subnormals() {
        assert_eq!(bf16_value(bf16_bits(f32::INFINITY)), f32::INFINITY);
        assert_eq!(bf16_value(bf16_bits(f32::NEG_INFINITY)), f32::NEG_INFINITY);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        // A NaN whose payload lives only in the low bits stays a NaN, not infinity.
        assert!(bf16_value(bf16_bits(f32::from_bits(0x7F80_0001))).is_nan());
        // The largest f32 rounds up to infinity, as round-to-nearest says.
        assert_eq!(bf16_value(bf16_bits(f32::MAX)), f32::INFINITY);
        let tiny = f32::from_bits(0x0000_0100);
        assert!(tiny.is_subnormal());
        assert_eq!(bf16_bits(tiny), 0);
        assert_eq!(bf16_bits(-tiny), 0x8000);
        assert_eq!(bf16_value(bf16_bits(f32::MIN_POSITIVE)), f32::MIN_POSITIVE);
    }

    #[test]
    fn rounding_is_idempotent_and_monotone() {
        let mut previous = f32::NEG_INFINITY;
        for i in -2000..2000 {
            let v = i as f32 * 0.013_7;
            let r = round_bf16(v);
            assert_eq!(round_bf16(r), r);
            assert!(r >= previous, "{v}: {r} < {previous}");
            assert!((r - v).abs() <= v.abs() * 2f32.powi(-8));
            previous = r;
        }
        assert_eq!(round_bf16(0.1f64), 205.0 / 2048.0);
    }
}
