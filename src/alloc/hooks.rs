//! Hooks on the allocator's slow path that other parts of rdebug install: a thread's start (its
//! first allocation, when it gets its counters) and its exit (when they are folded in); and a
//! probe on a thread's first few thousand allocations, to find the tokio runtime it runs tasks
//! of ([`crate::runtime::discover`] installs it).
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

/// What to call on a thread's early allocations to find the tokio runtime it runs tasks of (see
/// [`probe`]).
#[derive(Debug)]
pub(crate) struct ProbeHook {
    /// On the thread, inside an allocation call (never a free), with nested calls counted and not
    /// probed; returns true once the thread needs no more probes. Must not allocate through
    /// [`Alloc`](crate::Alloc), block, or panic.
    pub(crate) probe: fn() -> bool,
}

/// The installed probe, or null.
static PROBE: AtomicPtr<ProbeHook> = AtomicPtr::new(ptr::null_mut());

/// Installs the probe (threads still counting down their early calls start using it).
pub(crate) fn install_probe(hook: &'static ProbeHook) {
    PROBE.store(ptr::from_ref(hook).cast_mut(), Release);
}

/// Called by the allocator on one of a thread's first allocations while it is still probing:
/// whether the thread is done (false while no probe is installed).
pub(crate) fn probe() -> bool {
    let h = PROBE.load(Acquire);
    if h.is_null() {
        return false;
    }
    // SAFETY: only `&'static ProbeHook` are stored.
    (unsafe { &*h }.probe)()
}
