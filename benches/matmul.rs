//! gemm at RNN shapes: [B, H] · [H, 4H] for B in 1, 8, 32, 64 and H in 128, 256, 512.
//! Throughput is reported in elements/s where one element is one flop: read Gelem/s as
//! GFLOP/s. `xw` multiplies by a row-major [H, 4H]; `xwt` by the transpose of a [4H, H]
//! weight (PyTorch's layout, what the layers do); `raw-mm` is matrixmultiply alone, the
//! baseline the batch-1 path replaces.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recur::tape::kernels::{gemm, MatRef};
use std::time::Duration;

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for h in [128usize, 256, 512] {
        let n = 4 * h;
        let w: Vec<f32> = (0..h * n)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        for b in [1usize, 8, 32, 64] {
            let x: Vec<f32> = (0..b * h)
                .map(|i| ((i * 104_729) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let mut out = vec![0.0f32; b * n];
            group.throughput(Throughput::Elements((2 * b * h * n) as u64));
            let id = format!("B{b}xH{h}x4H");
            group.bench_function(BenchmarkId::new("xw", &id), |bench| {
                bench.iter(|| {
                    gemm(
                        1.0,
                        MatRef::row_major(&x, b, h),
                        MatRef::row_major(&w, h, n),
                        0.0,
                        &mut out,
                        n,
                    )
                })
            });
            group.bench_function(BenchmarkId::new("xwt", &id), |bench| {
                bench.iter(|| {
                    gemm(
                        1.0,
                        MatRef::row_major(&x, b, h),
                        MatRef::row_major(&w, n, h).t(),
                        0.0,
                        &mut out,
                        n,
                    )
                })
            });
            if b == 1 {
                group.bench_function(BenchmarkId::new("raw-mm", &id), |bench| {
                    bench.iter(|| unsafe {
                        matrixmultiply::sgemm(
                            1,
                            h,
                            n,
                            1.0,
                            x.as_ptr(),
                            h as isize,
                            1,
                            w.as_ptr(),
                            n as isize,
                            1,
                            0.0,
                            out.as_mut_ptr(),
                            n as isize,
                            1,
                        )
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
