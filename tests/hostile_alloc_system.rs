//! A program whose global allocator is `std::alloc::System`, not `rdebug::Alloc` nor jemalloc:
//! SCHED lines work; the memory figures that can be had (RSS) are right; the ones that cannot
//! (allocation counts, heap figures, allocator cycles) are zero, and rdebug says so once, plainly,
//! whether the trace or `memstats()` asked first.

mod support;

use std::time::Duration;

use support::{Foreign, NO_ENV, check_memstats, field, is_child, run_child};

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

const HOLD: usize = 64 << 20;
const NOTE: &str = "rdebug: note: the global allocator is neither rdebug::Alloc nor jemalloc";

#[test]
fn system_allocator_with_the_trace_on() {
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
    for l in &sched {
        assert_eq!(field(l, "workers"), Some(2), "{l}");
    }
    let notes = out.lines_starting(NOTE);
    assert_eq!(notes.len(), 1, "said once:\n{}", out.stderr);
    assert!(
        notes[0].contains("not available") && notes[0].contains("#[global_allocator]"),
        "says what is missing and how to get it: {}",
        notes[0]
    );
    assert!(out.lines_starting("gc ").is_empty(), "{}", out.stderr);
    check_memstats(&out.stdout, Foreign::System, HOLD);
}

#[test]
fn system_allocator_memstats_without_a_trace() {
    let name = support::test_name!();
    if is_child(name) {
        return support::hold_and_report_memstats(HOLD);
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(60));
    out.assert_success();
    assert_eq!(
        out.lines_starting(NOTE).len(),
        1,
        "memstats() says once what it cannot give:\n{}",
        out.stderr
    );
    assert!(out.lines_starting("SCHED").is_empty(), "{}", out.stderr);
    check_memstats(&out.stdout, Foreign::System, HOLD);
}
