//! What a new user trips on: init() before the runtime exists, the last lines of a short program,
//! and scheddetail figures that have no basis yet.

mod support;

use std::time::Duration;

use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

#[test]
fn init_outside_a_runtime_warns_once_and_watch_brings_the_lines() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init(); // no runtime yet
        std::thread::sleep(Duration::from_millis(250));
        println!("PHASE watch");
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        std::thread::sleep(Duration::from_millis(250));
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let warnings = out.lines_starting("rdebug: warning: ");
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("no tokio runtime is watched")
            && warnings[0].contains("rdebug::init()")
            && warnings[0].contains("rdebug::watch(&handle)"),
        "{}",
        warnings[0]
    );
    // Lines come once a runtime is watched, for that runtime.
    let sched = out.lines_starting("SCHED ");
    assert!(sched.len() >= 3, "{}", out.stderr);
    assert!(
        sched.iter().all(|l| l.contains("workers=2 ")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_forced_cycle_just_before_exit_is_printed() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        drop(std::hint::black_box(vec![1u8; 32 << 20]));
        rdebug::free_os_memory();
        // The process exits right away: the line must already be out, or written at exit.
        return;
    }
    // A gcpoll far longer than the program: only free_os_memory()'s own flush can print it.
    let out = run_child(
        name,
        &[("RDEBUG", "gctrace=1,gcpoll=60000")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let forced: Vec<&str> = out
        .lines_starting("gc ")
        .into_iter()
        .filter(|l| l.ends_with(" (forced)"))
        .collect();
    assert_eq!(forced.len(), 1, "{}", out.stderr);
}

#[test]
fn scheddetail_shows_no_share_without_an_interval_and_no_mean_without_polls() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(Duration::from_millis(180));
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50,scheddetail=1")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let workers: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  W"))
        .collect();
    assert!(workers.len() >= 6, "{}", out.stderr);
    // The first SCHED line has no interval before it: no busy% on its two worker lines.
    assert!(
        workers[..2].iter().all(|l| !l.contains("busy%=")),
        "{}",
        out.stderr
    );
    assert!(
        workers[2..].iter().all(|l| l.contains("busy%=")),
        "{}",
        out.stderr
    );
    // Workers that never polled a task (an idle runtime) show no mean poll time.
    for l in &workers {
        if support::field(l, "polls") == Some(0) {
            assert!(!l.contains("meanpoll="), "{l}");
        }
    }
}
