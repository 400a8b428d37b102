//! A panic in the host program with `schedtrace` on: one last SCHED line per watched runtime is
//! printed (Go prints one when a panic kills the program), showing the scheduler as it is at the
//! panic; the program's own panic hooks, installed before or after `init()`, still run; a panic a
//! tokio task catches prints its line too and the program goes on; and the hook never blocks on a
//! full stderr.
//!
//! `schedtrace=100000` makes the reporter print its 0 ms line and then nothing for 100 s, so any
//! other SCHED line comes from the hook.

mod support;

use std::time::{Duration, Instant};

use support::{child_command, collect, field, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const RDEBUG: &str = "schedtrace=100000";

fn ms_of(line: &str) -> u64 {
    line.strip_prefix("SCHED ")
        .and_then(|r| r.split("ms:").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("malformed SCHED line {line:?}"))
}

fn message(info: &std::panic::PanicHookInfo<'_>) -> &'static str {
    info.payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("?")
}

#[test]
fn a_fatal_panic_prints_a_last_sched_line_and_every_hook_runs() {
    let name = support::test_name!();
    if is_child(name) {
        std::panic::set_hook(Box::new(|info| eprintln!("HOOK before: {}", message(info))));
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        // Three tasks that never finish: the last line must show them.
        for _ in 0..3 {
            rt.spawn(std::future::pending::<()>());
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("HOOK after: {}", message(info));
            previous(info);
        }));
        std::thread::sleep(Duration::from_millis(300));
        panic!("boom");
    }
    let out = run_child(name, &[("RDEBUG", RDEBUG)], Duration::from_secs(60));
    assert!(
        !out.status.success(),
        "the child was meant to die\n{}",
        out.stderr
    );
    let sched = out.lines_starting("SCHED ");
    assert_eq!(
        sched.len(),
        2,
        "the 0 ms line and the last one\n{}",
        out.stderr
    );
    let last = sched[1];
    assert!(ms_of(last) >= 250, "{last}");
    assert_eq!(field(last, "workers"), Some(2), "{last}");
    assert_eq!(field(last, "tasks"), Some(3), "{last}");
    assert_eq!(field(last, "idleworkers"), Some(2), "{last}");
    // Order: the hook installed after init (it chains), then rdebug's line, then the one
    // installed before init; each once.
    let interesting: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("HOOK") || l.starts_with("SCHED "))
        .collect();
    assert_eq!(
        interesting,
        [sched[0], "HOOK after: boom", last, "HOOK before: boom"],
        "{}",
        out.stderr
    );
}

#[test]
fn a_panic_caught_by_a_tokio_task_prints_its_line_and_the_program_goes_on() {
    let name = support::test_name!();
    if is_child(name) {
        std::panic::set_hook(Box::new(|_| eprintln!("HOOK program")));
        let rt = support::two_worker_runtime();
        rt.block_on(async {
            rdebug::init();
            tokio::time::sleep(Duration::from_millis(100)).await;
            for _ in 0..2 {
                let err = tokio::spawn(async { panic!("task") })
                    .await
                    .expect_err("panicked");
                assert!(err.is_panic());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        println!("WENT ON");
        return;
    }
    let out = run_child(name, &[("RDEBUG", RDEBUG)], Duration::from_secs(60));
    out.assert_success();
    assert!(out.stdout.contains("WENT ON"), "{}", out.stdout);
    assert_eq!(
        out.lines_starting("HOOK program").len(),
        2,
        "{}",
        out.stderr
    );
    let sched = out.lines_starting("SCHED ");
    assert_eq!(
        sched.len(),
        3,
        "the 0 ms line and one per panic\n{}",
        out.stderr
    );
    for l in &sched[1..] {
        // The panics come 100 ms after init(); the reporter thread starts its clock a little
        // after init() returns, so its ms may read a little less.
        assert!(ms_of(l) >= 80, "not a line from the panic: {l}");
        // The panicking task runs on a worker: it is not idle.
        assert!(field(l, "idleworkers").unwrap() <= 1, "{l}");
    }
}

/// stderr is a pipe nobody reads, filled to the brim; the program's hook does nothing. A thread
/// that panics must finish at once: rdebug's hook drops its line rather than wait.
#[test]
fn the_hook_never_blocks_on_a_full_stderr() {
    let name = support::test_name!();
    if is_child(name) {
        std::panic::set_hook(Box::new(|_| {}));
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        support::fill_stderr_pipe();
        let t = Instant::now();
        let r = std::thread::spawn(|| panic!("in a full pipe")).join();
        println!(
            "JOINED panicked={} ms={}",
            r.is_err(),
            t.elapsed().as_millis()
        );
        return;
    }
    let mut cmd = child_command(name);
    cmd.env("RDEBUG", RDEBUG);
    let mut child = cmd.spawn().expect("spawn");
    // Keep stderr open but never read it: take the pipe and only drop it at the end.
    let stderr = child.stderr.take();
    let out = collect(child, Duration::from_secs(30));
    drop(stderr);
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("JOINED "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("panicked=true"), "{line}");
    let ms = field(line, "ms").unwrap();
    assert!(ms < 1000, "the panicking thread took {ms} ms");
}
