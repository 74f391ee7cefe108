//! Data parallelism over a fixed number of shards: a batch is cut into the same shards
//! whatever the thread count, and results are combined in shard order, so training is
//! bit-identical with 1 or 2 threads. Also the thread count ops may use inside one pass.

use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// How many threads an op may use for independent work inside one forward or backward (today:
/// the two directions of a bidirectional layer, and the layers of a unidirectional stack as a
/// wavefront). Default 1. Results are identical for any count; with batches already split
/// across threads (`map_shards`), keep it at 1.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The count [`set_threads`] set.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Runs `f(shard)` for shards `0..shards` on up to `threads` threads; results in shard order.
pub fn map_shards<R: Send>(shards: usize, threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, shards.max(1));
    if threads == 1 {
        return (0..shards).map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || {
                    (w..shards)
                        .step_by(threads)
                        .map(|k| (k, f(k)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut results: Vec<Option<R>> = (0..shards).map(|_| None).collect();
        for w in workers {
            for (k, r) in w.join().expect("a shard worker panicked") {
                results[k] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every shard ran"))
            .collect()
    })
}

/// The rows `[start, end)` of shard `k` when `rows` rows are cut into `shards` near-equal parts.
pub fn shard_range(rows: usize, shards: usize, k: usize) -> std::ops::Range<usize> {
    let base = rows / shards;
    let extra = rows % shards;
    let start = k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_shard_order_for_any_thread_count() {
        for threads in 1..4 {
            assert_eq!(map_shards(5, threads, |k| k * 10), vec![0, 10, 20, 30, 40]);
        }
    }

    #[test]
    fn shards_cover_all_rows_once() {
        let ranges: Vec<_> = (0..3).map(|k| shard_range(10, 3, k)).collect();
        assert_eq!(ranges, vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_range(1, 2, 1), 1..1);
    }
}
