//! What rdebug's reads cost, each next to its bare baseline in the same run:
//!
//! - `memstats/rdebug` vs `memstats/baseline` (jemalloc `epoch` advance + the same 13 mallctl
//!   reads by MIB, nothing else) and `memstats/baseline_rss` (that plus one `/proc/self/statm`
//!   read, to split the cost);
//! - `alloc_counters/8threads`: `rdebug::alloc_counters()` with 8 extra threads alive;
//! - `sched_stats/rdebug` vs `sched_stats/by_hand` (the same tokio metrics read by hand into a
//!   stack array) and `sched_stats/by_hand_proc` (that plus the `/proc/self/stat` thread count,
//!   from a file kept open), on a 4-worker runtime;
//! - `tick/*`: one reporter tick (`rdebug::TickForBench`) writing to `io::sink()`, in a busy
//!   program (`sched_gc`, `detail`) and an idle one (`idle`).
//!
//! jemalloc's `epoch` advance, which every `memstats()` and every allocator sample of the reporter
//! starts with, costs a few µs *per arena in use*. jemalloc gives a new thread a fresh arena
//! while every arena in use has a thread, up to 4 × cores (8 here): this bench first runs 9
//! threads at once so that every arena allowed is in use, and the ids of `memstats` and `tick` end
//! in the number of arenas (`/8`). `scripts/bench-ratios.sh` runs them again under
//! `_RJEM_MALLOC_CONF=narenas:1` and `narenas:4` for the cost per arena.
//!
//! `scripts/bench-ratios.sh` prints the ratios from `target/criterion`.

use std::ffi::{CStr, c_void};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::ptr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tikv_jemalloc_sys as sys;
use tokio::runtime::{Handle, Runtime};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(40);
    g
}

// ---- memstats baseline: epoch + the same reads by MIB ----

struct Mib {
    parts: [usize; 6],
    len: usize,
}

impl Mib {
    fn lookup(name: &CStr) -> Mib {
        let mut parts = [0usize; 6];
        let mut len = parts.len();
        // SAFETY: NUL-terminated name; `parts` has room for `len` entries.
        let rc = unsafe { sys::mallctlnametomib(name.as_ptr(), parts.as_mut_ptr(), &mut len) };
        assert_eq!(rc, 0, "{name:?}");
        Mib { parts, len }
    }

    #[inline]
    fn read<T: Copy + Default>(&self) -> T {
        let mut v = T::default();
        let mut len = size_of::<T>();
        // SAFETY: `v` is a buffer of `len` bytes.
        unsafe {
            sys::mallctlbymib(
                self.parts.as_ptr(),
                self.len,
                (&mut v as *mut T).cast::<c_void>(),
                &mut len,
                ptr::null_mut(),
                0,
            )
        };
        v
    }

    #[inline]
    fn write_u64(&self, mut v: u64) {
        // SAFETY: `v` is read by jemalloc only.
        unsafe {
            sys::mallctlbymib(
                self.parts.as_ptr(),
                self.len,
                ptr::null_mut(),
                ptr::null_mut(),
                (&mut v as *mut u64).cast::<c_void>(),
                size_of::<u64>(),
            )
        };
    }
}

/// The controls rdebug's `memstats()` reads: `epoch` then 6 `usize` + 2 page counts + 4 `u64`
/// purge counters + the background-thread count.
struct Baseline {
    epoch: Mib,
    sizes: Vec<Mib>,
    counts: Vec<Mib>,
}

impl Baseline {
    fn new() -> Self {
        let sizes = [
            c"stats.allocated",
            c"stats.active",
            c"stats.metadata",
            c"stats.resident",
            c"stats.mapped",
            c"stats.retained",
            c"stats.arenas.4096.pdirty",
            c"stats.arenas.4096.pmuzzy",
            c"stats.background_thread.num_threads",
        ];
        let counts = [
            c"stats.arenas.4096.dirty_npurge",
            c"stats.arenas.4096.muzzy_npurge",
            c"stats.arenas.4096.dirty_purged",
            c"stats.arenas.4096.muzzy_purged",
        ];
        Baseline {
            epoch: Mib::lookup(c"epoch"),
            sizes: sizes.iter().map(|n| Mib::lookup(n)).collect(),
            counts: counts.iter().map(|n| Mib::lookup(n)).collect(),
        }
    }

    #[inline]
    fn read(&self) -> u64 {
        self.epoch.write_u64(1);
        let mut acc = 0u64;
        for m in &self.sizes {
            acc = acc.wrapping_add(m.read::<usize>() as u64);
        }
        for m in &self.counts {
            acc = acc.wrapping_add(m.read::<u64>());
        }
        acc
    }
}

/// Field 2 of `/proc/self/statm`, or field 20 of `/proc/self/stat`, from a file kept open.
fn proc_field(file: &std::fs::File, after_paren: bool, n: usize) -> u64 {
    let mut buf = [0u8; 1024];
    let len = file.read_at(&mut buf, 0).unwrap_or(0);
    let mut b = &buf[..len];
    if after_paren {
        let close = b.iter().rposition(|&c| c == b')').unwrap_or(0);
        b = &b[close + 1..];
    }
    b.split(|&c| c == b' ')
        .filter(|f| !f.is_empty())
        .nth(n)
        .and_then(|f| std::str::from_utf8(f).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

fn memstats(c: &mut Criterion, arenas: u32) {
    let base = Baseline::new();
    let statm = std::fs::File::open("/proc/self/statm").unwrap();
    let _ = rdebug::memstats(); // MIB lookups, /proc files opened
    let mut g = group(c, "memstats");
    g.bench_function(format!("rdebug/{arenas}"), |b| b.iter(rdebug::memstats));
    g.bench_function(format!("baseline/{arenas}"), |b| b.iter(|| base.read()));
    g.bench_function(format!("baseline_rss/{arenas}"), |b| {
        b.iter(|| base.read().wrapping_add(proc_field(&statm, false, 1)))
    });
    g.finish();
}

fn alloc_counters(c: &mut Criterion) {
    let parked = Arc::new(Barrier::new(9));
    let release = Arc::new(Barrier::new(9));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (parked, release) = (parked.clone(), release.clone());
            std::thread::spawn(move || {
                let v = black_box(vec![i as u8; 64]); // takes a counter slot
                parked.wait();
                release.wait();
                drop(v);
            })
        })
        .collect();
    parked.wait();
    let seen = rdebug::alloc_counters();
    eprintln!(
        "alloc_counters: {} threads with a slot, {} slots",
        seen.threads, seen.slots
    );
    let mut g = group(c, "alloc_counters");
    g.bench_function("8threads", |b| b.iter(rdebug::alloc_counters));
    g.finish();
    release.wait();
    for t in threads {
        let _ = t.join();
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// What `sched_stats` returns, read by hand from the same tokio metrics into a stack array.
#[inline]
fn by_hand(h: &Handle) -> u64 {
    let m = h.metrics();
    let n = m.num_workers().min(16);
    let mut per = [(false, 0u64, 0u64, 0u64); 16];
    for (w, slot) in per.iter_mut().enumerate().take(n) {
        let pu = m.worker_park_unpark_count(w);
        *slot = (
            pu % 2 == 1,
            m.worker_park_count(w),
            pu,
            m.worker_total_busy_duration(w).as_nanos() as u64,
        );
        #[cfg(tokio_unstable)]
        {
            black_box((
                m.worker_local_queue_depth(w),
                m.worker_poll_count(w),
                m.worker_steal_count(w),
                m.worker_noop_count(w),
                m.worker_mean_poll_time(w),
            ));
        }
    }
    #[cfg(tokio_unstable)]
    black_box((
        m.num_blocking_threads(),
        m.num_idle_blocking_threads(),
        m.blocking_queue_depth(),
    ));
    let idle = per[..n].iter().filter(|p| p.0).count();
    black_box(&per);
    (n + idle + m.num_alive_tasks() + m.global_queue_depth()) as u64
}

fn sched_stats(c: &mut Criterion) {
    let rt = runtime();
    let h = rt.handle().clone();
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let _ = rdebug::sched_stats(&h);
    let mut g = group(c, "sched_stats");
    g.bench_function("rdebug", |b| b.iter(|| rdebug::sched_stats(&h)));
    g.bench_function("by_hand", |b| b.iter(|| by_hand(&h)));
    g.bench_function("by_hand_proc", |b| {
        b.iter(|| by_hand(&h).wrapping_add(proc_field(&stat, true, 17)))
    });
    g.finish();
}

/// One reporter tick. `sched_gc` and `detail` allocate (and free) one box before each tick, as a
/// busy program does between two ticks, so every tick samples jemalloc for real; `idle` does not,
/// so after two samples the reporter sees that nothing can have changed and skips jemalloc's
/// `epoch`.
fn tick(c: &mut Criterion, rt: &Runtime, arenas: u32) {
    let _enter = rt.enter(); // TickForBench watches the current runtime
    let mut g = group(c, "tick");
    for (id, items, busy) in [
        ("sched_gc", "schedtrace=1000,gctrace=1", true),
        ("detail", "schedtrace=1000,scheddetail=1,gctrace=2", true),
        ("idle", "schedtrace=1000,gctrace=1", false),
    ] {
        let config = rdebug::Config::parse_strict(items).unwrap();
        let mut t = rdebug::TickForBench::new(config, std::io::sink());
        t.tick();
        g.bench_function(format!("{id}/{arenas}"), |b| {
            b.iter(|| {
                if busy {
                    drop(black_box(Box::new(0u64)));
                }
                t.tick()
            })
        });
    }
    g.finish();
}

// ---- arenas ----

fn mallctl_read<T: Copy + Default>(name: &CStr) -> Option<T> {
    let mut v = T::default();
    let mut len = size_of::<T>();
    // SAFETY: `v` is a buffer of `len` bytes.
    let rc = unsafe {
        sys::mallctl(
            name.as_ptr(),
            (&mut v as *mut T).cast::<c_void>(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    };
    (rc == 0).then_some(v)
}

/// Arenas jemalloc has initialised (`arena.<i>.initialized` is refreshed by an `epoch` advance).
fn initialized_arenas() -> u32 {
    Mib::lookup(c"epoch").write_u64(1);
    let n: u32 = mallctl_read(c"arenas.narenas").unwrap_or(0);
    (0..n)
        .filter(|i| {
            let name = std::ffi::CString::new(format!("arena.{i}.initialized")).unwrap();
            mallctl_read::<bool>(&name).unwrap_or(false)
        })
        .count() as u32
}

/// Runs `k` threads at once, each allocating, so that jemalloc puts as many arenas in use as it
/// allows (a new thread gets a fresh arena while every arena has a thread); returns the count.
fn fill_arenas(k: usize) -> u32 {
    let all_in = Arc::new(Barrier::new(k));
    let threads: Vec<_> = (0..k)
        .map(|_| {
            let all_in = all_in.clone();
            std::thread::spawn(move || {
                let v = black_box(vec![1u8; 4096]);
                all_in.wait();
                drop(v);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = initialized_arenas();
    eprintln!("arenas in use: {n}");
    n
}

fn all(c: &mut Criterion) {
    alloc_counters(c);
    sched_stats(c);
    let arenas = fill_arenas(9);
    let rt = runtime();
    memstats(c, arenas);
    tick(c, &rt, arenas);
}

criterion_group!(benches, all);
criterion_main!(benches);
