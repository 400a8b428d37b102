//! [`alloc_counters`]: the counting allocator's totals, with the sampler's allocator-CPU figure.

use crate::alloc::AllocCounters;

/// The counting allocator's totals, without touching jemalloc: the read for hot paths.
///
/// Sums the per-thread counters (a few relaxed loads per thread that ever allocated). All zero when
/// [`Alloc`](crate::Alloc) is not the global allocator.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let before = rdebug::alloc_counters();
/// let b = Box::new([0u8; 4096]);
/// let after = rdebug::alloc_counters();
/// assert!(after.allocs > before.allocs);
/// drop(b);
/// ```
pub fn alloc_counters() -> AllocCounters {
    let mut c = crate::alloc::slots::counted();
    c.alloc_cpu_ns = crate::sampler::alloc_cpu_ns();
    c
}
