//! A program whose global allocator is plain `tikv_jemallocator::Jemalloc`, not `rdebug::Alloc`:
//! SCHED lines work; jemalloc's own figures and the allocator cycles work (a 64 MiB allocation
//! shows in `heap_alloc` and closes a growth cycle; `free_os_memory()` closes a forced one); the
//! counts only `rdebug::Alloc` keeps are zero, and rdebug says so once, plainly.

mod support;

use std::time::Duration;

use support::{Foreign, NO_ENV, check_memstats, is_child, run_child};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const HOLD: usize = 64 << 20;
const NOTE: &str = "rdebug: note: the global allocator is not rdebug::Alloc";

#[test]
fn plain_jemalloc_with_the_trace_on() {
    let name = support::test_name!();
    if is_child(name) {
        return support::hold_and_report_memstats(HOLD);
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50,gctrace=1,gcpoll=10")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let sched = out.lines_starting("SCHED ");
    assert!(
        sched.len() >= 8,
        "{} SCHED lines\n{}",
        sched.len(),
        out.stderr
    );
    let notes = out.lines_starting(NOTE);
    assert_eq!(notes.len(), 1, "said once:\n{}", out.stderr);
    assert!(
        notes[0].contains("mallocs") && notes[0].contains("#[global_allocator]"),
        "{}",
        notes[0]
    );
    // gc lines: a growth cycle with the 64 MiB live, and the forced one.
    let gcs = out.lines_starting("gc ");
    let live_mb = |l: &str| -> u64 {
        let arrows = l.split(": ").nth(1).and_then(|r| r.split(" MB").next());
        arrows
            .and_then(|a| a.rsplit("->").next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("malformed gc line {l:?}"))
    };
    assert!(
        gcs.iter()
            .any(|l| live_mb(l) >= 64 && !l.ends_with("(forced)")),
        "no growth cycle with 64 MB live:\n{}",
        out.stderr
    );
    assert_eq!(
        gcs.iter().filter(|l| l.ends_with("(forced)")).count(),
        1,
        "{}",
        out.stderr
    );
    check_memstats(&out.stdout, Foreign::Jemalloc, HOLD);
}

#[test]
fn plain_jemalloc_memstats_without_a_trace() {
    let name = support::test_name!();
    if is_child(name) {
        return support::hold_and_report_memstats(HOLD);
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(60));
    out.assert_success();
    assert_eq!(out.lines_starting(NOTE).len(), 1, "{}", out.stderr);
    assert!(out.lines_starting("gc ").is_empty(), "{}", out.stderr);
    check_memstats(&out.stdout, Foreign::Jemalloc, HOLD);
}
