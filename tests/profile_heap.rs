//! Heap profiles against memory the test holds itself, read back with the real
//! `go tool pprof` (Debian: golang-go).
#![cfg(feature = "pprof")]

mod support;

use std::time::Duration;

use support::pprof::{quantity, top, total};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const MIB: u64 = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);

#[inline(never)]
fn hold_a(mib: usize) -> Vec<Vec<u8>> {
    let v = (0..mib).map(|i| vec![i as u8 | 1; 1 << 20]).collect();
    std::hint::black_box(v) // not a tail call: hold_a keeps its frame
}

#[inline(never)]
fn hold_b(mib: usize) -> Vec<Vec<u8>> {
    let v = (0..mib).map(|i| vec![i as u8 | 2; 1 << 20]).collect();
    std::hint::black_box(v)
}

fn result(stdout: &str, key: &str) -> u64 {
    support::result_value(stdout, key)
}

/// 256 MiB held from `hold_a` and 128 MiB from `hold_b`, in 1 MiB blocks: pprof shows each
/// function with its amount within sampling error (~4% at 256 MiB at 512 KiB; ±15% allowed),
/// with the names in the profile (no binary, no /symbol).
#[test]
fn heap_profile_shows_what_each_function_holds() {
    let name = support::test_name!();
    let pb = support::temp_path("heap.pb.gz");
    let txt = support::temp_path("heap.txt");
    if is_child(name) {
        let a = hold_a(256);
        let b = hold_b(128);
        let p = rdebug::profile::heap().expect("heap profile");
        let m = rdebug::memstats();
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Heap),
        )
        .unwrap();
        std::fs::write(std::env::var("TXT").unwrap(), p.debug_text()).unwrap();
        println!("RESULT heap_alloc {}", m.heap_alloc);
        println!("RESULT rate {}", p.rate());
        drop((a, b));
        return;
    }
    let out = run_child(name, &[("PB", &pb), ("TXT", &txt)], TIMEOUT);
    out.assert_success();
    assert_eq!(result(&out.stdout, "rate"), 524288, "Go's default rate");

    let t = top(&pb, &["-sample_index=inuse_space"]);
    let _ = std::fs::remove_file(&pb);
    for (f, mib) in [("hold_a", 256.0), ("hold_b", 128.0)] {
        let row = t
            .row(f)
            .unwrap_or_else(|| panic!("{f} missing:\n{}", t.text));
        let want = mib * MIB as f64;
        assert!(
            (row.cum - want).abs() <= 0.15 * want,
            "{f}: pprof says {} MiB, held {mib} MiB\n{}",
            row.cum / MIB as f64,
            t.text
        );
    }
    let all = total(&t);
    assert!(all >= 0.85 * 384.0 * MIB as f64, "total {all}\n{}", t.text);

    // debug=1: Go's header and footer, the footer's HeapAlloc that of memstats() read at the
    // same moment.
    let text = std::fs::read_to_string(&txt).expect("debug text");
    let _ = std::fs::remove_file(&txt);
    let first = text.lines().next().unwrap_or("");
    let nums: Vec<u64> = first
        .strip_prefix("heap profile: ")
        .and_then(|r| r.strip_suffix(" @ heap/1048576"))
        .unwrap_or_else(|| panic!("header: {first}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 4, "{first}");
    // Sampled (not unscaled) bytes of 384 MiB of 1 MiB blocks: × (1 - e^-2) ≈ 0.865.
    let sampled = nums[1] as f64 / (384 * MIB) as f64;
    assert!((0.7..1.0).contains(&sampled), "{first}");
    let records: Vec<u64> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("# runtime.MemStats"))
        .filter(|l| l.contains(" @ 0x"))
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(records.len() >= 2, "{text:.2000}");
    assert!(
        records.windows(2).all(|w| w[0] >= w[1]),
        "sorted by in-use bytes"
    );
    let footer: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "# runtime.MemStats")
        .skip(1)
        .collect();
    let fields = serde_json::to_value(rdebug::MemStats::default())
        .expect("MemStats as JSON")
        .as_object()
        .map_or(0, |o| o.len());
    assert_eq!(
        footer.len(),
        fields,
        "one line per MemStats field: {footer:?}"
    );
    let field = |n: &str| -> u64 {
        footer
            .iter()
            .find_map(|l| l.strip_prefix(&format!("# {n} = "))?.parse().ok())
            .unwrap_or_else(|| panic!("no {n} in {footer:?}"))
    };
    let heap_alloc = field("HeapAlloc");
    let truth = result(&out.stdout, "heap_alloc");
    assert!(
        heap_alloc.abs_diff(truth) <= 4 * MIB,
        "footer HeapAlloc {heap_alloc}, memstats {truth}"
    );
    assert!(heap_alloc >= 384 * MIB);
    assert!(field("TotalAlloc") > 0);
    assert!(field("NumGC") < 1 << 20);
}

/// `RDEBUG=memprofilerate=N` sets the rate (rounded to a power of two); 0 pauses sampling.
#[test]
fn memprofilerate_sets_the_sampling_rate() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        println!("RESULT rate {}", rdebug::profile::memprofilerate());
        // Each thread's next sample was scheduled at the old rate (one per 512 KiB on average):
        // 16 MiB allocated and freed first take every thread past it, so the new rate rules.
        drop(std::hint::black_box(vec![0u8; 16 << 20]));
        let held = hold_a(8);
        let p = rdebug::profile::heap().expect("heap profile");
        println!("RESULT profile_rate {}", p.rate());
        println!("RESULT inuse_mib {}", p.inuse_bytes() >> 20);
        drop(held);
        return;
    }
    let out = run_child(name, &[("RDEBUG", "memprofilerate=4000")], TIMEOUT);
    out.assert_success();
    assert_eq!(result(&out.stdout, "rate"), 4096, "{}", out.stderr);
    assert_eq!(result(&out.stdout, "profile_rate"), 4096);
    // At 4 KiB every 1 MiB block is sampled: the 8 MiB held show up exactly.
    assert!(result(&out.stdout, "inuse_mib") >= 8);

    let out = run_child(name, &[("RDEBUG", "memprofilerate=0")], TIMEOUT);
    out.assert_success();
    assert_eq!(result(&out.stdout, "rate"), 0);
}

/// `RDEBUG=memprofile=FILE` writes a heap profile at normal exit, holding what was live then.
#[test]
fn memprofile_is_written_at_exit() {
    let name = support::test_name!();
    let pb = support::temp_path("exit-heap.pb.gz");
    if is_child(name) {
        rdebug::init();
        static HELD: std::sync::Mutex<Vec<Vec<Vec<u8>>>> = std::sync::Mutex::new(Vec::new());
        HELD.lock().unwrap().push(hold_b(64));
        std::process::exit(0);
    }
    let _ = std::fs::remove_file(&pb);
    let env = format!("memprofile={}", pb.display());
    let out = run_child(name, &[("RDEBUG", env.as_str())], TIMEOUT);
    assert!(out.status.success(), "{}", out.stderr);
    let t = top(&pb, &["-sample_index=inuse_space"]);
    let _ = std::fs::remove_file(&pb);
    let row = t
        .row("hold_b")
        .unwrap_or_else(|| panic!("hold_b missing:\n{}", t.text));
    assert!(
        (row.cum - 64.0 * MIB as f64).abs() <= 0.25 * 64.0 * MIB as f64,
        "{}",
        t.text
    );
    assert!(quantity("64MB") == Some(64.0 * MIB as f64));
}

/// jemalloc's `experimental.hooks.prof_backtrace` now: who takes sampled stacks.
fn stack_hook() -> usize {
    let mut hook: usize = 0;
    let mut len = size_of::<usize>();
    // SAFETY: reads a function pointer into a buffer of its size.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"experimental.hooks.prof_backtrace".as_ptr(),
            (&mut hook as *mut usize).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0, "experimental.hooks.prof_backtrace");
    hook
}

/// Setting the rate hands stack taking to rdebug's unwinder (instead of libgcc's); the stacks
/// it takes, on the main thread and on another, still show each function with what it holds.
#[test]
fn stacks_taken_by_rdebugs_unwinder_show_what_each_function_holds() {
    let name = support::test_name!();
    let pb = support::temp_path("heap-hook.pb.gz");
    if is_child(name) {
        let libgcc = stack_hook();
        rdebug::profile::set_memprofilerate(524_288).expect("heap sampling");
        let ours = stack_hook();
        let a = std::thread::spawn(|| hold_a(256)).join().expect("thread");
        let b = hold_b(128);
        let p = rdebug::profile::heap().expect("heap profile");
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Heap),
        )
        .unwrap();
        println!("RESULT hook_changed {}", u64::from(libgcc != ours));
        drop((a, b));
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    assert_eq!(
        result(&out.stdout, "hook_changed"),
        1,
        "rdebug's unwinder takes the stacks"
    );
    let t = top(&pb, &["-sample_index=inuse_space"]);
    let _ = std::fs::remove_file(&pb);
    for (f, mib) in [("hold_a", 256.0), ("hold_b", 128.0)] {
        let row = t
            .row(f)
            .unwrap_or_else(|| panic!("{f} missing:\n{}", t.text));
        let want = mib * MIB as f64;
        assert!(
            (row.cum - want).abs() <= 0.15 * want,
            "{f}: pprof says {} MiB, held {mib} MiB\n{}",
            row.cum / MIB as f64,
            t.text
        );
    }
}

/// Heap sampling runs in a `pprof` build with `RDEBUG` unset too, so `rdebug::init()` hands its
/// stacks to rdebug's unwinder then as well (libgcc's cost the webapp 5% more per request).
#[test]
fn init_without_rdebug_hands_sampled_stacks_to_rdebugs_unwinder() {
    let name = support::test_name!();
    if is_child(name) {
        println!(
            "RESULT rdebug_unset {}",
            u64::from(std::env::var_os("RDEBUG").is_none())
        );
        let libgcc = stack_hook();
        rdebug::init();
        println!("RESULT hook_changed {}", u64::from(stack_hook() != libgcc));
        return;
    }
    let out = run_child::<&str>(name, &[], TIMEOUT);
    out.assert_success();
    if result(&out.stdout, "rdebug_unset") == 0 {
        println!("RDEBUG is set in this environment; nothing to check");
        return;
    }
    assert_eq!(
        result(&out.stdout, "hook_changed"),
        1,
        "rdebug's unwinder takes the stacks after init() with RDEBUG unset"
    );
}

/// Stack left where the allocations of the test below are made. jemalloc's own sampling path
/// needs much of it in a debug test build (its C is built unoptimised there: measured with gdb,
/// `je_malloc_default`'s frame alone is 0x9e38 bytes, `prof_lookup_global`'s 0x1a28; with 56 KiB
/// left jemalloc overflowed after the hook had declined to walk), so this leaves room for
/// jemalloc's path and not for it plus rdebug's walk (about 42 KiB).
const LEFT: usize = 80 << 10;

/// jemalloc samples an allocation on a thread with little stack left (80 KiB of a 256 KiB
/// stack, less than 64 KiB of it left when jemalloc calls rdebug's stack hook): the hook takes
/// no stack for it instead of walking into the guard page, and the process lives. The sampled
/// bytes are still in the heap profile.
#[test]
fn a_sampled_allocation_on_a_thread_with_little_stack_left_does_not_overflow_it() {
    let name = support::test_name!();
    if is_child(name) {
        // Every allocation of 4 KiB or more is sampled, through rdebug's stack hook.
        rdebug::profile::set_memprofilerate(4096).expect("heap sampling");
        // Set up before going deep: rdebug's counters, and jemalloc's per-thread profiling data
        // (made at the thread's first sample, on a deep stack of its own).
        let held = support::deep::on_a_small_thread(256 << 10, LEFT, || {
            let blocks: Vec<Box<[u8]>> = (0..64)
                .map(|_| vec![1u8; 64 << 10].into_boxed_slice())
                .collect();
            std::hint::black_box(blocks)
        });
        let p = rdebug::profile::heap().expect("heap profile");
        let pb = p.pprof_gz(rdebug::profile::HeapKind::Heap);
        println!("RESULT left {}", held.0);
        println!("RESULT profile_bytes {}", pb.len());
        println!("RESULT inuse {}", p.inuse_bytes());
        drop(held);
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    let left = result(&out.stdout, "left");
    assert!(
        (LEFT as u64 - (4 << 10)..=LEFT as u64).contains(&left),
        "{left} bytes left"
    );
    assert!(result(&out.stdout, "profile_bytes") > 0);
    // 64 blocks of 64 KiB held: 4 MiB sampled (every one, at a 4 KiB rate), stack or none.
    let inuse: u64 = result(&out.stdout, "inuse");
    assert!(inuse >= 4 * MIB, "{inuse} bytes in use in the profile");
}
