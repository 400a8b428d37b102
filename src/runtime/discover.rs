//! Finding the tokio runtimes rdebug is not handed (one a library builds privately), from the
//! allocator: [`Alloc`](crate::Alloc) sends a thread's first [`PROBE_CALLS`](crate::alloc::counting::PROBE_CALLS) calls out of line
//! (see [`alloc::counting`](crate::alloc)); once [`enable`] installed the probe, each allocation
//! among them runs [`probe`] on that thread. Inside a task's poll the probe takes the runtime's
//! `Handle` and hands it over through a small fixed array ([`PENDING`] slots, no lock, no
//! allocation); [`adopt`] registers what was handed over, outside the allocator (the reporter
//! thread at each wake-up, the debug server at each request).
//!
//! # Why the probe is safe where it runs
//!
//! The probe runs inside an allocation call, on any thread, at any point of tokio's own code. It
//! must not panic, allocate through [`Alloc`](crate::Alloc), block, or touch tokio's thread-local
//! context while tokio holds it borrowed.
//!
//! - **Only inside a task.** [`tokio::task::try_id`] reads a plain `Cell` of tokio's context (no
//!   borrow, cannot panic; after the context is destroyed it says `None`). It is set only while
//!   a task is polled or its future or output is dropped, so tokio's own scheduling and context
//!   switching outside tasks is never probed.
//! - **The one borrow that could panic.** [`Handle::try_current`] takes a shared borrow of the
//!   context's `RefCell<Option<scheduler::Handle>>`, which panics while it is mutably borrowed.
//!   tokio (1.47 to 1.54, `runtime/context/current.rs`) borrows it mutably in two statements
//!   only: `set_current` (`borrow_mut().replace(handle.clone())`: an `Arc` clone and a move, no
//!   allocator call) and `SetCurrentGuard::drop` (`*borrow_mut() = prev`: drops the handle it
//!   set). Every guard is made from a `&scheduler::Handle` that outlives it (`Handle::enter`'s
//!   `EnterGuard<'a>`, `enter_runtime(handle, ..)`, `Runtime::drop`'s own handle), so that drop
//!   only decrements an `Arc` that is not the last one: no free, no drop code, no allocation. So
//!   no allocator call, hence no probe, happens while the cell is mutably borrowed. Besides, only
//!   allocations probe, never frees (a drop is where an allocator call inside a borrow would
//!   come from). The unit test `the_probe_sees_the_runtime_inside_tasks_only_and_never_panics`
//!   calls the probe's look in every place a program can allocate around tokio (outside
//!   runtimes, `block_on`'s future, tasks, another runtime's `enter` guard, `block_in_place`,
//!   `spawn_blocking`, `LocalSet`, a task dropped at shutdown, thread-local destructors) and
//!   checks what it sees; `tests/runtime_discover_safety.rs` runs the real probe, from the
//!   allocator, through those paths on fresh threads under a panic hook that aborts.
//! - **No allocation.** `try_id`, `try_current` and its error, and `Handle::id` allocate nothing;
//!   the handle's clone is an `Arc` increment; the hand-over writes into a static slot. A handle
//!   the slots have no room for is dropped there: a clone of the one tokio's context holds, so
//!   again a decrement. Any call nested in the probe is counted and not probed (the thread's state
//!   says so while the probe runs).
//! - **No lock, no wait**: atomics only, and a slot taken by another thread is skipped.
//! - **Bounded**: a thread probes at most [`PROBE_CALLS`](crate::alloc::counting::PROBE_CALLS) calls and stops at the first handle it
//!   hands over (or finds pending already); the slots are [`PENDING`].

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::*};

use tokio::runtime::Handle;

use crate::alloc::hooks::{self, ProbeHook};

use super::watched;

/// Runtimes handed over and not yet registered, at most.
pub(crate) const PENDING: usize = 16;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;
const TAKING: u8 = 3;

/// One handed-over handle. `state` says who owns `handle`: the thread that moved it from
/// `EMPTY` to `WRITING` writes it and publishes it as `FULL`; the one that moves it from `FULL` to
/// `TAKING` reads it out and gives the slot back as `EMPTY`.
struct Pending {
    state: AtomicU8,
    /// The runtime's id while the slot is not empty (0: none), to hand each runtime over once.
    id: AtomicU64,
    handle: UnsafeCell<MaybeUninit<Handle>>,
}

// SAFETY: `handle` is only written by the thread that won `EMPTY -> WRITING` and only read by the
// one that won `FULL -> TAKING` (Release/Acquire on `state` orders the accesses); `Handle` is
// `Send + Sync`.
unsafe impl Sync for Pending {}

#[allow(clippy::declare_interior_mutable_const)] // each slot is its own copy
const EMPTY_SLOT: Pending = Pending {
    state: AtomicU8::new(EMPTY),
    id: AtomicU64::new(0),
    handle: UnsafeCell::new(MaybeUninit::uninit()),
};

static SLOTS: [Pending; PENDING] = [EMPTY_SLOT; PENDING];

/// Runtimes of rdebug's own (the debug server's) that are never watched, by id; the last
/// [`EXCLUDED`] of them.
const EXCLUDED: usize = 8;
static EXCLUDED_IDS: [AtomicU64; EXCLUDED] = [const { AtomicU64::new(0) }; EXCLUDED];
static NEXT_EXCLUDED: AtomicUsize = AtomicUsize::new(0);

static HOOK: ProbeHook = ProbeHook { probe };

/// Starts finding runtimes (from `init()`, once it started the reporter or the debug server,
/// which register what is found). Threads still within their first calls probe from now on;
/// the calling thread gets a new countdown (it may be about to run a runtime itself).
pub(crate) fn enable() {
    hooks::install_probe(&HOOK);
    crate::alloc::probe_again();
}

/// Never watches `handle`'s runtime (one of rdebug's own).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn exclude(handle: &Handle) {
    let k = NEXT_EXCLUDED.fetch_add(1, Relaxed) % EXCLUDED;
    EXCLUDED_IDS[k].store(id_u64(handle), Relaxed);
}

fn is_excluded(id: u64) -> bool {
    EXCLUDED_IDS.iter().any(|e| e.load(Relaxed) == id)
}

/// The probe, on a thread within its first calls, inside an allocation (see the module docs for
/// why each step is safe there). True once the thread is done: its runtime was handed over, is
/// pending already, or is one of rdebug's own.
fn probe() -> bool {
    let Some(handle) = in_a_task() else {
        return false;
    };
    let id = id_u64(&handle);
    if is_excluded(id) {
        return true;
    }
    hand_over(handle, id)
}

/// The current runtime's handle when called inside a task (its poll, or the drop of its future
/// or output); `None` elsewhere, and never a panic.
fn in_a_task() -> Option<Handle> {
    tokio::task::try_id()?;
    Handle::try_current().ok()
}

/// Puts `handle` in a free slot, unless its runtime is pending already. False when every slot is
/// taken (the thread probes again at a later call).
fn hand_over(handle: Handle, id: u64) -> bool {
    if SLOTS
        .iter()
        .any(|s| s.state.load(Acquire) != EMPTY && s.id.load(Relaxed) == id)
    {
        return true;
    }
    for s in &SLOTS {
        if s.state
            .compare_exchange(EMPTY, WRITING, Acquire, Relaxed)
            .is_ok()
        {
            // SAFETY: this thread owns the slot until it stores FULL.
            unsafe { (*s.handle.get()).write(handle) };
            s.id.store(id, Relaxed);
            s.state.store(FULL, Release);
            return true;
        }
    }
    // Every slot is taken: `handle` is dropped here, a clone of the one tokio's context holds
    // (an `Arc` decrement, never the last).
    false
}

/// Registers the runtimes handed over since the last call (outside the allocator: it locks the
/// watched list, allocates, and spawns rdebug's task into each). Cheap when there are none.
pub(crate) fn adopt() {
    for s in &SLOTS {
        if s.state
            .compare_exchange(FULL, TAKING, Acquire, Relaxed)
            .is_err()
        {
            continue;
        }
        // SAFETY: FULL means written; this thread owns the slot until it stores EMPTY.
        let handle = unsafe { (*s.handle.get()).assume_init_read() };
        let id = s.id.swap(0, Relaxed);
        s.state.store(EMPTY, Release);
        if !is_excluded(id) {
            watched::watch_found(&handle);
        }
    }
}

/// A runtime's id as a number (never 0, which marks an empty slot): the number tokio shows.
fn id_u64(handle: &Handle) -> u64 {
    crate::sampler::task_labels::id_number(handle.id()).max(1)
}

/// `schedtrace` with nothing watched when `init()` ran, and runtimes can be found: the warning
/// waits for the reporter's second SCHED tick, and is not printed if a runtime was found by then.
static WARNING: AtomicU8 = AtomicU8::new(0);
const WARNING_NONE: u8 = 0;
const WARNING_ARMED: u8 = 1;
const WARNING_ONE_TICK: u8 = 2;

/// The warning `init()` gives when nothing is watched and runtimes can be found: printed at the
/// second SCHED tick if none was found by then.
pub(crate) const UNWATCHED_FINDING: &str = "schedtrace is on but no tokio runtime is watched: \
    rdebug::init() was called outside a runtime and no runtime's task has run since; runtimes are \
    found once their tasks run, or call rdebug::watch(&handle); SCHED lines start once a runtime \
    is watched";

/// Has the reporter give [`UNWATCHED_FINDING`] at its second SCHED tick if nothing is watched then.
pub(crate) fn warn_if_none_found() {
    WARNING.store(WARNING_ARMED, Relaxed);
}

/// At a SCHED tick: whether to print [`UNWATCHED_FINDING`] now (once at most).
pub(crate) fn unwatched_warning_due(nothing_watched: bool) -> bool {
    if !nothing_watched {
        WARNING.store(WARNING_NONE, Relaxed);
        return false;
    }
    match WARNING.load(Relaxed) {
        WARNING_ARMED => {
            WARNING.store(WARNING_ONE_TICK, Relaxed);
            false
        }
        WARNING_ONE_TICK => {
            WARNING.store(WARNING_NONE, Relaxed);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_runtimes_numbers() {
        let a = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(id_u64(a.handle()).to_string(), a.handle().id().to_string());
        assert_ne!(id_u64(a.handle()), id_u64(b.handle()));
    }

    #[test]
    fn a_runtime_is_pending_once_and_adopted_outside() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let id = id_u64(rt.handle());
        assert!(hand_over(rt.handle().clone(), id));
        assert!(hand_over(rt.handle().clone(), id));
        let pending = SLOTS
            .iter()
            .filter(|s| s.state.load(Acquire) == FULL && s.id.load(Relaxed) == id)
            .count();
        assert_eq!(pending, 1);
        adopt();
        assert!(
            SLOTS.iter().all(|s| s.id.load(Relaxed) != id),
            "taken out of its slot"
        );
        assert!(watched::is_watched(rt.handle()));
        let label = watched::watched()
            .iter()
            .find(|w| w.id == rt.handle().id())
            .and_then(|w| w.label.clone());
        assert_eq!(label, Some(format!("rt{}", rt.handle().id())));
    }

    /// What the probe sees wherever a program can allocate around tokio: the runtime inside its
    /// tasks (also inside `block_in_place`, `spawn_blocking`, a `LocalSet`, another runtime's
    /// `enter` guard, and while a task is dropped at shutdown), nothing outside tasks, and no
    /// panic anywhere, including thread-local destructors after tokio's context is gone.
    #[test]
    fn the_probe_sees_the_runtime_inside_tasks_only_and_never_panics() {
        fn seen() -> Option<tokio::runtime::Id> {
            in_a_task().map(|h| h.id())
        }
        assert_eq!(seen(), None, "outside any runtime");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (me, oh) = (rt.handle().id(), other.handle().clone());
        let got = rt.block_on(async move {
            let in_block_on = seen();
            let in_task = tokio::spawn(async move {
                let plain = seen();
                let g = oh.enter();
                let entered = seen();
                drop(g);
                let after = seen();
                let in_place = tokio::task::block_in_place(seen);
                (plain, entered, after, in_place)
            })
            .await
            .unwrap();
            let blocking = tokio::task::spawn_blocking(seen).await.unwrap();
            let local = tokio::task::LocalSet::new()
                .run_until(async { tokio::task::spawn_local(async { seen() }).await.unwrap() })
                .await;
            (in_block_on, in_task, blocking, local)
        });
        let (in_block_on, (plain, entered, after, in_place), blocking, local) = got;
        assert_eq!(in_block_on, None, "block_on's future is no task");
        assert_eq!(plain, Some(me));
        assert_eq!(entered, Some(other.handle().id()));
        assert_eq!(after, Some(me));
        assert_eq!(in_place, Some(me));
        assert_eq!(blocking, Some(me));
        assert_eq!(local, Some(me));
        // A task dropped at shutdown: the probe runs in its drop and must not panic.
        struct ProbeOnDrop(std::sync::mpsc::Sender<Option<tokio::runtime::Id>>);
        impl Drop for ProbeOnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(in_a_task().map(|h| h.id()));
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (started, running) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _p = ProbeOnDrop(tx);
            let _ = started.send(());
            std::future::pending::<()>().await;
        });
        // Dropped once it runs (a task never polled is dropped without its guard).
        let _ = running.recv();
        drop(rt);
        assert!(rx.recv().is_ok(), "dropped at shutdown, without a panic");
        // A thread-local destructor running after tokio's context is gone (or before).
        struct ProbeInTlsDrop;
        impl Drop for ProbeInTlsDrop {
            fn drop(&mut self) {
                assert!(in_a_task().is_none());
            }
        }
        thread_local!(static LATE: ProbeInTlsDrop = const { ProbeInTlsDrop });
        std::thread::spawn(|| {
            LATE.with(|_| ());
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async { tokio::spawn(async { seen() }).await.unwrap() })
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_warning_waits_one_tick_and_is_dropped_once_something_is_watched() {
        warn_if_none_found();
        assert!(!unwatched_warning_due(true));
        assert!(unwatched_warning_due(true));
        assert!(!unwatched_warning_due(true));
        warn_if_none_found();
        assert!(!unwatched_warning_due(true));
        assert!(!unwatched_warning_due(false));
        assert!(!unwatched_warning_due(true));
    }
}
