//! The per-thread counter slots and their totals ([`AllocCounters`]).
//!
//! Every thread that allocates gets a [`Slot`] of counters the first time it calls the allocator.
//! Only the owning thread writes its slot, with plain relaxed load + store (no `lock`-prefixed
//! instruction on the hot path); readers sum every slot. When a thread exits its slot is marked
//! free and the next new thread takes it over *with the counts already in it*, so nothing is lost,
//! nothing is counted twice, and the number of slots is bounded by the most threads that were ever
//! alive at once. Slots are never freed: their memory comes from the system allocator, never from
//! [`Alloc`](crate::Alloc) itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};

/// No timer in [`Slot::timer`].
pub(crate) const NO_TIMER: usize = usize::MAX;
/// Totals of the counting allocator, summed over all threads that ever allocated.
///
/// Read with [`alloc_counters`]. All counts are since the process started, in requested bytes
/// (`Layout::size`, not jemalloc's rounded-up size classes). A `realloc` counts as one free of the
/// old size and one allocation of the new size. The sum is not one atomic snapshot: an object
/// allocated on one thread and freed on another while the read runs may show its free first, so
/// the `live_*` differences saturate at zero.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let c = rdebug::alloc_counters();
/// assert_eq!(c.live_objects, c.allocs - c.frees);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AllocCounters {
    /// Bytes requested from the allocator since start (Go's `TotalAlloc`).
    pub allocated_bytes: u64,
    /// Bytes handed back to the allocator since start.
    pub freed_bytes: u64,
    /// Allocation calls that succeeded since start (Go's `Mallocs`); a `realloc` counts one.
    pub allocs: u64,
    /// Deallocation calls since start (Go's `Frees`); a `realloc` counts one.
    pub frees: u64,
    /// `allocated_bytes - freed_bytes`: bytes in live objects, by requested size.
    pub live_bytes: u64,
    /// `allocs - frees`: live objects (Go's `HeapObjects`).
    pub live_objects: u64,
    /// CPU time spent inside allocator calls on all threads, in nanoseconds, since the CPU-time
    /// sampler started (the first [`memstats`](crate::memstats) call or `gctrace` reporter): each
    /// `SIGPROF` sample of the process's CPU time (every 10 ms of it) that lands on a thread
    /// inside an [`Alloc`](crate::Alloc) call counts the 10 ms. 0 when the sampler never ran.
    pub alloc_cpu_ns: u64,
    /// Threads that have a counter slot now (alive threads that allocated at least once).
    pub threads: u64,
    /// Counter slots ever created; bounded by the most threads alive at once.
    pub slots: u64,
}

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
    let mut c = AllocCounters::default();
    let mut add = |s: &Slot| {
        c.allocated_bytes = c
            .allocated_bytes
            .saturating_add(s.allocated_bytes.load(Relaxed));
        c.freed_bytes = c.freed_bytes.saturating_add(s.freed_bytes.load(Relaxed));
        c.allocs = c.allocs.saturating_add(s.allocs.load(Relaxed));
        c.frees = c.frees.saturating_add(s.frees.load(Relaxed));
    };
    add(&FALLBACK);
    let mut p: *const Slot = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed once published.
        let s = unsafe { &*p };
        add(s);
        c.slots += 1;
        if s.in_use.load(Relaxed) {
            c.threads += 1;
        }
        p = s.next;
    }
    c.live_bytes = c.allocated_bytes.saturating_sub(c.freed_bytes);
    c.live_objects = c.allocs.saturating_sub(c.frees);
    c.alloc_cpu_ns = super::cpu_sampler::alloc_cpu_ns();
    c
}

/// Whether [`Alloc`](crate::Alloc) is the global allocator: true once any thread allocated through it.
pub(crate) fn is_installed() -> bool {
    if INSTALLED.load(Relaxed) {
        return true;
    }
    // Make sure at least one allocation went through the global allocator on this thread.
    drop(std::hint::black_box(Box::new(0u64)));
    INSTALLED.load(Relaxed)
}

/// One thread's counters. Written only by the owning thread; read by anyone.
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) allocated_bytes: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) in_use: AtomicBool,
    /// Kernel id of the thread that owns the slot now (0 before it is known).
    pub(crate) tid: AtomicI64,
    /// The CPU-time sampler's timer on that thread's CPU clock (a `timer_t` as usize), or
    /// `NO_TIMER`.
    pub(crate) timer: AtomicUsize,
    /// Next slot in the list; fixed once the slot is published.
    next: *const Slot,
}

// SAFETY: all mutable state is atomic; `next` never changes after publication.
unsafe impl Sync for Slot {}

impl Slot {
    /// Counts one allocation of `size` bytes; owning thread only.
    #[inline(always)]
    pub(crate) fn add_alloc(&self, size: usize) {
        add_owned(&self.allocs, 1);
        add_owned(&self.allocated_bytes, size as u64);
    }

    /// Counts one free of `size` bytes; owning thread only.
    #[inline(always)]
    pub(crate) fn add_free(&self, size: usize) {
        add_owned(&self.frees, 1);
        add_owned(&self.freed_bytes, size as u64);
    }

    const fn new() -> Self {
        Slot {
            allocated_bytes: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            in_use: AtomicBool::new(false),
            tid: AtomicI64::new(0),
            timer: AtomicUsize::new(NO_TIMER),
            next: ptr::null(),
        }
    }
}

/// Head of the list of all slots ever created.
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());
/// Shared slot for calls made while a thread has no slot of its own (atomic adds).
pub(crate) static FALLBACK: Slot = Slot::new();
/// Set when the first thread takes a slot: proof that `Alloc` is the global allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Calls `f` with every slot ever created (owned by a live thread or free).
pub(crate) fn for_each_slot(mut f: impl FnMut(&Slot)) {
    let mut p: *const Slot = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed once published.
        let s = unsafe { &*p };
        f(s);
        p = s.next;
    }
}

/// Takes a free slot, or creates one with the system allocator. Null only if that fails.
#[cold]
pub(crate) fn acquire_slot() -> *const Slot {
    INSTALLED.store(true, Relaxed);
    let mut p: *const Slot = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let s = unsafe { &*p };
        if !s.in_use.load(Relaxed)
            && s.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            return p;
        }
        p = s.next;
    }
    // SAFETY: Slot has a non-zero size.
    let fresh = unsafe { System.alloc(Layout::new::<Slot>()) } as *mut Slot;
    if fresh.is_null() {
        return ptr::null();
    }
    let mut head = SLOTS.load(Acquire);
    loop {
        let mut slot = Slot::new();
        slot.in_use = AtomicBool::new(true);
        slot.next = head.cast_const();
        // SAFETY: `fresh` is a valid, exclusively owned allocation for one Slot.
        unsafe { fresh.write(slot) };
        match SLOTS.compare_exchange_weak(head, fresh, AcqRel, Acquire) {
            Ok(_) => return fresh,
            Err(now) => head = now,
        }
    }
}

/// Adds to a counter only its owning thread writes: a plain load and store, no `lock` prefix.
/// Wrapping: a u64 of bytes takes decades to wrap even at 10 GB/s.
#[inline(always)]
pub(crate) fn add_owned(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}
