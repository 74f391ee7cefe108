//! Global allocators for training binaries, benches and tests.
//!
//! [`CachingAllocator`] keeps large freed blocks and hands them back when a block of the same
//! size is requested again. A training step allocates and frees the same activation buffers
//! every step; with the C library's defaults each step gets fresh pages from the operating
//! system and pays a page fault for every 4 KiB of them (measured: a quarter of a long-unroll
//! LSTM step). Install it in a binary that trains:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: recur::memory::CachingAllocator = recur::memory::CachingAllocator;
//! ```
//!
//! Both allocators count live bytes and their peak, for measuring the memory of a computation
//! (cached blocks are not live):
//!
//! ```ignore
//! let base = recur::memory::start_peak();
//! run();
//! let bytes = recur::memory::peak_since(base);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Forwards to the system allocator, counting live bytes and their peak.
pub struct CountingAllocator;

/// Counts like [`CountingAllocator`] and keeps freed blocks of at least [`CACHED_MIN`] bytes
/// (up to [`CACHE_SLOTS`] blocks, the oldest returned to the system first, and [`CACHE_MAX`]
/// bytes) for reuse by allocations of exactly the same size and alignment.
pub struct CachingAllocator;

/// The smallest block worth caching: below it, the system allocator reuses memory itself.
pub const CACHED_MIN: usize = 64 * 1024;
/// How many freed blocks the cache holds.
pub const CACHE_SLOTS: usize = 256;
/// How many bytes the cache holds.
pub const CACHE_MAX: usize = 4 << 30;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn count_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn count_dealloc(size: usize) {
    CURRENT.fetch_sub(size, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded with the caller's layout (GlobalAlloc's contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_dealloc(layout.size());
        // SAFETY: `ptr` came from `alloc` above, i.e. from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A freed block: address, size, alignment.
#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
    align: usize,
}

/// A fixed array of blocks, so that the cache itself never allocates.
struct Cache {
    blocks: [Option<Block>; CACHE_SLOTS],
    bytes: usize,
    /// The slot to evict when all are taken, round robin: the oldest block goes first.
    next: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    blocks: [None; CACHE_SLOTS],
    bytes: 0,
    next: 0,
});

impl Cache {
    fn take(&mut self, layout: Layout) -> Option<*mut u8> {
        let slot = self
            .blocks
            .iter_mut()
            .find(|b| b.is_some_and(|b| b.size == layout.size() && b.align == layout.align()))?;
        let block = slot.take()?;
        self.bytes -= block.size;
        Some(block.ptr as *mut u8)
    }

    /// Keeps `block` if it fits the byte budget; returns what the caller must free: the
    /// block itself if it does not fit, or the oldest block if every slot is taken.
    fn put(&mut self, block: Block) -> Option<Block> {
        if self.bytes + block.size > CACHE_MAX {
            return Some(block);
        }
        let (slot, evicted) = match self.blocks.iter().position(Option::is_none) {
            Some(free) => (free, None),
            None => (self.next, self.blocks[self.next].take()),
        };
        self.bytes -= evicted.map_or(0, |b| b.size);
        self.blocks[slot] = Some(block);
        self.bytes += block.size;
        self.next = (slot + 1) % CACHE_SLOTS;
        evicted
    }
}

fn cache() -> MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// SAFETY: blocks come from `System` and go back to it with the layout they were allocated
// with: a cached block is only handed out again for the same size and alignment, so the
// layout its eventual `dealloc` passes is the one `System` allocated it with.
unsafe impl GlobalAlloc for CachingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        if layout.size() >= CACHED_MIN {
            if let Some(ptr) = cache().take(layout) {
                return ptr;
            }
        }
        // SAFETY: forwarded with the caller's layout (GlobalAlloc's contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        if layout.size() >= CACHED_MIN {
            if let Some(ptr) = cache().take(layout) {
                // SAFETY: a cached block of exactly this size, owned by no one else.
                unsafe { ptr.write_bytes(0, layout.size()) };
                return ptr;
            }
        }
        // SAFETY: forwarded with the caller's layout (GlobalAlloc's contract).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_dealloc(layout.size());
        if layout.size() < CACHED_MIN {
            // SAFETY: blocks this small are never cached: `ptr` came from `System` with
            // this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let block = Block {
            ptr: ptr as usize,
            size: layout.size(),
            align: layout.align(),
        };
        let spill = cache().put(block);
        if let Some(b) = spill {
            // SAFETY: the block came from `System` with this size and alignment.
            unsafe {
                System.dealloc(
                    b.ptr as *mut u8,
                    Layout::from_size_align_unchecked(b.size, b.align),
                )
            }
        }
    }
}

/// Starts a peak measurement; returns the bytes live now (the base).
pub fn start_peak() -> usize {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    base
}

/// The highest number of live bytes above `base` since [`start_peak`].
pub fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}
