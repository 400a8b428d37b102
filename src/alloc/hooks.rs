//! Hooks on the allocator's slow path that other parts of rdebug install: a thread's start (its
//! first allocation, when it gets its counters) and its exit (when they are folded in).
//!
//! The allocator only counts; what else wants to know about threads (the sampler's thread
//! registry, for per-thread CPU-time timers) installs a [`ThreadHooks`] here. A hook runs on the
//! thread itself, out of the fast path, and must not allocate through [`Alloc`](crate::Alloc)
//! (the system allocator is fine). The token `started` returns is kept by the thread and handed
//! back to `exiting`; 0 means "nothing to hand back".

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering::*};

/// What to call at a thread's first allocation and at its exit.
#[derive(Debug)]
pub(crate) struct ThreadHooks {
    /// On the new thread, at its first allocation; returns a token for `exiting` (0: none).
    pub(crate) started: fn() -> usize,
    /// On the exiting thread, with the token `started` returned (never called with 0).
    pub(crate) exiting: fn(usize),
}

/// The installed hooks, or null.
static HOOKS: AtomicPtr<ThreadHooks> = AtomicPtr::new(ptr::null_mut());

/// Installs `hooks` (once, before threads allocate: later threads alone see them).
pub(crate) fn install(hooks: &'static ThreadHooks) {
    HOOKS.store(ptr::from_ref(hooks).cast_mut(), Release);
}

/// Called by the allocator on a thread's first allocation: the token to keep.
pub(crate) fn thread_started() -> usize {
    let h = HOOKS.load(Acquire);
    if h.is_null() {
        return 0;
    }
    // SAFETY: only `&'static ThreadHooks` are stored.
    (unsafe { &*h }.started)()
}

/// Called by the allocator when a thread that kept `token` exits.
pub(crate) fn thread_exiting(token: usize) {
    let h = HOOKS.load(Acquire);
    if token == 0 || h.is_null() {
        return;
    }
    // SAFETY: only `&'static ThreadHooks` are stored.
    (unsafe { &*h }.exiting)(token);
}
