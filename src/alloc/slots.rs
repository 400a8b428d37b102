//! The per-thread counter slots and their totals ([`AllocCounters`]).
//!
//! Every thread that allocates gets a [`Slot`] the first time it calls the allocator, and
//! publishes there the address of its counters, which live in its own thread-local block (see
//! [`counting`](super::counting)); only the owning thread writes them, readers sum every slot.
//! When a thread exits its counts are folded into its slot's retained totals, the address is
//! unpublished (under a sequence count, so a reader never counts them twice or not at all, and
//! after every reader that still holds the address is done with it), and the slot is marked free;
//! the next new thread takes it over *with the retained counts in it*, so nothing is lost, nothing
//! is counted twice, and the number of slots is bounded by the most threads that were ever alive
//! at once. Slots are never freed: their memory comes from the system allocator, never from
//! [`Alloc`](crate::Alloc) itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering::*, fence};

use super::thread_counters::{Hot, HotValues, add_owned};

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
    /// `SIGPROF` sample of an allocating thread's CPU time (every 10 ms of it) whose interrupted
    /// instruction is the allocator's (jemalloc's functions, the global-allocator shims, or a
    /// C-library function they called) counts the 10 ms. 0 when the sampler never ran, or when
    /// the executable has no symbol table (stripped) to tell the allocator's code by.
    pub alloc_cpu_ns: u64,
    /// Threads that have a counter slot now (alive threads that allocated at least once).
    pub threads: u64,
    /// Counter slots ever created; bounded by the most threads alive at once.
    pub slots: u64,
}

/// The counting allocator's totals (all but [`AllocCounters::alloc_cpu_ns`], which the
/// sampler measures): see [`crate::alloc_counters`].
pub(crate) fn counted() -> AllocCounters {
    let mut c = AllocCounters::default();
    let mut add = |v: HotValues| {
        c.allocated_bytes = c.allocated_bytes.saturating_add(v.allocated_bytes);
        c.freed_bytes = c.freed_bytes.saturating_add(v.freed_bytes);
        c.allocs = c.allocs.saturating_add(v.allocs);
        c.frees = c.frees.saturating_add(v.frees);
    };
    add(FALLBACK.retained());
    let mut p: *const Slot = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed once published.
        let s = unsafe { &*p };
        add(s.read());
        c.slots += 1;
        if s.in_use.load(Relaxed) {
            c.threads += 1;
        }
        p = s.next;
    }
    c.live_bytes = c.allocated_bytes.saturating_sub(c.freed_bytes);
    c.live_objects = c.allocs.saturating_sub(c.frees);
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

/// One thread's place among the counters: the address of its thread-local counters while it
/// runs, and the retained counts of the threads that had the slot before and exited. Written only
/// by the owning thread (the shared fallback slot: atomic adds); read by anyone.
#[repr(align(64))]
pub(crate) struct Slot {
    /// Retained counts (folded in at thread exit; the fallback slot counts here directly).
    pub(crate) allocated_bytes: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    /// The owning thread's counters, in its thread-local block; null when none is published.
    hot: AtomicPtr<Hot>,
    /// Odd while the owner folds its counters in at exit (a sequence lock for readers).
    seq: AtomicU64,
    /// Readers that may be reading through `hot` now; the exiting owner waits for 0.
    readers: AtomicU32,
    pub(crate) in_use: AtomicBool,
    /// Next slot in the list; fixed once the slot is published.
    next: *const Slot,
}

// SAFETY: all mutable state is atomic; `next` never changes after publication.
unsafe impl Sync for Slot {}

impl Slot {
    /// Publishes the calling thread's counters; the owning thread, once, at set-up.
    pub(crate) fn publish(&self, hot: &Hot) {
        self.hot.store(ptr::from_ref(hot).cast_mut(), SeqCst);
    }

    /// The owner is exiting: adds its counts `v` to the retained ones and unpublishes its
    /// counters, then waits until no reader can still be reading them (a reader holds them for
    /// a few loads). Owning thread only, from its thread-exit destructor.
    pub(crate) fn fold_and_unpublish(&self, v: HotValues) {
        self.seq.fetch_add(1, SeqCst);
        add_owned(&self.allocs, v.allocs);
        add_owned(&self.frees, v.frees);
        add_owned(&self.allocated_bytes, v.allocated_bytes);
        add_owned(&self.freed_bytes, v.freed_bytes);
        self.hot.store(ptr::null_mut(), SeqCst);
        self.seq.fetch_add(1, SeqCst);
        while self.readers.load(SeqCst) != 0 {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    /// The retained counts alone.
    fn retained(&self) -> HotValues {
        // Frees first, as in `Hot::read` (the fallback slot is counted here directly).
        HotValues {
            frees: self.frees.load(Acquire),
            freed_bytes: self.freed_bytes.load(Acquire),
            allocs: self.allocs.load(Relaxed),
            allocated_bytes: self.allocated_bytes.load(Relaxed),
        }
    }

    /// Retained plus the owner's live counts, each thread's counts exactly once.
    fn read(&self) -> HotValues {
        self.readers.fetch_add(1, SeqCst);
        let v = loop {
            let before = self.seq.load(SeqCst);
            if before & 1 == 1 {
                // The owner is folding its counts in (a few stores), or was preempted doing so.
                std::thread::yield_now();
                continue;
            }
            let mut v = self.retained();
            let h = self.hot.load(SeqCst);
            if !h.is_null() {
                // SAFETY: a published address stays valid while `readers` is non-zero: the
                // owner unpublishes it and then waits for `readers` to drop to 0 before its
                // thread-local block can go away.
                let l = unsafe { &*h }.read();
                v.allocs = v.allocs.wrapping_add(l.allocs);
                v.frees = v.frees.wrapping_add(l.frees);
                v.allocated_bytes = v.allocated_bytes.wrapping_add(l.allocated_bytes);
                v.freed_bytes = v.freed_bytes.wrapping_add(l.freed_bytes);
            }
            fence(Acquire);
            if self.seq.load(SeqCst) == before {
                break v;
            }
        };
        self.readers.fetch_sub(1, SeqCst);
        v
    }

    const fn new() -> Self {
        Slot {
            allocated_bytes: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            hot: AtomicPtr::new(ptr::null_mut()),
            seq: AtomicU64::new(0),
            readers: AtomicU32::new(0),
            in_use: AtomicBool::new(false),
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
