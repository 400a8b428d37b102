//! [`Alloc`]: jemalloc plus the per-thread counters of [`slots`](super::slots).
//!
//! The fast path adds to jemalloc's own call one compare of a thread-local state byte (is the
//! thread set up?), one never-taken branch, and two thread-local adds (calls and bytes), then
//! tail-calls jemalloc. The state and the counters sit in one thread-local block at a fixed
//! offset from the thread pointer: no pointer is loaded and no register is saved. Nothing else is
//! added: no in-allocator flag and no timing (the allocator's CPU time comes from on-CPU sampling
//! that looks at the interrupted instruction, see [`sampler`](crate::sampler) and
//! [`allocator_code`](crate::sampler::allocator_code)). What an alloc+free pair costs is in `BENCHMARKS.md`.
//!
//! A thread's first call, and every call while it has no counters of its own, go out of line:
//! the first one gives the thread a [`Slot`] and publishes there the address of its counters,
//! where readers find them. At thread exit the counters are folded into the slot and unpublished
//! (a reader still holding the address is waited for); later calls on the exiting thread count in
//! one shared fallback slot with atomic adds: rare, and still exact.
//!
//! **Finding runtimes.** A thread's first [`PROBE_CALLS`] calls after its set-up also go out of
//! line: each allocation among them asks a probe that [`runtime::discover`](crate::runtime)
//! installs whether the thread is running a task of a tokio runtime. Once it is (or once the
//! countdown ends: a thread that is no tokio thread pays these calls once), the thread is on the
//! fast path for good. The fast path itself is the same compare of the state byte.
//!
//! **A failed allocation.** The fast path counts before it calls jemalloc, so that the call can be
//! a tail call; when jemalloc returns null (out of memory) nothing comes back through the wrapper.
//! A program that survives a failed `alloc` (`try_reserve`, `Box::try_new`) sees it counted as one
//! allocation of its size that is never freed; otherwise a failed `alloc` ends the program
//! (`handle_alloc_error`). `alloc_zeroed` and `realloc` count after the call, exactly.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::Ordering::*;

use tikv_jemallocator::Jemalloc;

use super::slots::{FALLBACK, Slot, acquire_slot};
use super::thread_counters::{Hot, HotValues, add_owned};

/// jemalloc with the counters rdebug needs; install it as the global allocator.
///
/// It forwards every call to [`tikv_jemallocator::Jemalloc`] and adds, per thread and without any
/// shared atomic on the hot path, bytes and calls allocated and freed: two thread-local adds per
/// call. The allocator's CPU time is measured by sampling on CPU time (`SIGPROF` from per-thread
/// CPU-time timers) and counting the samples whose interrupted instruction lies in jemalloc's or
/// this wrapper's code, not by timing or flagging calls.
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
        let counted = LOCAL
            .try_with(|l| {
                if l.state.get() != STATE_READY {
                    return false;
                }
                add_owned(&l.hot.allocs, 1);
                add_owned(&l.hot.allocated_bytes, layout.size() as u64);
                true
            })
            .unwrap_or(false);
        if !counted {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.alloc_attention(layout) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let counted = LOCAL
            .try_with(|l| {
                if l.state.get() != STATE_READY {
                    return false;
                }
                add_owned(&l.hot.frees, 1);
                add_owned(&l.hot.freed_bytes, layout.size() as u64);
                true
            })
            .unwrap_or(false);
        if !counted {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.dealloc_attention(ptr, layout) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { free(&self.inner, ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A reallocation is counted as what it is: the old block freed, a new one allocated.
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

/// jemalloc's free: sized (`sdallocx`), as tikv-jemallocator does.
#[cfg(not(feature = "pprof"))]
#[inline(always)]
unsafe fn free(inner: &Jemalloc, ptr: *mut u8, layout: Layout) {
    // SAFETY: the caller's guarantees.
    unsafe { inner.dealloc(ptr, layout) }
}

/// jemalloc's free in a build with heap profiling (`--enable-prof`). There a sampled object is
/// promoted to a page, so jemalloc's sized free (`sdallocx`) sends every page-aligned pointer (a
/// quarter of the 1 KiB objects, all of the 4 KiB ones...) to its slow path (`sdallocx_default`:
/// +26 instructions per alloc+free pair in the allocator benches' loop, sampling paused). Those
/// pointers go to the unsized `free` instead, whose fast path looks the object up in jemalloc's
/// radix tree (measured in `BENCHMARKS.md`: the paused build then costs +8.5 instructions per
/// pair instead of +26); the others stay on the sized fast path.
#[cfg(feature = "pprof")]
#[inline(always)]
unsafe fn free(inner: &Jemalloc, ptr: *mut u8, layout: Layout) {
    // SAFETY: the caller's guarantees; jemalloc's `free` takes any pointer it handed out.
    unsafe {
        if (ptr as usize) & 4095 == 0 {
            tikv_jemalloc_sys::free(ptr.cast())
        } else {
            inner.dealloc(ptr, layout)
        }
    }
}

/// The out-of-line paths of `alloc` and `dealloc` (see [`attention`]); they make the call
/// themselves, so the fast path has no call to return from and saves no register.
impl Alloc {
    #[cold]
    #[inline(never)]
    unsafe fn alloc_attention(&self, layout: Layout) -> *mut u8 {
        attention(true, layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.alloc(layout) }
    }

    #[cold]
    #[inline(never)]
    unsafe fn dealloc_attention(&self, ptr: *mut u8, layout: Layout) {
        attention(false, layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { free(&self.inner, ptr, layout) }
    }
}

/// Counts one call (the paths that count after jemalloc's call, and the out-of-line ones).
#[inline(always)]
fn count(is_alloc: bool, size: usize) {
    let counted = LOCAL
        .try_with(|l| {
            if l.state.get() != STATE_READY {
                return false;
            }
            l.hot.add(is_alloc, size);
            true
        })
        .unwrap_or(false);
    if !counted {
        attention(is_alloc, size);
    }
}

#[inline(always)]
fn count_alloc(size: usize) {
    count(true, size);
}

#[inline(always)]
fn count_free(size: usize) {
    count(false, size);
}

/// The thread is not set up (its first call) or has no counters of its own (being set up, or
/// torn down): counts the call where it belongs, setting the thread up first if it is new.
#[cold]
#[inline(never)]
fn attention(is_alloc: bool, size: usize) {
    let counted = LOCAL
        .try_with(|l| {
            if l.state.get() == STATE_NEW {
                set_up(l);
            }
            // While being set up, the counts go to the counters about to be published.
            let own = matches!(
                l.state.get(),
                STATE_READY | STATE_SETTING_UP | STATE_PROBING
            );
            if own {
                l.hot.add(is_alloc, size);
            }
            if l.state.get() == STATE_PROBING {
                probe_step(l, is_alloc);
            }
            own
        })
        .unwrap_or(false);
    if !counted {
        let (calls, bytes) = if is_alloc {
            (&FALLBACK.allocs, &FALLBACK.allocated_bytes)
        } else {
            (&FALLBACK.frees, &FALLBACK.freed_bytes)
        };
        calls.fetch_add(1, Relaxed);
        bytes.fetch_add(size as u64, Relaxed);
    }
}

/// The current thread's own counters so far: for checking that a piece of code allocates nothing
/// (the reporter's own figures), or bounding what it holds (symbolizing a profile). Zero when
/// [`Alloc`] is not the global allocator.
pub(crate) fn this_thread_counters() -> HotValues {
    LOCAL.try_with(|l| l.hot.read()).unwrap_or_default()
}

const STATE_NEW: u8 = 0;
/// Counting in its own counters, nothing else: while being set up, and while a probe runs (so
/// that calls nested in it neither probe nor recurse).
const STATE_SETTING_UP: u8 = 1;
const STATE_READY: u8 = 2;
const STATE_GONE: u8 = 3;
/// Set up, and still out of line for its first [`PROBE_CALLS`] calls: each allocation asks the
/// probe ([`super::hooks::probe`]) whether the thread is running a task of a tokio runtime.
const STATE_PROBING: u8 = 4;

/// How many calls a thread stays out of line probing for its runtime, at most: what a thread
/// that is no tokio thread pays, once (measured in `BENCHMARKS.md`: the fast path is unchanged).
/// A new worker thread runs tasks within its first few dozen calls.
pub(crate) const PROBE_CALLS: u16 = 4096;

/// One call of a probing thread: counts it down and, for an allocation, runs the probe. The
/// thread goes to the fast path once the probe says it is done or the countdown ends.
#[cold]
fn probe_step(l: &Local, is_alloc: bool) {
    let left = l.probe_left.get().saturating_sub(1);
    l.probe_left.set(left);
    if left == 0 {
        l.state.set(STATE_READY);
        return;
    }
    if !is_alloc {
        // Only allocations probe: a free may run inside a drop that tokio makes while it holds
        // its thread-local context borrowed (see `runtime::discover`).
        return;
    }
    l.state.set(STATE_SETTING_UP);
    let done = super::hooks::probe();
    l.state.set(if done { STATE_READY } else { STATE_PROBING });
}

/// Gives the calling thread a new countdown of probes (when rdebug starts finding runtimes: the
/// thread that called `init()` may go on to run a runtime of its own).
pub(crate) fn probe_again() {
    let _ = LOCAL.try_with(|l| {
        if l.state.get() == STATE_READY {
            l.probe_left.set(PROBE_CALLS);
            l.state.set(STATE_PROBING);
        }
    });
}

/// Per-thread state and counters. `const`-initialised and without `Drop`, so reaching it never
/// allocates and never registers a destructor, and it stays readable while the thread is being
/// torn down (and from a signal handler). One thread-local, so the fast path reaches the state
/// byte and the counters from one base.
struct Local {
    /// `STATE_READY` is the fast path's condition.
    state: Cell<u8>,
    /// The thread's slot once set up; null before, and again once handed back at exit.
    slot: Cell<*const Slot>,
    /// What the thread-start hook returned, for the thread-exit hook ([`super::hooks`]).
    hook_token: Cell<usize>,
    /// Calls left to probe for the thread's runtime (while `STATE_PROBING`).
    probe_left: Cell<u16>,
    hot: Hot,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            state: Cell::new(STATE_NEW),
            slot: Cell::new(ptr::null()),
            hook_token: Cell::new(0),
            probe_left: Cell::new(0),
            hot: Hot::new(),
        }
    };
    /// Its destructor hands the slot back when the thread exits.
    static RELEASE: ReleaseOnExit = const { ReleaseOnExit };
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            // Later calls on this thread go out of line and count in the fallback slot.
            l.state.set(STATE_GONE);
            let p = l.slot.replace(ptr::null());
            if !p.is_null() {
                // SAFETY: slots are never freed.
                let s = unsafe { &*p };
                super::hooks::thread_exiting(l.hook_token.replace(0));
                s.fold_and_unpublish(l.hot.read());
                s.in_use.store(false, Release);
            }
            l.hot.reset();
        });
    }
}

/// Takes a slot for this thread and publishes its counters there.
#[cold]
fn set_up(l: &Local) {
    l.state.set(STATE_SETTING_UP);
    // Where this thread's stack lies, for the CPU profiler's `SIGPROF` handler (which must not
    // run off its end when it walks the stack): read now, outside any handler.
    // `pthread_getattr_np` allocates with the C library's malloc, not through `Alloc`.
    #[cfg(feature = "pprof")]
    crate::sys::stack::record_current_thread();
    let s = acquire_slot();
    // Touching RELEASE registers its destructor; if that allocates, the nested calls count in
    // this thread's counters (published just below).
    let _ = RELEASE.try_with(|_| ());
    if s.is_null() {
        // No slot to publish in (the system allocator failed): count in the shared slot.
        let v = l.hot.read();
        FALLBACK.allocs.fetch_add(v.allocs, Relaxed);
        FALLBACK.frees.fetch_add(v.frees, Relaxed);
        FALLBACK
            .allocated_bytes
            .fetch_add(v.allocated_bytes, Relaxed);
        FALLBACK.freed_bytes.fetch_add(v.freed_bytes, Relaxed);
        l.hot.reset();
        l.state.set(STATE_GONE);
        return;
    }
    // SAFETY: slots are never freed; this thread owns this one now.
    let slot = unsafe { &*s };
    slot.publish(&l.hot);
    // Whoever installed thread hooks (the sampler's registry) learns of this thread now.
    l.hook_token.set(super::hooks::thread_started());
    l.slot.set(s);
    // Its first calls probe for the tokio runtime it may run tasks of (`probe_step`).
    l.probe_left.set(PROBE_CALLS);
    l.state.set(STATE_PROBING);
}
