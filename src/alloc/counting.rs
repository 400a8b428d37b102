//! [`Alloc`]: jemalloc plus the per-thread counters of [`slots`](super::slots).
//!
//! The fast path is one thread-local load (the thread's slot, which also says the thread is set
//! up), one thread-local flag set around jemalloc's own call (so the CPU-time sampler can tell a
//! thread interrupted inside the allocator, see [`cpu_sampler`](super::cpu_sampler)), and two adds
//! to the thread's slot. Nothing is timed on the allocation path. The thread's first call and
//! calls made without a slot go through an out-of-line slow path. What an alloc+free pair costs is
//! in `BENCHMARKS.md`.
//!
//! A call made while the thread's slot is being set up, or after its thread-local storage was torn
//! down, is counted in one shared fallback slot with atomic adds: rare, and still exact.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering::*, compiler_fence};

use tikv_jemallocator::Jemalloc;

use super::slots::{FALLBACK, Slot, acquire_slot, add_owned};

/// jemalloc with the counters rdebug needs; install it as the global allocator.
///
/// It forwards every call to [`tikv_jemallocator::Jemalloc`] and adds, per thread and without any
/// shared atomic on the hot path, bytes and calls allocated and freed. It also marks, in a
/// thread-local flag, when a thread is inside an allocator call: the allocator's CPU time is
/// measured by sampling on CPU time (`SIGPROF` from a process CPU-time timer) and counting the
/// samples that land inside the allocator, not by timing calls.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let v = vec![0u8; 1 << 20];
/// assert!(rdebug::alloc_counters().allocated_bytes >= v.len() as u64);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Alloc {
    inner: Jemalloc,
}

impl Alloc {
    /// The allocator, ready to be a `#[global_allocator]`.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// ```
    pub const fn new() -> Self {
        Alloc { inner: Jemalloc }
    }
}

// SAFETY: every call is forwarded unchanged to jemalloc; the counting around it never allocates
// through the global allocator (slots come from `System`) and never unwinds.
unsafe impl GlobalAlloc for Alloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((s, l)) = enter() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.alloc_slow(layout, false) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        leave(l);
        if !p.is_null() {
            s.add_alloc(layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some((s, l)) = enter() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.alloc_slow(layout, true) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        leave(l);
        if !p.is_null() {
            s.add_alloc(layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match enter() {
            Some((s, l)) => {
                s.add_free(layout.size());
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { self.inner.dealloc(ptr, layout) };
                leave(l);
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { self.dealloc_slow(ptr, layout) },
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((s, l)) = enter() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.realloc_slow(ptr, layout, new_size) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        leave(l);
        if !p.is_null() {
            // A reallocation is counted as what it is: the old block freed, a new one allocated.
            s.add_free(layout.size());
            s.add_alloc(new_size);
        }
        p
    }
}

/// The slow paths: a thread's first call, and calls made while the thread has no slot of its own
/// (being set up, or torn down). Kept out of line so the fast path stays a few instructions
/// around jemalloc's own call.
impl Alloc {
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let l = slow_enter();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        };
        slow_leave(l);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        let l = slow_enter();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        slow_leave(l);
        count_free(layout.size());
    }

    #[cold]
    #[inline(never)]
    unsafe fn realloc_slow(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let l = slow_enter();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        slow_leave(l);
        if !p.is_null() {
            count_realloc(layout.size(), new_size);
        }
        p
    }
}

/// The current thread's own counters (allocated/freed bytes and calls), for checking that a
/// piece of code allocates nothing. Zero when [`Alloc`] is not the global allocator.
pub(crate) fn this_thread_counters() -> (u64, u64) {
    LOCAL.with(|l| {
        let p = l.slot.get();
        if p.is_null() {
            return (0, 0);
        }
        // SAFETY: slots are never freed.
        let s = unsafe { &*p };
        (s.allocs.load(Relaxed), s.allocated_bytes.load(Relaxed))
    })
}

/// Whether the calling thread is inside a call to [`Alloc`] right now. Async-signal-safe: one
/// read of a `const`-initialised thread-local without a destructor; the CPU-time sampler's
/// signal handler calls it on the interrupted thread.
#[inline]
pub(crate) fn in_allocator() -> bool {
    LOCAL.try_with(|l| l.inside.get()).unwrap_or(false)
}

const STATE_NEW: u8 = 0;
const STATE_SETTING_UP: u8 = 1;
const STATE_READY: u8 = 2;
const STATE_GONE: u8 = 3;

/// Per-thread state. `const`-initialised and without `Drop`, so reaching it never allocates and
/// never registers a destructor, and it stays readable while the thread is being torn down (and
/// from a signal handler).
///
/// `slot` gates the fast path: it is null until the thread's first call sets the thread up, and
/// null again once the thread hands its slot back at exit.
struct Local {
    slot: Cell<*const Slot>,
    state: Cell<u8>,
    /// Inside an allocator call now (read by the CPU-time sampler's signal handler).
    inside: Cell<bool>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            slot: Cell::new(ptr::null()),
            state: Cell::new(STATE_NEW),
            inside: Cell::new(false),
        }
    };
    /// Its destructor hands the slot back when the thread exits.
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            // Later calls on this thread take the slow path and count in the fallback slot.
            let p = l.slot.replace(ptr::null());
            l.state.set(STATE_GONE);
            if !p.is_null() {
                // SAFETY: slots are never freed.
                let s = unsafe { &*p };
                // `tid` first: a sampler arming this slot meanwhile sees it cleared and takes
                // back a timer it made for this thread (see `cpu_sampler::arm`).
                s.tid.store(0, SeqCst);
                super::cpu_sampler::disarm(s);
                s.in_use.store(false, Release);
            }
        });
    }
}

/// The fast path's start: this thread's slot, with the thread marked inside the allocator; `None`
/// when the call must take the slow path (the thread's first call, or no slot of its own).
#[inline(always)]
fn enter() -> Option<(&'static Slot, *const Local)> {
    LOCAL
        .try_with(|l| {
            let p = l.slot.get();
            if p.is_null() {
                return None;
            }
            l.inside.set(true);
            // The flag must be set before jemalloc runs, as a signal handler sees it.
            compiler_fence(SeqCst);
            // SAFETY: slots are never freed, and only this thread writes this one.
            Some((unsafe { &*p }, l as *const Local))
        })
        .ok()
        .flatten()
}

/// The fast path's end: the thread is out of the allocator.
#[inline(always)]
fn leave(l: *const Local) {
    compiler_fence(SeqCst);
    // SAFETY: `l` is this thread's `Local`, alive for the whole call.
    unsafe { (*l).inside.set(false) };
}

/// The slow path's start: sets the thread up on its first call, marks it inside the allocator.
#[inline]
fn slow_enter() -> Option<*const Local> {
    LOCAL
        .try_with(|l| {
            if l.state.get() == STATE_NEW {
                set_up(l);
            }
            l.inside.set(true);
            compiler_fence(SeqCst);
            l as *const Local
        })
        .ok()
}

#[inline]
fn slow_leave(l: Option<*const Local>) {
    if let Some(l) = l {
        leave(l);
    }
}

/// Takes a slot for this thread, which arms the fast path.
#[cold]
fn set_up(l: &Local) {
    l.state.set(STATE_SETTING_UP);
    let s = acquire_slot();
    // Touching RELEASE registers its destructor; if that allocates, the nested calls still see
    // no slot and take the slow path: counted in the fallback slot.
    let _ = RELEASE.try_with(|_| ());
    if !s.is_null() {
        // SAFETY: slots are never freed; this thread owns this one now.
        let slot = unsafe { &*s };
        slot.tid.store(super::cpu_sampler::current_tid(), Relaxed);
        // If the CPU-time sampler runs, this thread gets its own timer now.
        super::cpu_sampler::arm(slot);
    }
    l.slot.set(s);
    l.state.set(STATE_READY);
}

/// This thread's slot, if it has one (async-signal-safe: a thread-local read).
pub(crate) fn current_slot() -> Option<&'static Slot> {
    LOCAL
        .try_with(|l| {
            let p = l.slot.get();
            // SAFETY: slots are never freed.
            (!p.is_null()).then(|| unsafe { &*p })
        })
        .ok()
        .flatten()
}

/// The slot this thread writes (owned), or the shared fallback slot.
#[inline]
fn with_slot(f: impl FnOnce(&Slot, bool)) {
    let _ = LOCAL.try_with(|l| {
        let p = l.slot.get();
        if p.is_null() {
            f(&FALLBACK, false);
        } else {
            // SAFETY: slots are never freed; only this thread writes this one.
            f(unsafe { &*p }, true);
        }
    });
}

#[inline]
fn bump(counter: &AtomicU64, by: u64, owned: bool) {
    if owned {
        add_owned(counter, by);
    } else {
        counter.fetch_add(by, Relaxed);
    }
}

#[inline]
fn count_alloc(size: usize) {
    with_slot(|s, owned| {
        bump(&s.allocs, 1, owned);
        bump(&s.allocated_bytes, size as u64, owned);
    });
}

#[inline]
fn count_free(size: usize) {
    with_slot(|s, owned| {
        bump(&s.frees, 1, owned);
        bump(&s.freed_bytes, size as u64, owned);
    });
}

#[inline]
fn count_realloc(old: usize, new: usize) {
    with_slot(|s, owned| {
        bump(&s.frees, 1, owned);
        bump(&s.freed_bytes, old as u64, owned);
        bump(&s.allocs, 1, owned);
        bump(&s.allocated_bytes, new as u64, owned);
    });
}
