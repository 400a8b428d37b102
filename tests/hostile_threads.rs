//! 10,000 short-lived threads that allocate: the counting allocator's totals stay exact, its
//! per-thread counter slots stay bounded by the most threads alive at once, nothing is counted
//! twice, and a concurrent reader never sees a total go backwards.
//!
//! Ground truth: each thread allocates and frees `BOXES` boxes of `SIZE` bytes, plus one
//! `SIZE`-byte buffer in a thread-local whose destructor runs after rdebug has handed the thread's
//! slot back (so that free lands on the shared fallback counters). The same run with the
//! allocations left out measures what spawning and joining cost; the difference must be exactly
//! `THREADS * (BOXES + 1)` allocations and frees of `THREADS * (BOXES + 1) * SIZE` bytes.

mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const THREADS: u64 = 10_000;
/// Threads alive at once, at most. std keeps a `BTreeMap` with one entry per live thread (for its
/// stack-overflow handler); past 11 entries its nodes split and merge, allocating a number of
/// times that depends on the interleaving. With 8 churning threads, the main thread, the test
/// thread and the reader, it stays one leaf and spawning costs the same every time, which is what
/// makes an exact ground truth possible. (rdebug counts those extra allocations correctly too;
/// they are just not known in advance.)
const WINDOW: usize = 8;
const BOXES: u64 = 10;
const SIZE: usize = 1000;

thread_local! {
    /// Touched first (its destructor is registered before rdebug's), filled last: freed in a
    /// thread-local destructor that runs after rdebug's own.
    static KEEP: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn body(allocate: bool) {
    KEEP.with(|k| std::hint::black_box(k.borrow().len()));
    if !allocate {
        return;
    }
    for i in 0..BOXES {
        let b = std::hint::black_box(Box::new([i as u8; SIZE]));
        drop(b);
    }
    KEEP.with(|k| k.borrow_mut().reserve_exact(SIZE));
}

/// Totals read through `memstats()` (the public figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    total_alloc: u64,
    mallocs: u64,
    frees: u64,
    heap_objects: u64,
}

fn totals() -> Totals {
    let m = rdebug::memstats();
    Totals {
        total_alloc: m.total_alloc,
        mallocs: m.mallocs,
        frees: m.frees,
        heap_objects: m.heap_objects,
    }
}

/// Runs `n` threads, at most `window` alive at once; returns the change in the totals.
fn churn(
    n: u64,
    window: usize,
    allocate: bool,
    handles: &mut VecDeque<std::thread::JoinHandle<()>>,
) -> Totals {
    let before = totals();
    for _ in 0..n {
        if handles.len() == window {
            handles.pop_front().unwrap().join().expect("thread");
        }
        handles.push_back(std::thread::spawn(move || body(allocate)));
    }
    while let Some(h) = handles.pop_front() {
        h.join().expect("thread");
    }
    let after = totals();
    Totals {
        total_alloc: after.total_alloc - before.total_alloc,
        mallocs: after.mallocs - before.mallocs,
        frees: after.frees - before.frees,
        heap_objects: after.heap_objects.wrapping_sub(before.heap_objects),
    }
}

#[test]
fn ten_thousand_short_lived_threads_are_counted_exactly() {
    let name = support::test_name!();
    if is_child(name) {
        // Warm up: the first reads set up rdebug's own state.
        let _ = (totals(), totals());
        // Room for the handles, so the churn itself allocates the same in both runs.
        let mut handles = VecDeque::with_capacity(WINDOW);
        // A reader that sums the counters all the time: totals must never go backwards while
        // slots change hands.
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, ready) = (stop.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut prev = rdebug::alloc_counters();
                ready.store(true, Relaxed);
                while !stop.load(Relaxed) {
                    let c = rdebug::alloc_counters();
                    assert!(
                        c.allocs >= prev.allocs
                            && c.frees >= prev.frees
                            && c.allocated_bytes >= prev.allocated_bytes
                            && c.freed_bytes >= prev.freed_bytes,
                        "a total went backwards: {prev:?} then {c:?}"
                    );
                    prev = c;
                    reads += 1;
                }
                reads
            })
        };
        while !ready.load(Relaxed) {
            std::thread::yield_now();
        }
        // One round of spawning first, so std's own first-time set-up is out of the way.
        for _ in 0..WINDOW {
            handles.push_back(std::thread::spawn(|| body(true)));
        }
        while let Some(h) = handles.pop_front() {
            h.join().expect("thread");
        }
        let quiet_a = totals();
        let quiet_b = totals();
        let start = rdebug::alloc_counters();
        let t0 = Instant::now();
        let base = churn(THREADS, WINDOW, false, &mut handles);
        let with = churn(THREADS, WINDOW, true, &mut handles);
        let took = t0.elapsed();
        let end = rdebug::alloc_counters();
        stop.store(true, Relaxed);
        let reads = reader.join().expect("reader");
        println!(
            "RESULT base={base:?} with={with:?} slots={}->{} threads={}->{} reads={reads} ms={}",
            start.slots,
            end.slots,
            start.threads,
            end.threads,
            took.as_millis()
        );
        let per_thread = BOXES + 1;
        assert_eq!(quiet_a, quiet_b, "reading memstats() allocated");
        assert_eq!(
            with.mallocs - base.mallocs,
            THREADS * per_thread,
            "mallocs: {with:?} vs {base:?}"
        );
        assert_eq!(
            with.frees - base.frees,
            THREADS * per_thread,
            "frees: {with:?} vs {base:?}"
        );
        assert_eq!(
            with.total_alloc - base.total_alloc,
            THREADS * per_thread * SIZE as u64,
            "total_alloc: {with:?} vs {base:?}"
        );
        assert_eq!(with.heap_objects, base.heap_objects, "live objects changed");
        assert_eq!(
            base.heap_objects, 0,
            "spawning and joining leaves objects behind"
        );
        // Slots: at most one per thread alive at once: the window, the main thread, the test
        // thread and the reader.
        assert!(
            end.slots <= WINDOW as u64 + 3,
            "{} slots for {WINDOW} threads at once",
            end.slots,
        );
        assert!(reads >= 10, "the reader barely ran");
        // Wider: 64 threads at once (std's own allocations are no longer known in advance, but
        // everything allocated is freed), then back to a few: the slots stay at the most alive
        // at once.
        let mut handles = VecDeque::with_capacity(64);
        let wide = churn(2_000, 64, true, &mut handles);
        let after_wide = rdebug::alloc_counters();
        let narrow = churn(2_000, 4, true, &mut handles);
        let after_narrow = rdebug::alloc_counters();
        println!(
            "WIDE {wide:?} slots={} NARROW {narrow:?} slots={}",
            after_wide.slots, after_narrow.slots
        );
        assert_eq!((wide.heap_objects, narrow.heap_objects), (0, 0));
        assert_eq!(wide.mallocs, wide.frees);
        assert!(wide.mallocs >= 2_000 * (BOXES + 1));
        assert!(after_wide.slots <= 64 + 2, "{} slots", after_wide.slots);
        assert_eq!(
            after_narrow.slots, after_wide.slots,
            "slots were not reused"
        );
        return;
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(120));
    print!("{}", out.stdout);
    out.assert_success();
    assert!(out.stdout.contains("RESULT "), "{}", out.stdout);
}
