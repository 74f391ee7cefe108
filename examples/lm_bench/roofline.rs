//! lm_bench's read-bandwidth case: how fast one thread streams f32 data it only reads, for
//! buffers that fit in L2, that fit in L3 (the sizes batch-1 generation reads per character),
//! and that do not fit anywhere: the roofline batch-1 inference is measured against.

use super::time_per;
use recur::tape::kernels::simd::widest;

pub const CASE: &str = "read-bandwidth";

/// Buffer sizes in KiB: L2-resident, the bf16 and f32 weights of the 2×256 LSTM, an L3-sized
/// buffer, and main memory.
const SIZES_KIB: [usize; 5] = [256, 1_588, 3_172, 16_384, 262_144];

/// Sums every value of `data` in 32 lanes (so that the adds never wait on each other).
fn stream(data: &[f32]) -> f32 {
    widest(
        #[inline(always)]
        || {
            let mut lanes = [0.0f32; 32];
            for chunk in data.chunks_exact(32) {
                for (l, &v) in lanes.iter_mut().zip(chunk) {
                    *l += v;
                }
            }
            lanes.iter().sum()
        },
    )
}

/// Prints GB/s per buffer size, each the best of five timings of repeated passes.
pub fn read_bandwidth() {
    for kib in SIZES_KIB {
        let data = vec![1.0f32; kib * 256];
        let passes = (1usize << 30).div_ceil(kib * 1024).clamp(2, 4096);
        let best = (0..5)
            .map(|_| {
                time_per(1, passes, || {
                    std::hint::black_box(stream(std::hint::black_box(&data)));
                })
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{{\"case\": \"{CASE}\", \"kib\": {kib}, \"gb_per_s\": {:.1}}}",
            (kib * 1024) as f64 / best / 1e9
        );
    }
}
