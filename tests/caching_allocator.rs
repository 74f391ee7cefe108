//! The caching allocator hands a freed large block back for the next request of the same
//! size and alignment (zeroed when asked), never for another size; it drops the oldest block
//! when its slots are full, and counts only live bytes.

use recur::memory::{peak_since, start_peak, CachingAllocator, CACHED_MIN, CACHE_SLOTS};
use std::sync::Mutex;

#[global_allocator]
static ALLOC: CachingAllocator = CachingAllocator;

/// The cache and the counters are global: tests must not interleave.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_freed_block_is_reused_for_the_same_size() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let len = CACHED_MIN / 4 + 123;
    let mut first = vec![7.0f32; len];
    first[0] = 1.0;
    let addr = first.as_ptr() as usize;
    drop(first);
    let again = vec![0.0f32; len];
    assert_eq!(again.as_ptr() as usize, addr, "same size: the cached block");
    assert!(again.iter().all(|&v| v == 0.0), "zeroed on reuse");
    drop(again);
    let other = vec![0.0f32; len + 1];
    assert_ne!(
        other.as_ptr() as usize,
        addr,
        "another size: not that block"
    );
    let wider: Vec<f64> = Vec::with_capacity(len / 2);
    assert_ne!(wider.as_ptr() as usize, addr, "another size and alignment");
}

#[test]
fn the_oldest_block_goes_when_the_slots_are_full() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let sizes: Vec<usize> = (0..CACHE_SLOTS + 1)
        .map(|i| CACHED_MIN + 64 * (i + 1))
        .collect();
    let blocks: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![1u8; n]).collect();
    let addrs: Vec<usize> = blocks.iter().map(|b| b.as_ptr() as usize).collect();
    drop(blocks);
    // The newest CACHE_SLOTS blocks are kept, each for its own size.
    let again: Vec<Vec<u8>> = sizes[1..].iter().map(|&n| vec![0u8; n]).collect();
    for (block, &addr) in again.iter().zip(&addrs[1..]) {
        assert_eq!(block.as_ptr() as usize, addr);
    }
}

#[test]
fn live_bytes_are_counted_and_cached_bytes_are_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = start_peak();
    let big = vec![1u8; 4 * CACHED_MIN];
    let small = vec![1u8; 100];
    // (Other test threads may free a little meanwhile.)
    assert!(peak_since(base) >= 3 * CACHED_MIN);
    drop((big, small));
    // Freed (cached) bytes are not live: a new peak measurement starts near zero.
    let base = start_peak();
    let tiny = Box::new([1u8; 10]);
    assert_eq!(tiny.len(), 10);
    assert!(peak_since(base) < CACHED_MIN);
}
