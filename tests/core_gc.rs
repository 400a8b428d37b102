//! gc lines and MemStats against memory the tests allocate, hold, leak and free themselves.

mod support;

use std::time::Duration;

use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const MIB: u64 = 1 << 20;

/// One parsed `gc N @S.SSSs P%: B->A->L MB, G MB goal, W P[ (forced)]` line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gc {
    n: u64,
    at_ms: u64,
    pct: u64,
    before: u64,
    after: u64,
    live: u64,
    goal: u64,
    procs: u64,
    forced: bool,
}

/// Parses a gc line, checking its exact shape
/// (`^gc \d+ @\d+\.\d{3}s \d+%: \d+->\d+->\d+ MB, \d+ MB goal, \d+ P( \(forced\))?$`).
fn parse_gc(line: &str) -> Option<Gc> {
    fn digits(s: &str) -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
    let (line, forced) = match line.strip_suffix(" (forced)") {
        Some(l) => (l, true),
        None => (line, false),
    };
    let rest = line.strip_prefix("gc ")?;
    let (n, rest) = rest.split_once(" @")?;
    let (secs, rest) = rest.split_once("s ")?;
    let (whole, frac) = secs.split_once('.')?;
    if frac.len() != 3 {
        return None;
    }
    let (pct, rest) = rest.split_once("%: ")?;
    let (sizes, rest) = rest.split_once(" MB, ")?;
    let mut sizes = sizes.split("->");
    let (b, a, l) = (sizes.next()?, sizes.next()?, sizes.next()?);
    if sizes.next().is_some() {
        return None;
    }
    let (goal, rest) = rest.split_once(" MB goal, ")?;
    let procs = rest.strip_suffix(" P")?;
    Some(Gc {
        n: digits(n)?,
        at_ms: digits(whole)? * 1000 + digits(frac)?,
        pct: digits(pct)?,
        before: digits(b)?,
        after: digits(a)?,
        live: digits(l)?,
        goal: digits(goal)?,
        procs: digits(procs)?,
        forced,
    })
}

/// All gc lines of a child's stderr, each required to have the exact shape, numbered from 1
/// without gaps.
fn gc_lines(stderr: &str) -> Vec<Gc> {
    let lines: Vec<Gc> = stderr
        .lines()
        .filter(|l| l.starts_with("gc "))
        .map(|l| parse_gc(l).unwrap_or_else(|| panic!("malformed gc line: {l:?}")))
        .collect();
    for (i, g) in lines.iter().enumerate() {
        assert_eq!(
            g.n,
            i as u64 + 1,
            "cycle numbers must run from 1 without gaps:\n{stderr}"
        );
    }
    lines
}

#[test]
fn the_parser_rejects_other_shapes() {
    assert!(parse_gc("gc 1 @1.384s 2%: 5->3->2 MB, 4 MB goal, 2 P").is_some());
    assert!(parse_gc("gc 1 @1.384s 2%: 5->3->2 MB, 4 MB goal, 2 P (forced)").is_some());
    assert!(parse_gc("gc 1 @1.38s 2%: 5->3->2 MB, 4 MB goal, 2 P").is_none());
    assert!(parse_gc("gc 1 @1.384s 2%: 5->3 MB, 4 MB goal, 2 P").is_none());
    assert!(parse_gc("gc 1 @1.384s -2%: 5->3->2 MB, 4 MB goal, 2 P").is_none());
    assert!(parse_gc("gc 1 @1.384s 2%: 5->3->2 MB, 4 MB goal, 2 P x").is_none());
}

/// Touches every page so the memory is really there.
fn filled(bytes: usize) -> Vec<u8> {
    vec![0x5a; bytes]
}

#[test]
fn holding_64_mib_moves_heap_alloc_by_64_mib() {
    let name = support::test_name!();
    if is_child(name) {
        let before = rdebug::memstats();
        let held = filled(64 << 20);
        let during = rdebug::memstats();
        drop(held);
        let after = rdebug::memstats();
        println!(
            "RESULT {} {} {}",
            before.heap_alloc, during.heap_alloc, after.heap_alloc
        );
        return;
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(30));
    out.assert_success();
    let nums = support::result_numbers(&out.stdout);
    let grew = nums[1] as f64 - nums[0] as f64;
    let want = (64 * MIB) as f64;
    assert!(
        (grew - want).abs() <= want * 0.03,
        "heap_alloc grew by {grew}, expected 64 MiB ± 3%"
    );
    let shrank = nums[1] as f64 - nums[2] as f64;
    assert!((shrank - want).abs() <= want * 0.03, "freed {shrank}");
}

#[test]
fn a_leak_closes_growth_cycles_with_doubling_goals() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        // The reporter's first allocator sample is in place before the leak starts: starting the
        // CPU-time sampler reads the allocator's address table from the executable's symbols,
        // which takes tens of ms in a debug test binary (4 MiB of leak here).
        std::thread::sleep(Duration::from_millis(300));
        let mut leak = Vec::with_capacity(256);
        for _ in 0..256 {
            leak.push(filled(1 << 20));
            std::thread::sleep(Duration::from_millis(4));
        }
        std::thread::sleep(Duration::from_millis(200));
        std::hint::black_box(&leak);
        std::mem::forget(leak);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=10")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let lines = gc_lines(&out.stderr);
    let growth: Vec<_> = lines.iter().filter(|g| g.live >= g.goal).collect();
    // 4 → 8 → 16 → 32 → 64 → 128 → 256: at least six goals are crossed on the way to 256 MiB.
    assert!(growth.len() >= 6, "{}", out.stderr);
    // The last goal crossed is past half of the 256 MB leaked.
    assert!(lines.iter().any(|g| g.live >= 128), "{}", out.stderr);
    assert_eq!(lines[0].goal, 4, "the first goal is 4 MB:\n{}", out.stderr);
    for pair in lines.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        // goal = max(4 MiB, 2 × live) in bytes; printed MB are truncated, so 2 × (live >> 20)
        // may be one less than (2 × live) >> 20.
        let want = (2 * prev.live).max(4);
        assert!(
            next.goal == want || next.goal == want + 1,
            "goal after live={} MB was {} MB:\n{}",
            prev.live,
            next.goal,
            out.stderr
        );
    }
    for g in &lines {
        assert_eq!(
            g.procs,
            std::thread::available_parallelism().unwrap().get() as u64
        );
    }
}

#[test]
fn free_os_memory_prints_a_forced_cycle_back_near_live() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let kept = filled(8 << 20);
        let chunks: Vec<_> = (0..128).map(|_| filled(1 << 20)).collect();
        std::thread::sleep(Duration::from_millis(150));
        drop(chunks);
        rdebug::free_os_memory();
        std::thread::sleep(Duration::from_millis(300));
        let m = rdebug::memstats();
        println!(
            "RESULT {} {} {}",
            m.num_forced_gc, m.pause_total_ns, m.heap_released
        );
        std::hint::black_box(kept);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=20")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let lines = gc_lines(&out.stderr);
    let forced: Vec<_> = lines.iter().filter(|g| g.forced).collect();
    assert_eq!(forced.len(), 1, "{}", out.stderr);
    let f = forced[0];
    // jemalloc may already have returned part of the freed 128 MB by itself (decay); most of it
    // is still held when the program asks.
    assert!(
        f.before >= f.live + 64,
        "footprint before the purge holds the freed memory: {f:?}\n{}",
        out.stderr
    );
    assert!((8..=12).contains(&f.live), "live is the 8 MB kept: {f:?}");
    assert!(
        f.after <= f.live + 4,
        "footprint after the purge is near live: {f:?}"
    );
    let nums = support::result_numbers(&out.stdout);
    assert_eq!(nums[0], 1, "num_forced_gc");
    assert!(nums[1] > 0, "the purge took time: pause_total_ns");
    assert!(
        nums[2] >= 100 * MIB,
        "released memory is counted: {}",
        nums[2]
    );
}

#[test]
fn an_allocating_thread_drives_the_cpu_share_above_zero() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let worker = std::thread::spawn(|| {
            let start = std::time::Instant::now();
            let mut ring: Vec<Option<Box<[u8]>>> = (0..1024).map(|_| None).collect();
            let mut x: u32 = 1;
            let mut leak = Vec::new();
            while start.elapsed() < Duration::from_millis(1500) {
                for _ in 0..1000 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let size = 8 + (x % 4088) as usize;
                    ring[(x as usize) % 1024] = Some(vec![0u8; size].into_boxed_slice());
                }
                // A slow leak so that growth cycles print lines.
                leak.push(filled(256 << 10));
            }
            std::hint::black_box((ring, leak));
        });
        worker.join().expect("worker");
        let m = rdebug::memstats();
        println!("RESULT {}", m.gc_cpu_fraction);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=20")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let lines = gc_lines(&out.stderr);
    assert!(lines.len() >= 3, "{}", out.stderr);
    let max = lines.iter().map(|g| g.pct).max().unwrap_or(0);
    assert!(
        max >= 1,
        "allocator CPU share stayed at 0%:\n{}",
        out.stderr
    );
    let fraction: f64 = support::result_line(&out.stdout).parse().expect("f64");
    assert!(
        fraction > 0.01 && fraction < 1.0,
        "gc_cpu_fraction {fraction}"
    );
}
