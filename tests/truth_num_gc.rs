//! One rule for `num_gc`, gctrace on or off: the reporter samples the allocator whenever it runs,
//! and without a reporter the first `memstats()` closes a growth cycle if the heap is already past
//! the goal.

mod support;

use std::time::Duration;

use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Leaks 48 MiB in 1 MiB steps, slowly enough that every sample sees at most one step, then
/// reads `num_gc`. No frees, so no purges: every cycle is a growth cycle at a known threshold.
fn leak_and_count(init: bool) {
    let rt = support::two_worker_runtime();
    if init {
        rt.block_on(async { rdebug::init() });
    }
    let mut leak: Vec<Box<[u8]>> = Vec::with_capacity(64);
    for _ in 0..48 {
        leak.push(vec![1u8; 1 << 20].into_boxed_slice());
        std::thread::sleep(Duration::from_millis(25));
    }
    std::thread::sleep(Duration::from_millis(100));
    let m = rdebug::memstats();
    println!("RESULT {} {}", m.num_gc, m.heap_alloc >> 20);
    std::hint::black_box(leak);
    drop(rt);
}

#[test]
fn num_gc_is_the_same_with_gctrace_on_or_off() {
    let name = support::test_name!();
    if is_child(name) {
        leak_and_count(true);
        return;
    }
    let on = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=5")],
        Duration::from_secs(60),
    );
    on.assert_success();
    let off = run_child(
        name,
        &[("RDEBUG", "schedtrace=1000,gcpoll=5")],
        Duration::from_secs(60),
    );
    off.assert_success();
    let (n_on, n_off) = (
        support::result_numbers(&on.stdout)[0],
        support::result_numbers(&off.stdout)[0],
    );
    // Goals 4, then twice the live heap at each cycle: 4 -> ~8 -> ~16 -> ~32 MiB within 48 MiB.
    assert_eq!(n_on, 4, "gctrace=1:\n{}", on.stderr);
    assert_eq!(n_off, n_on, "schedtrace only:\n{}", off.stderr);
    // Every cycle counted by the read was printed (more may follow as the child exits).
    let printed: Vec<u64> = on
        .lines_starting("gc ")
        .iter()
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .take_while(|&n| n <= n_on)
        .collect();
    assert_eq!(printed, (1..=n_on).collect::<Vec<_>>(), "{}", on.stderr);
    assert!(off.lines_starting("gc ").is_empty(), "{}", off.stderr);
}

#[test]
fn the_first_read_closes_a_growth_cycle_when_the_heap_is_past_the_goal() {
    let name = support::test_name!();
    if is_child(name) {
        leak_and_count(false);
        return;
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(60));
    out.assert_success();
    let v = support::result_numbers(&out.stdout);
    assert!(v[1] >= 48, "the leak is live: {v:?}");
    assert_eq!(
        v[0], 1,
        "48 MiB live against a 4 MiB goal at the first read"
    );
}

/// The live heap `L` of a `gc` line (`gc N @S 0%: B->A->L MB, G MB goal, W P`).
fn live_mb(line: &str) -> Option<u64> {
    let arrows = line.split(' ').find(|w| w.contains("->"))?;
    arrows.rsplit("->").next()?.parse().ok()
}

#[test]
fn the_first_samples_do_not_wait_for_the_allocator_cpu_table() {
    let name = support::test_name!();
    if is_child(name) {
        // Leaks from the moment the reporter starts, 1 MiB every 2 ms: while the reporter is not
        // sampling (reading the executable's symbol table for the CPU figure takes 20 ms or more
        // in a debug test binary), the leak runs on past the 4 MiB goal.
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        let mut leak: Vec<Box<[u8]>> = Vec::with_capacity(64);
        for _ in 0..32 {
            leak.push(vec![1u8; 1 << 20].into_boxed_slice());
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(50));
        std::hint::black_box(leak);
        drop(rt);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=1")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let first = out
        .lines_starting("gc 1 ")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no first cycle:\n{}", out.stderr));
    let live = live_mb(first).unwrap_or_else(|| panic!("malformed: {first:?}"));
    // Sampled every ms, the first cycle closes within a few MiB of its 4 MiB goal (the test
    // binary's own heap is about 1 MiB); sampled only once the table is read, near 12 MiB.
    assert!(
        (4..=8).contains(&live),
        "the first cycle closed at {live} MB live:\n{}",
        out.stderr
    );
}
