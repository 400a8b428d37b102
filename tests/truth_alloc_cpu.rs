//! Allocator CPU against a ground truth the test makes: a thread that does almost nothing but
//! allocator calls (its own CPU time, read with `CLOCK_THREAD_CPUTIME_ID`, is the truth) beside a
//! thread that spins without allocating. rdebug's figure must be within a factor of 1.5 of the
//! truth, with and without a third thread forcing preemption on the same core, and never above
//! the process's CPU time.

mod support;

use std::time::{Duration, Instant};

use support::burn::cpu_ns;
use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Pins the calling thread to CPU `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; the calls take valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Allocator calls and almost nothing else: 128 KiB..1 MiB blocks straight through the global
/// allocator (jemalloc's large classes: each call a trip through its extent code, ~1 µs, so the
/// loop around it is small even unoptimised), never touched, until this thread has used `cpu` of
/// CPU time (80 samples' worth: ~11% sampling error) or 20 s have passed on a loaded machine.
/// Returns this thread's CPU time, ns.
#[inline(never)]
fn allocate_only(cpu: Duration, pinned: bool) -> u64 {
    use std::alloc::{Layout, alloc, dealloc};
    if pinned {
        pin(0);
    }
    let t0 = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    let start = Instant::now();
    let used = || Duration::from_nanos(cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0);
    let mut x: u32 = 7;
    let mut held: [(*mut u8, usize); 16] = [(std::ptr::null_mut(), 0); 16];
    while used() < cpu && start.elapsed() < Duration::from_secs(20) {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let slot = &mut held[x as usize % 16];
            if !slot.0.is_null() {
                // SAFETY: allocated below with this size and alignment.
                unsafe { dealloc(slot.0, Layout::from_size_align_unchecked(slot.1, 8)) };
            }
            let size = (128 << 10) + (x as usize % (896 << 10));
            // SAFETY: a non-zero size and a valid alignment.
            *slot = (
                unsafe { alloc(Layout::from_size_align_unchecked(size, 8)) },
                size,
            );
        }
    }
    for (p, size) in held {
        if !p.is_null() {
            // SAFETY: as above.
            unsafe { dealloc(p, Layout::from_size_align_unchecked(size, 8)) };
        }
    }
    cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0
}

/// Spins without allocating until `stop`.
fn spin(stop: &std::sync::atomic::AtomicBool, pinned: bool) {
    if pinned {
        pin(0);
    }
    let mut x = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// The scenario: `RESULT truth_ns rdebug_ns process_ns fraction_x1e6`.
fn scenario(preempted: bool) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let _ = rdebug::memstats(); // starts the sampler
    let before = rdebug::alloc_counters().alloc_cpu_ns;
    let p0 = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    let stop = AtomicBool::new(false);
    let truth = std::thread::scope(|s| {
        // Without preemption the spinner has the other core; with it, spinner and allocator share
        // CPU 0 and the scheduler preempts one for the other all the time.
        s.spawn(|| spin(&stop, preempted));
        let a = s.spawn(|| allocate_only(Duration::from_millis(800), preempted));
        let truth = a.join().expect("allocator thread");
        stop.store(true, Relaxed);
        truth
    });
    let process = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - p0;
    let measured = rdebug::alloc_counters().alloc_cpu_ns - before;
    let fraction = rdebug::memstats().gc_cpu_fraction;
    println!(
        "RESULT {truth} {measured} {process} {}",
        (fraction * 1e6) as u64
    );
}

fn check(name: &str) {
    let out = run_child(name, NO_ENV, Duration::from_secs(60));
    out.assert_success();
    let v = support::result_numbers(&out.stdout);
    let (truth, measured, process, fraction) = (v[0] as f64, v[1] as f64, v[2] as f64, v[3]);
    let ratio = measured / truth;
    eprintln!(
        "{name}: truth {:.0} ms, rdebug {:.0} ms (ratio {ratio:.2}), process {:.0} ms",
        truth / 1e6,
        measured / 1e6,
        process / 1e6
    );
    assert!(
        truth > 300e6,
        "the allocating thread ran too little: {truth} ns"
    );
    assert!(
        (1.0 / 1.5..=1.5).contains(&ratio),
        "allocator CPU {measured} ns vs truth {truth} ns: ratio {ratio:.2}"
    );
    assert!(
        measured <= process,
        "allocator CPU {measured} ns above the process's CPU time {process} ns"
    );
    assert!(fraction <= 1_000_000, "gc_cpu_fraction above 1: {fraction}");
}

#[test]
fn allocator_cpu_is_the_allocating_threads_cpu_within_1_5x() {
    let name = support::test_name!();
    if is_child(name) {
        scenario(false);
        return;
    }
    check(name);
}

#[test]
fn allocator_cpu_stays_true_when_a_spinning_thread_preempts_it() {
    let name = support::test_name!();
    if is_child(name) {
        scenario(true);
        return;
    }
    check(name);
}
