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

/// Under another global allocator no runtime is found on its own: `init()` before any runtime
/// warns at once and says that finding runtimes needs `rdebug::Alloc`; a runtime that runs tasks
/// gets no lines until `rdebug::watch` hands it over, and then it does.
#[test]
fn system_allocator_finds_no_runtime_and_watch_still_works() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let rt = support::two_worker_runtime();
        let busy = |rt: &tokio::runtime::Runtime| {
            rt.block_on(async {
                for i in 0..30 {
                    tokio::spawn(async move { std::hint::black_box(vec![i as u8; 100]).len() })
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        busy(&rt);
        eprintln!("PHASE watch");
        rdebug::watch(rt.handle());
        busy(&rt);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let warnings = out.lines_starting("rdebug: warning: ");
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("no tokio runtime is watched")
            && warnings[0].contains("rdebug::Alloc"),
        "{}",
        warnings[0]
    );
    let (before, after) = out.stderr.split_once("PHASE watch").expect("phase marker");
    assert!(!before.lines().any(|l| l.starts_with("SCHED ")), "{before}");
    assert!(
        after.lines().filter(|l| l.starts_with("SCHED ")).count() >= 3,
        "{after}"
    );
}
