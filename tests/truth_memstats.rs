//! MemStats fields agree with each other at every read, as Go's do (`heap_alloc <= heap_inuse`
//! among them, with no allowance): thousands of reads under churn from four threads and a fifth
//! that allocates and frees a 32 MiB block, from the very first read, with and without gctrace,
//! with free_os_memory() in between.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Largest object the churn threads allocate (above jemalloc's thread-cache limit, so frees of
/// large ones go straight back to the arena and move `heap_inuse` at once).
const MAX_OBJECT: usize = 64 << 10;
/// Threads churning while the main thread reads.
const CHURN_THREADS: u32 = 4;

fn churn(stop: &AtomicBool, seed: u32) {
    let mut x = seed | 1;
    let mut held: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Relaxed) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let size = 1 + x as usize % MAX_OBJECT;
        if held.len() >= 128 {
            held.swap_remove(x as usize % 128);
        }
        let mut v = Vec::with_capacity(size);
        v.push(1u8);
        held.push(v);
        if x % 16 == 0
            && let Some(v) = held.last_mut()
        {
            v.reserve(size); // a realloc
        }
        if x % 64 == 0 {
            // Churn, but leave the reader some CPU on a 2-core machine.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Allocates and frees a 32 MiB block (never touched) again and again: a free landing between
/// the counters' read and jemalloc's moves `heap_inuse` by 32 MiB at once.
fn big_blocks(stop: &AtomicBool) {
    while !stop.load(Relaxed) {
        let v: Vec<u8> = Vec::with_capacity(32 << 20);
        drop(std::hint::black_box(v));
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Every invariant of one read, and the monotonic ones against the previous read.
fn check(m: &rdebug::MemStats, prev: Option<&rdebug::MemStats>, i: usize) -> Result<(), String> {
    let fail = |what: &str| Err(format!("read {i}: {what}: {m:?}"));
    if m.alloc != m.heap_alloc {
        return fail("alloc != heap_alloc");
    }
    if m.alloc > m.total_alloc {
        return fail("alloc > total_alloc");
    }
    if m.heap_objects != m.mallocs - m.frees {
        return fail("heap_objects != mallocs - frees");
    }
    if m.heap_inuse + m.heap_idle != m.heap_sys {
        return fail("heap_inuse + heap_idle != heap_sys");
    }
    if m.heap_sys > m.sys {
        return fail("heap_sys > sys");
    }
    if m.heap_released > m.heap_idle {
        return fail("heap_released > heap_idle");
    }
    // Go's guarantee, with no allowance for objects allocated or freed while the read runs.
    if m.heap_alloc > m.heap_inuse {
        return fail("heap_alloc > heap_inuse");
    }
    if !(0.0..=1.0).contains(&m.gc_cpu_fraction) {
        return fail("gc_cpu_fraction outside 0..=1");
    }
    if let Some(p) = prev {
        let back = [
            ("total_alloc", p.total_alloc, m.total_alloc),
            ("mallocs", p.mallocs, m.mallocs),
            ("frees", p.frees, m.frees),
            ("num_gc", p.num_gc, m.num_gc),
            ("num_forced_gc", p.num_forced_gc, m.num_forced_gc),
            ("pause_total_ns", p.pause_total_ns, m.pause_total_ns),
            ("purged", p.purged, m.purged),
        ];
        for (name, a, b) in back {
            if b < a {
                return fail(&format!("{name} went backwards from {a} to {b}"));
            }
        }
    }
    Ok(())
}

fn scenario() {
    // The very first read, before anything else in the process.
    let first = rdebug::memstats();
    let mut problems = Vec::new();
    if let Err(e) = check(&first, None, 0) {
        problems.push(e);
    }
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    let stop = AtomicBool::new(false);
    let mut reads = 1usize;
    std::thread::scope(|s| {
        for t in 0..CHURN_THREADS {
            let stop = &stop;
            s.spawn(move || churn(stop, 0x9E37 + t));
        }
        s.spawn(|| big_blocks(&stop));
        let mut prev = first;
        let start = Instant::now();
        // Thousands of reads; bounded in time on a loaded machine.
        while reads < 3000 && start.elapsed() < Duration::from_secs(20) {
            let m = rdebug::memstats();
            if let Err(e) = check(&m, Some(&prev), reads)
                && problems.len() < 5
            {
                problems.push(e);
            }
            reads += 1;
            if reads % 500 == 0 {
                rdebug::free_os_memory();
            }
            prev = m;
        }
        stop.store(true, Relaxed);
    });
    let last = rdebug::memstats();
    println!(
        "RESULT reads={reads} forced={} num_gc={}",
        last.num_forced_gc, last.num_gc
    );
    for p in &problems {
        println!("PROBLEM {p}");
    }
}

fn run(name: &str, env: &[(&str, &str)]) {
    let out = run_child(name, env, Duration::from_secs(60));
    out.assert_success();
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("PROBLEM"))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let line = support::result_line(&out.stdout);
    assert!(support::num(line, "reads") >= 2000, "{line}");
    assert!(support::num(line, "forced") >= 2, "{line}");
}

#[test]
fn memstats_fields_agree_at_every_read_without_a_trace() {
    let name = support::test_name!();
    if is_child(name) {
        scenario();
        return;
    }
    run(name, support::NO_ENV);
}

#[test]
fn memstats_fields_agree_at_every_read_with_gctrace() {
    let name = support::test_name!();
    if is_child(name) {
        scenario();
        return;
    }
    run(name, &[("RDEBUG", "gctrace=2,gcpoll=5")]);
}
