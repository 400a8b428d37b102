//! The unwinder of code that may run at any moment on any thread: the heap profiler's stack
//! hook (inside jemalloc's allocation path) and the answer to a stack request (in the `SIGPROF`
//! handler). It follows the loaded objects as CPU profiles' does: when the loader's generation
//! ([`crate::sys::loaded::generation`]) has changed, [`refresh`] publishes the unwinder built
//! for the objects loaded now (a library loaded with `dlopen` is then unwound by its own
//! tables, not by frame pointers).
//!
//! Building an unwinder allocates, so it is never built where it is used: [`refresh`] runs on
//! rdebug's own threads (the stack hook's installation at `init`, each heap profile, each CPU
//! profile, each stack request) and swaps it in. Users ([`hold`]) take no lock and allocate
//! nothing; an unwinder they may still hold is never freed.
//!
//! Two slots, each with a count of its users: a user notes itself in the current slot's count
//! and checks that the slot is still the current one (else it steps back and looks again), so
//! once the publisher has made the other slot current, the old slot's count only falls. The
//! publisher frees the old unwinder when that count reaches 0 (it waits at most
//! [`DRAIN_WAIT`]; a user that is slower keeps it until the next swap, which waits again before
//! it reuses the slot). At most two unwinders are held at once, and each is the one CPU
//! profiles share ([`super::unwind::unwinder`]), not a copy.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::unwind::Unwinder;

/// How long [`refresh`] waits for the users of an unwinder it replaces.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

struct Published {
    slots: [AtomicPtr<Unwinder>; 2],
    users: [AtomicUsize; 2],
    current: AtomicUsize,
    /// The loader generation the current slot's unwinder was built for (`u64::MAX`: none yet).
    generation: AtomicU64,
}

/// The process's one published hook unwinder (module docs). Slots hold `Arc::into_raw`
/// pointers, or null.
static PUBLISHED: Published = Published {
    slots: [
        AtomicPtr::new(std::ptr::null_mut()),
        AtomicPtr::new(std::ptr::null_mut()),
    ],
    users: [AtomicUsize::new(0), AtomicUsize::new(0)],
    current: AtomicUsize::new(0),
    generation: AtomicU64::new(u64::MAX),
};

/// The published unwinder, held: its slot counts this user until it is dropped.
pub(crate) struct Held {
    slot: usize,
    unwinder: &'static Unwinder,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("slot", &self.slot).finish()
    }
}

impl std::ops::Deref for Held {
    type Target = Unwinder;
    fn deref(&self) -> &Unwinder {
        self.unwinder
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        PUBLISHED.users[self.slot].fetch_sub(1, SeqCst);
    }
}

/// The published unwinder, held until the result is dropped; `None` before the first
/// [`refresh`]. No allocation, no lock, no waiting on the publisher: for the stack hook and
/// the `SIGPROF` handler (async-signal-safe). Drop it soon: [`refresh`] waits for it.
pub(crate) fn hold() -> Option<Held> {
    let p = &PUBLISHED;
    let slot = loop {
        let i = p.current.load(SeqCst) & 1;
        p.users[i].fetch_add(1, SeqCst);
        if p.current.load(SeqCst) & 1 == i {
            break i;
        }
        // The publisher swapped slots meanwhile: this one may be on its way out.
        p.users[i].fetch_sub(1, SeqCst);
    };
    let u = p.slots[slot].load(SeqCst);
    if u.is_null() {
        p.users[slot].fetch_sub(1, SeqCst);
        return None;
    }
    // SAFETY: an `Arc::into_raw` pointer the publisher frees only once this slot is not the
    // current one and its count is 0; this user is counted in it (until `Held` is dropped) and
    // saw it current after it was counted. `'static` is what `Held` hands out, never longer.
    let unwinder = unsafe { &*u };
    Some(Held { slot, unwinder })
}

/// Publishes the unwinder for the objects loaded now, when none is published or the loader's
/// generation changed since. Allocates and may take tens of milliseconds (the first build):
/// rdebug's own threads only, never inside the allocator or a handler. Waits at most
/// [`DRAIN_WAIT`] twice for users of the unwinders it replaces.
pub(crate) fn refresh() {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let p = &PUBLISHED;
    let generation = crate::sys::loaded::generation();
    if p.generation.load(SeqCst) == generation {
        return;
    }
    let _one = crate::sync::lock(&ONE_AT_A_TIME);
    if p.generation.load(SeqCst) == generation {
        return;
    }
    let old = p.current.load(SeqCst) & 1;
    let next = old ^ 1;
    // The other slot may still hold the unwinder two swaps back, if its users were slow then.
    if !drained(next) {
        return;
    }
    let fresh = Arc::into_raw(super::unwind::unwinder()).cast_mut();
    free(p.slots[next].swap(fresh, SeqCst));
    p.current.store(next, SeqCst);
    p.generation.store(generation, SeqCst);
    // Users that come now count in `next`; those in `old` only leave.
    if drained(old) {
        free(p.slots[old].swap(std::ptr::null_mut(), SeqCst));
    }
}

/// Whether slot `i`'s users are gone (waiting up to [`DRAIN_WAIT`]).
fn drained(i: usize) -> bool {
    let end = Instant::now() + DRAIN_WAIT;
    while PUBLISHED.users[i].load(SeqCst) != 0 {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    true
}

/// Drops a slot's `Arc::into_raw` pointer (null: nothing).
fn free(u: *mut Unwinder) {
    if !u.is_null() {
        // SAFETY: made by `Arc::into_raw` in `refresh`, taken out of its slot by the caller
        // once no user could hold it.
        drop(unsafe { Arc::from_raw(u.cast_const()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_keep_an_unwinder_alive_while_it_is_swapped_out() {
        refresh();
        let first = hold().map(|u| &*u as *const Unwinder as usize);
        assert!(first.is_some(), "published");
        // Pretend the loader moved on, while a user holds the current slot.
        let held = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let user = s.spawn(move || {
                let u = hold().expect("published");
                tx.send(()).unwrap();
                done_rx.recv().unwrap();
                &*u as *const Unwinder as usize
            });
            rx.recv().unwrap();
            PUBLISHED.generation.store(u64::MAX - 1, SeqCst);
            let t = Instant::now();
            refresh();
            // The old slot's user was waited for, then left in place.
            assert!(t.elapsed() >= DRAIN_WAIT, "{:?}", t.elapsed());
            let old = PUBLISHED.current.load(SeqCst) ^ 1;
            assert!(!PUBLISHED.slots[old].load(SeqCst).is_null(), "freed in use");
            done_tx.send(()).unwrap();
            user.join().unwrap()
        });
        assert_eq!(Some(held), first);
        assert!(hold().is_some());
        assert_eq!(
            PUBLISHED.generation.load(SeqCst),
            crate::sys::loaded::generation()
        );
    }
}
