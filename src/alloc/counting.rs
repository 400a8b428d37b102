//! [`Alloc`]: jemalloc plus the per-thread counters of [`slots`](super::slots).
//!
//! The fast path, taken by all calls but about 1 in 256, is one thread-local countdown (which also
//! says the thread has a slot) and two adds to the thread's slot around jemalloc's own call. The
//! thread's first call, its sampled (timed) calls and calls made without a slot go through an
//! out-of-line slow path. What an alloc+free pair costs, and what was tried to make it cheaper, is
//! in `BENCHMARKS.md`.
//!
//! A call made while the thread's slot is being set up, or after its thread-local storage was torn
//! down, is counted in one shared fallback slot with atomic adds: rare, and still exact.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::Instant;

use tikv_jemallocator::Jemalloc;

use super::slots::{FALLBACK, Slot, acquire_slot, add_owned};

/// jemalloc with the counters rdebug needs; install it as the global allocator.
///
/// It forwards every call to [`tikv_jemallocator::Jemalloc`] and adds, per thread and without any
/// shared atomic on the hot path: bytes and calls allocated and freed, and a sampled estimate of
/// the CPU time spent inside allocator calls (a random ~1 in 256 calls is timed with the monotonic
/// clock, the clock's own cost is calibrated out, and the time is scaled up by the number of calls
/// the sample stands for).
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
        let Some(s) = fast_slot() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.alloc_slow(layout, false) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            s.add_alloc(layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some(s) = fast_slot() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.alloc_slow(layout, true) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            s.add_alloc(layout.size());
        }
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match fast_slot() {
            Some(s) => {
                // A free cannot fail: counting it first lets jemalloc's call be the last one.
                s.add_free(layout.size());
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { self.inner.dealloc(ptr, layout) }
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { self.dealloc_slow(ptr, layout) },
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(s) = fast_slot() else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.realloc_slow(ptr, layout, new_size) };
        };
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A reallocation is counted as what it is: the old block freed, a new one allocated.
            s.add_free(layout.size());
            s.add_alloc(new_size);
        }
        p
    }
}

/// The slow paths: a thread's first call, a sampled (timed) call, and calls made while the thread
/// has no slot of its own (being set up, or torn down). Kept out of line so the fast path stays a
/// few instructions around jemalloc's own call.
impl Alloc {
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let started = slow_start();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        };
        sample_end(started);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        let started = slow_start();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        sample_end(started);
        count_free(layout.size());
    }

    #[cold]
    #[inline(never)]
    unsafe fn realloc_slow(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let started = slow_start();
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        sample_end(started);
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

/// Cost of one `Instant::now()` pair in ns, measured once; `u64::MAX` until then.
static CLOCK_COST_NS: AtomicU64 = AtomicU64::new(u64::MAX);

const STATE_NEW: u8 = 0;
const STATE_SETTING_UP: u8 = 1;
const STATE_READY: u8 = 2;
const STATE_GONE: u8 = 3;

/// Mean number of allocator calls between two timed ones.
const SAMPLE_MEAN: u32 = 256;

/// Per-thread state. `const`-initialised and without `Drop`, so reaching it never allocates and
/// never registers a destructor, and it stays readable while the thread is being torn down.
///
/// One countdown gates the fast path: above 1, the call is neither timed nor the thread's first,
/// and `slot` is set. It starts at 0 (so the first call sets the thread up), is set above 1 only
/// once the slot is ready, and back to 0 when the thread hands its slot back.
struct Local {
    /// Calls left until the next timed one (0 while the thread has no slot of its own).
    countdown: Cell<u32>,
    slot: Cell<*const Slot>,
    state: Cell<u8>,
    /// Calls the next sample stands for.
    period: Cell<u32>,
    rng: Cell<u32>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            countdown: Cell::new(0),
            slot: Cell::new(ptr::null()),
            state: Cell::new(STATE_NEW),
            period: Cell::new(SAMPLE_MEAN),
            rng: Cell::new(0),
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
            l.countdown.set(0);
            let p = l.slot.replace(ptr::null());
            l.state.set(STATE_GONE);
            if !p.is_null() {
                // SAFETY: slots are never freed.
                unsafe { &*p }.in_use.store(false, Release);
            }
        });
    }
}

/// The fast path: this thread's slot, with the sampling countdown moved on; `None` when the call
/// must take the slow path (timed, the thread's first, or the thread has no slot of its own).
#[inline(always)]
fn fast_slot() -> Option<&'static Slot> {
    LOCAL
        .try_with(|l| {
            let c = l.countdown.get();
            if c > 1 {
                l.countdown.set(c - 1);
                let p = l.slot.get();
                // SAFETY: a countdown above 1 means the slot is set (see `Local`); slots are
                // never freed, and only this thread writes this one.
                unsafe {
                    std::hint::assert_unchecked(!p.is_null());
                    Some(&*p)
                }
            } else {
                None
            }
        })
        .ok()
        .flatten()
}

/// The slow path's start: sets the thread up on its first call, and returns the start time when
/// this call is the sampled one (the countdown ran out while the thread owns a slot).
#[inline]
fn slow_start() -> Option<Instant> {
    let due = LOCAL
        .try_with(|l| match l.state.get() {
            STATE_NEW => {
                set_up(l);
                false
            }
            STATE_READY => !l.slot.get().is_null(),
            _ => false,
        })
        .unwrap_or(false);
    if due { Some(Instant::now()) } else { None }
}

/// Takes a slot for this thread and arms the fast path.
#[cold]
fn set_up(l: &Local) {
    l.state.set(STATE_SETTING_UP);
    let s = acquire_slot();
    l.slot.set(s);
    l.rng.set(seed(s));
    // Touching RELEASE registers its destructor; if that allocates, the nested calls see a
    // countdown of 0 and STATE_SETTING_UP: they take the slow path, untimed, and are counted.
    let _ = RELEASE.try_with(|_| ());
    l.state.set(STATE_READY);
    if !s.is_null() {
        let first = next_period(&l.rng);
        l.period.set(first);
        l.countdown.set(first);
    }
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

#[inline]
fn sample_end(started: Option<Instant>) {
    if let Some(t0) = started {
        record_sample(t0);
    }
}

#[cold]
#[inline(never)]
fn record_sample(t0: Instant) {
    let elapsed = t0.elapsed().as_nanos() as u64;
    let cost = clock_cost_ns();
    let _ = LOCAL.try_with(|l| {
        let p = l.slot.get();
        if p.is_null() {
            return;
        }
        let period = l.period.get();
        let next = next_period(&l.rng);
        l.period.set(next);
        l.countdown.set(next);
        let estimate = elapsed
            .saturating_sub(cost)
            .saturating_mul(u64::from(period));
        // SAFETY: slots are never freed; only this thread writes this one.
        add_owned(&unsafe { &*p }.cpu_ns, estimate);
    });
}

/// Next gap between samples: uniform in `1..=2*SAMPLE_MEAN-1`, so the mean is `SAMPLE_MEAN`.
fn next_period(rng: &Cell<u32>) -> u32 {
    // xorshift32
    let mut x = rng.get();
    if x == 0 {
        x = 0x9E37_79B9;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng.set(x);
    1 + x % (2 * SAMPLE_MEAN - 1)
}

fn seed(s: *const Slot) -> u32 {
    let mut x = (s as usize as u64) ^ (std::process::id() as u64).rotate_left(32);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 32) as u32 | 1
}

/// The cost of reading the clock twice, measured once (minimum of 64 tries).
fn clock_cost_ns() -> u64 {
    let c = CLOCK_COST_NS.load(Relaxed);
    if c != u64::MAX {
        return c;
    }
    let mut best = u64::MAX;
    for _ in 0..64 {
        let t0 = Instant::now();
        best = best.min(t0.elapsed().as_nanos() as u64);
    }
    CLOCK_COST_NS.store(best, Relaxed);
    best
}
