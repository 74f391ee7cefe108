//! Data parallelism over a fixed number of shards: a batch is cut into the same shards
//! whatever the thread count, and results are combined in shard order, so training is
//! bit-identical with 1 or 2 threads. Also the thread count ops may use inside one pass, and
//! large elementwise passes (summing shard gradients, clipping, optimizer steps) cut into
//! fixed parts that the threads share.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

mod pool;
pub(crate) use pool::on_threads;

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// Set on the threads of [`map_shards`]: work inside a shard stays on its thread.
    static IN_SHARD_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// How many threads recur may use for independent work inside one step: the two directions
/// of a bidirectional layer, the layers of a unidirectional stack as a wavefront, large
/// elementwise passes over parameters and gradients, and the rows of a `Stepper`'s large
/// products. Default 1. Results are identical for
/// any count. Inside the workers of [`map_shards`] (a batch already split across threads)
/// the count is 1.
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Settles the thread count of a program's `--threads` option: `requested`, or every core
/// when `None`. The count is also set as the one ops may use ([`set_threads`]); returns it.
pub fn use_threads(requested: Option<usize>) -> usize {
    let n = requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    set_threads(n);
    n
}

/// The count [`set_threads`] set; 1 inside a shard worker.
pub fn threads() -> usize {
    if IN_SHARD_WORKER.with(Cell::get) {
        1
    } else {
        THREADS.load(Ordering::Relaxed)
    }
}

/// Elements per part of a large elementwise pass: parts are fixed whatever the thread
/// count, so reductions over them (a gradient norm) give the same result for any count.
pub const PART: usize = 1 << 16;

/// Passes over fewer elements than this run on the calling thread: starting threads would
/// cost more than they save.
const PARALLEL_MIN: usize = 2 * PART;

/// Runs `f` on every part, the parts spread over up to [`threads`] threads in contiguous
/// runs; results in part order. For passes over many elements cut by the caller into parts
/// of about [`PART`] (`chunks_mut(PART)` of each tensor, zipped with its partners);
/// `elements` says how many elements a part holds.
pub fn map_parts<P: Send, R: Send>(
    parts: Vec<P>,
    elements: impl Fn(&P) -> usize,
    f: impl Fn(P) -> R + Sync,
) -> Vec<R> {
    let threads = if parts.iter().map(elements).sum::<usize>() < PARALLEL_MIN {
        1
    } else {
        threads()
    };
    map_parts_on(threads, parts, f)
}

fn map_parts_on<P: Send, R: Send>(
    threads: usize,
    parts: Vec<P>,
    f: impl Fn(P) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, parts.len().max(1));
    if threads == 1 {
        return parts.into_iter().map(f).collect();
    }
    let per_thread = parts.len().div_ceil(threads);
    let mut parts = parts.into_iter();
    let runs: Vec<Vec<P>> = (0..threads)
        .map(|_| parts.by_ref().take(per_thread).collect())
        .collect();
    on_threads(runs, |run| run.into_iter().map(&f).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

/// Runs `f(shard)` for shards `0..shards` on up to `threads` threads; results in shard order.
pub fn map_shards<R: Send>(shards: usize, threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, shards.max(1));
    if threads == 1 {
        return (0..shards).map(&f).collect();
    }
    let done = on_threads((0..threads).collect(), |w| {
        let _flag = ShardWorkerFlag::set();
        (w..shards)
            .step_by(threads)
            .map(|k| (k, f(k)))
            .collect::<Vec<_>>()
    });
    let mut results: Vec<Option<R>> = (0..shards).map(|_| None).collect();
    for (k, r) in done.into_iter().flatten() {
        results[k] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.expect("every shard ran"))
        .collect()
}

/// Marks the thread as a shard worker until dropped (also when a shard panics), so that work
/// inside its shards stays on it; the calling thread is itself again after.
struct ShardWorkerFlag {
    was: bool,
}

impl ShardWorkerFlag {
    fn set() -> Self {
        ShardWorkerFlag {
            was: IN_SHARD_WORKER.with(|flag| flag.replace(true)),
        }
    }
}

impl Drop for ShardWorkerFlag {
    fn drop(&mut self) {
        IN_SHARD_WORKER.with(|flag| flag.set(self.was));
    }
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
    fn parts_come_back_in_order_for_any_thread_count() {
        for threads in 1..5 {
            let parts: Vec<usize> = (0..7).collect();
            let doubled = map_parts_on(threads, parts, |k| k * 2);
            assert_eq!(doubled, vec![0, 2, 4, 6, 8, 10, 12]);
        }
    }

    #[test]
    fn every_shard_runs_as_a_worker_and_the_caller_is_itself_again_after() {
        let in_worker = || IN_SHARD_WORKER.with(Cell::get);
        for threads in 1..4 {
            // The calling thread runs shards 0, threads, … itself when there are several.
            let flags = map_shards(5, threads, |_| threads == 1 || in_worker());
            assert_eq!(flags, vec![true; 5], "{threads} threads");
            assert!(!in_worker(), "{threads} threads");
        }
        let panicked = std::panic::catch_unwind(|| {
            map_shards(2, 2, |k| assert!(k == 1, "shard {k} fails"));
        });
        assert!(panicked.is_err());
        assert!(!in_worker(), "the flag is restored when a shard panics");
    }

    #[test]
    fn shards_cover_all_rows_once() {
        let ranges: Vec<_> = (0..3).map(|k| shard_range(10, 3, k)).collect();
        assert_eq!(ranges, vec![0..4, 4..7, 7..10]);
        assert_eq!(shard_range(1, 2, 1), 1..1);
    }
}
