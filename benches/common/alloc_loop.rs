//! The allocation loop shared by `alloc_rdebug` and `alloc_jemalloc`: included with `#[path]` by
//! both, so the two binaries differ only in their `#[global_allocator]`.
//!
//! Each thread keeps a ring of [`RING`] live objects of sizes 8..=4096 bytes and, per step,
//! replaces one picked at random: one `dealloc` plus one `alloc` through the global allocator
//! (`std::alloc::{alloc, dealloc}`, the path every `Box` and `Vec` takes).
//! The sizes and the picks come from xorshift64 seeded by the thread's index, so both binaries do
//! exactly the same work in the same order.
//!
//! [`paired`] is a cross-check that needs both allocators in one process: it calls them directly
//! (not through `#[global_allocator]`), alternating short bursts, and takes each burst pair's ratio.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::Criterion;

/// Live objects per thread.
pub const RING: usize = 1024;
/// Smallest and largest request, bytes.
pub const MIN_SIZE: usize = 8;
pub const MAX_SIZE: usize = 4096;

/// xorshift64 (Marsaglia): deterministic and allocation-free.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline(always)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The global allocator, reached through `std::alloc` (so through `__rust_alloc`).
pub struct Global;

// SAFETY: forwards to the global allocator.
unsafe impl GlobalAlloc for Global {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees.
        unsafe { std::alloc::alloc(layout) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// One thread's ring of live objects.
pub struct Ring {
    ptrs: Box<[*mut u8]>,
    sizes: Box<[usize]>,
    rng: XorShift,
}

// SAFETY: the ring owns its objects exclusively; it moves to a worker thread once.
unsafe impl Send for Ring {}

#[inline(always)]
fn layout(size: usize) -> Layout {
    // SAFETY: size > 0 and alignment 8 is a power of two; size is far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(size, 8) }
}

impl Ring {
    /// A ring filled with `RING` objects from `a`, seeded by `seed`.
    pub fn new<A: GlobalAlloc + ?Sized>(a: &A, seed: u64) -> Self {
        let mut rng = XorShift::new(seed);
        let mut ptrs = vec![std::ptr::null_mut(); RING].into_boxed_slice();
        let mut sizes = vec![0usize; RING].into_boxed_slice();
        for i in 0..RING {
            let size = MIN_SIZE + (rng.next() as usize) % (MAX_SIZE - MIN_SIZE + 1);
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(layout(size)) };
            assert!(!p.is_null());
            ptrs[i] = p;
            sizes[i] = size;
        }
        Ring { ptrs, sizes, rng }
    }

    /// `n` steps: free a random object and allocate a new one of random size in its place.
    #[inline(never)]
    pub fn run<A: GlobalAlloc + ?Sized>(&mut self, a: &A, n: u64) {
        for _ in 0..n {
            let r = self.rng.next();
            let i = (r as usize) % RING;
            let size = MIN_SIZE + ((r >> 32) as usize) % (MAX_SIZE - MIN_SIZE + 1);
            // SAFETY: ptrs[i] was allocated with sizes[i]; the new layout is non-zero.
            unsafe {
                a.dealloc(self.ptrs[i], layout(self.sizes[i]));
                let p = a.alloc(layout(size));
                assert!(!p.is_null());
                // Touch the object as a program would (and keep the pair from being elided).
                p.write(black_box(r as u8));
                self.ptrs[i] = p;
            }
            self.sizes[i] = size;
        }
    }

    pub fn free<A: GlobalAlloc + ?Sized>(self, a: &A) {
        for (&p, &s) in self.ptrs.iter().zip(self.sizes.iter()) {
            // SAFETY: allocated by `a` with this size.
            unsafe { a.dealloc(p, layout(s)) };
        }
    }
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `threads` worker threads, each with its own ring, that run `n` steps concurrently on demand.
///
/// A run's time is the mean over the threads of each one's own CPU time for its `n` steps, not
/// the wall time: on a shared machine a thread that is preempted for a while would otherwise
/// charge the other program's time slice to the allocator. Contention between the threads (cache
/// lines moving between cores, locks) still shows, since it is spent on the CPU.
struct Pool {
    n: Arc<AtomicU64>,
    cpu_ns: Arc<AtomicU64>,
    threads: u64,
    stop: Arc<AtomicBool>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let n = Arc::new(AtomicU64::new(0));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let handles = (0..threads)
            .map(|t| {
                let (n, cpu_ns, stop) = (n.clone(), cpu_ns.clone(), stop.clone());
                let (start, done) = (start.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut ring = Ring::new(&Global, t as u64 + 1);
                    loop {
                        start.wait();
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let t0 = thread_cpu_ns();
                        ring.run(&Global, n.load(Ordering::Acquire));
                        cpu_ns.fetch_add(thread_cpu_ns() - t0, Ordering::AcqRel);
                        done.wait();
                    }
                    ring.free(&Global);
                })
            })
            .collect();
        Pool {
            n,
            cpu_ns,
            threads: threads as u64,
            stop,
            start,
            done,
            handles,
        }
    }

    /// Every thread does `n` steps; returns the mean of their CPU times.
    fn run(&self, n: u64) -> Duration {
        self.n.store(n, Ordering::Release);
        self.cpu_ns.store(0, Ordering::Release);
        self.start.wait();
        self.done.wait();
        Duration::from_nanos(self.cpu_ns.load(Ordering::Acquire) / self.threads)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Registers `<group>/1thread` and `<group>/2threads`: CPU time per step, per thread.
pub fn bench_alloc(c: &mut Criterion, group: &str) {
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    for (threads, id) in [(1, "1thread"), (2, "2threads")] {
        let pool = Pool::new(threads);
        g.bench_function(id, |b| b.iter_custom(|iters| pool.run(iters)));
        drop(pool);
    }
    g.finish();
}

/// With `ALLOC_STEPS=N` in the environment, runs `N` steps on each of `ALLOC_THREADS` threads
/// (default 1; with more, each thread has its own ring and seed and they run at once) and returns
/// true (for `valgrind --tool=callgrind --toggle-collect='*Ring*run*'`, which counts instructions
/// exactly); the caller then skips criterion.
pub fn fixed_steps() -> bool {
    let Some(n) = std::env::var("ALLOC_STEPS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return false;
    };
    let threads = std::env::var("ALLOC_THREADS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    if threads == 1 {
        let mut ring = Ring::new(&Global, 1);
        ring.run(&Global, n);
        ring.free(&Global);
        return true;
    }
    let start = Barrier::new(threads as usize);
    std::thread::scope(|s| {
        for t in 0..threads {
            let start = &start;
            s.spawn(move || {
                let mut ring = Ring::new(&Global, t + 1);
                start.wait();
                ring.run(&Global, n);
                ring.free(&Global);
            });
        }
    });
    true
}

/// Steps per burst in [`paired`]: a few ms.
#[allow(dead_code)] // only alloc_rdebug has both allocators to pair
const BURST: u64 = 100_000;

/// `threads` threads each run bursts of [`BURST`] steps, alternating `base` and `test` (each with
/// its own ring, same seeds), `pairs` times, all threads in step. Returns the 25th, 50th and 75th
/// percentiles of the per-pair ratio test/base of the threads' mean CPU time per burst.
///
/// Both are called through `&dyn GlobalAlloc` (made opaque with `black_box`), so each call is a
/// real call into the allocator's own compiled code, as through `__rust_alloc`, and the compiler
/// cannot keep anything of either allocator's thread-local state in registers across the loop.
#[allow(dead_code)] // only alloc_rdebug has both allocators to pair
pub fn paired(
    base: &(dyn GlobalAlloc + Sync),
    test: &(dyn GlobalAlloc + Sync),
    threads: usize,
    pairs: usize,
) -> [f64; 3] {
    let sync = Barrier::new(threads);
    let times: Vec<(AtomicU64, AtomicU64)> = (0..pairs)
        .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
        .collect();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (sync, times) = (&sync, &times);
            scope.spawn(move || {
                let (base, test) = (black_box(base), black_box(test));
                let mut ring_a = Ring::new(base, t as u64 + 1);
                let mut ring_b = Ring::new(test, t as u64 + 1);
                ring_a.run(base, BURST); // warm up both
                ring_b.run(test, BURST);
                for (k, (ta, tb)) in times.iter().enumerate() {
                    // Alternate which goes first, so neither always follows the other.
                    let order = if k % 2 == 0 { [0, 1] } else { [1, 0] };
                    for which in order {
                        sync.wait();
                        let t0 = thread_cpu_ns();
                        if which == 0 {
                            ring_a.run(base, BURST);
                            ta.fetch_add(thread_cpu_ns() - t0, Ordering::Relaxed);
                        } else {
                            ring_b.run(test, BURST);
                            tb.fetch_add(thread_cpu_ns() - t0, Ordering::Relaxed);
                        }
                    }
                }
                ring_a.free(base);
                ring_b.free(test);
            });
        }
    });
    let mut ratios: Vec<f64> = times
        .iter()
        .map(|(a, b)| b.load(Ordering::Relaxed) as f64 / a.load(Ordering::Relaxed).max(1) as f64)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}
