//! One thread's allocation counters ([`Hot`]), written only by the thread that owns them.

use std::sync::atomic::{AtomicU64, Ordering::*};

/// The thread's counters, in its own thread-local block. Written only by the owning thread (plain
/// relaxed load + store: no `lock` prefix); read by other threads through the address published
/// in the thread's [`Slot`](super::slots::Slot).
pub(crate) struct Hot {
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) allocated_bytes: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
}

/// One reading of a thread's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HotValues {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) allocated_bytes: u64,
    pub(crate) freed_bytes: u64,
}

impl Hot {
    pub(crate) const fn new() -> Self {
        Hot {
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            allocated_bytes: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
        }
    }

    /// The counts (relaxed loads; any thread).
    /// The frees first, then the allocations: the owner counts an object's allocation before
    /// its free, so a reader preempted between the loads (while the owner runs thousands of
    /// alloc/free pairs) still reads no more frees than allocations, and `heap_objects =
    /// mallocs - frees` never goes below zero. (Field initialisers run in the order written;
    /// `Acquire` keeps the later loads after the first on weakly ordered machines.)
    pub(crate) fn read(&self) -> HotValues {
        HotValues {
            frees: self.frees.load(Acquire),
            freed_bytes: self.freed_bytes.load(Acquire),
            allocs: self.allocs.load(Relaxed),
            allocated_bytes: self.allocated_bytes.load(Relaxed),
        }
    }

    /// Back to zero. Owning thread only, once its counts are no longer published.
    pub(crate) fn reset(&self) {
        for c in [
            &self.allocs,
            &self.frees,
            &self.allocated_bytes,
            &self.freed_bytes,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Counts one call of `size` bytes. Owning thread only.
    #[inline(always)]
    pub(crate) fn add(&self, is_alloc: bool, size: usize) {
        if is_alloc {
            add_owned(&self.allocs, 1);
            add_owned(&self.allocated_bytes, size as u64);
        } else {
            add_owned(&self.frees, 1);
            add_owned(&self.freed_bytes, size as u64);
        }
    }
}

/// Adds to a counter only its owning thread writes: a plain load and store, no `lock` prefix.
/// Wrapping: a u64 of bytes takes decades to wrap even at 10 GB/s.
#[inline(always)]
pub(crate) fn add_owned(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}
