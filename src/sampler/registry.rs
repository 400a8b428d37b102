//! The sampler's thread registry: one entry per live thread that allocated through
//! [`Alloc`](crate::Alloc) (kernel thread id, and the CPU-time timer on that thread's clock),
//! filled by the allocator's thread hooks ([`crate::alloc::hooks`]), which this module installs
//! when the program starts.
//!
//! Entries are never freed (their memory comes from the system allocator, never from `Alloc`); a
//! thread's entry is handed back at its exit and taken over by the next new thread, so their
//! number is bounded by the most allocating threads alive at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicUsize, Ordering::*};

use crate::alloc::hooks::{self, ThreadHooks};

/// No timer in [`Entry::timer`].
pub(crate) const NO_TIMER: usize = usize::MAX;

/// One registered thread.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Kernel id of the thread that holds the entry now (0 before it is known, and once it exits).
    pub(crate) tid: AtomicI64,
    /// The sampler's timer on that thread's CPU clock (a `timer_t` as usize), or [`NO_TIMER`].
    pub(crate) timer: AtomicUsize,
    /// Held by a live thread.
    pub(crate) in_use: AtomicBool,
    /// The address of the thread's label state ([`task_labels::state_address`]), 0 if none:
    /// what a stack read from another thread copies the labels from.
    ///
    /// [`task_labels::state_address`]: super::task_labels
    pub(crate) labels_at: AtomicUsize,
    /// Next entry in the list; fixed once the entry is published.
    next: *const Entry,
}

// SAFETY: all mutable state is atomic; `next` never changes after publication.
unsafe impl Sync for Entry {}

/// Head of the list of all entries ever created.
static ENTRIES: AtomicPtr<Entry> = AtomicPtr::new(ptr::null_mut());

/// Calls `f` with every entry ever created (held by a live thread or free).
pub(crate) fn for_each_entry(mut f: impl FnMut(&Entry)) {
    let mut p: *const Entry = ENTRIES.load(Acquire);
    while !p.is_null() {
        // SAFETY: entries are never freed once published.
        let e = unsafe { &*p };
        f(e);
        p = e.next;
    }
}

/// Takes a free entry, or creates one with the system allocator. Null only if that fails.
fn acquire() -> *const Entry {
    let mut p: *const Entry = ENTRIES.load(Acquire);
    while !p.is_null() {
        // SAFETY: entries are never freed.
        let e = unsafe { &*p };
        if !e.in_use.load(Relaxed)
            && e.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            return p;
        }
        p = e.next;
    }
    // SAFETY: Entry has a non-zero size.
    let fresh = unsafe { System.alloc(Layout::new::<Entry>()) } as *mut Entry;
    if fresh.is_null() {
        return ptr::null();
    }
    let mut head = ENTRIES.load(Acquire);
    loop {
        let entry = Entry {
            tid: AtomicI64::new(0),
            timer: AtomicUsize::new(NO_TIMER),
            in_use: AtomicBool::new(true),
            labels_at: AtomicUsize::new(0),
            next: head.cast_const(),
        };
        // SAFETY: `fresh` is a valid, exclusively owned allocation for one Entry.
        unsafe { fresh.write(entry) };
        match ENTRIES.compare_exchange_weak(head, fresh, AcqRel, Acquire) {
            Ok(_) => return fresh,
            Err(now) => head = now,
        }
    }
}

/// The allocator's thread-start hook: registers the calling thread and, if the sampler runs,
/// gives it its timer. The token is the entry's address.
fn thread_started() -> usize {
    let p = acquire();
    if p.is_null() {
        return 0;
    }
    // SAFETY: entries are never freed; this thread holds this one now.
    let e = unsafe { &*p };
    e.tid.store(crate::sys::thread::current_tid(), Relaxed);
    #[cfg(feature = "pprof")]
    e.labels_at
        .store(super::task_labels::state_address(), Relaxed);
    // If the CPU-time sampler runs, this thread gets its own timer now.
    super::arm(e);
    p as usize
}

/// The allocator's thread-exit hook: deletes the thread's timer and hands its entry back.
fn thread_exiting(token: usize) {
    // SAFETY: `token` is an entry address `thread_started` returned; entries are never freed.
    let e = unsafe { &*(token as *const Entry) };
    // `tid` first: a sampler arming this entry meanwhile sees it cleared and takes back a timer
    // it made for this thread (see `arm`).
    e.tid.store(0, SeqCst);
    e.labels_at.store(0, SeqCst);
    super::disarm(e);
    e.in_use.store(false, Release);
}

static HOOKS: ThreadHooks = ThreadHooks {
    started: thread_started,
    exiting: thread_exiting,
};

/// Installs the registry's hooks before `main` (and before any thread but the main one exists),
/// so that every thread that allocates is registered, whenever the sampler starts later.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static INSTALL_AT_START: extern "C" fn() = {
    extern "C" fn install() {
        hooks::install(&HOOKS);
    }
    install
};

/// Installs the hooks (idempotent): for a start without `.init_array` having run them.
pub(crate) fn install_hooks() {
    hooks::install(&HOOKS);
}

/// Where the label state of live thread `tid` is ([`Entry::labels_at`]), 0 if unknown.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack reads (feature `pprof`)
pub(crate) fn labels_of(tid: i64) -> usize {
    let mut at = 0;
    for_each_entry(|e| {
        if at == 0 && e.in_use.load(Acquire) && e.tid.load(Acquire) == tid {
            at = e.labels_at.load(Acquire);
        }
    });
    at
}
