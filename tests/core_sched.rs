//! SCHED lines against scheduler states the tests create: blocked workers, a flooded global
//! queue, extra OS threads, and (under `tokio_unstable`) local queues and the blocking pool.

mod support;

use std::time::Duration;

use support::{field, is_child, phase, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

#[test]
fn blocked_workers_and_a_flooded_global_queue_show_then_drain() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(Duration::from_millis(250));
        eprintln!("PHASE idle");
        std::thread::sleep(Duration::from_millis(250));
        eprintln!("PHASE -");
        // Two tasks that sleep the thread: both workers are busy and cannot take more work.
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let tx = tx.clone();
            rt.spawn(async move {
                let _ = tx.send(());
                std::thread::sleep(Duration::from_millis(1200));
            });
        }
        for _ in 0..2 {
            rx.recv().expect("blocker started");
        }
        // 60 tasks from outside the runtime land in the global queue.
        for _ in 0..60 {
            rt.spawn(async {});
        }
        // A line whose snapshot was taken while the tasks were being spawned is written
        // within one period: let it go out before the phase starts.
        std::thread::sleep(Duration::from_millis(150));
        eprintln!("PHASE blocked");
        std::thread::sleep(Duration::from_millis(550));
        eprintln!("PHASE -");
        std::thread::sleep(Duration::from_millis(1000));
        eprintln!("PHASE drained");
        std::thread::sleep(Duration::from_millis(350));
        eprintln!("PHASE end");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=100")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let idle = phase(&out.stderr, "idle");
    assert!(
        !idle.is_empty(),
        "no SCHED lines while idle:\n{}",
        out.stderr
    );
    for l in &idle {
        assert_eq!(field(l, "workers"), Some(2), "{l}");
        assert_eq!(field(l, "idleworkers"), Some(2), "{l}");
        assert_eq!(field(l, "runqueue"), Some(0), "{l}");
    }
    let blocked = phase(&out.stderr, "blocked");
    assert!(
        blocked.len() >= 3,
        "too few lines while blocked:\n{}",
        out.stderr
    );
    for l in &blocked {
        assert_eq!(field(l, "idleworkers"), Some(0), "{l}");
        assert!(field(l, "runqueue").unwrap() >= 55, "{l}");
        assert!(field(l, "tasks").unwrap() >= 60, "{l}");
    }
    let drained = phase(&out.stderr, "drained");
    assert!(
        !drained.is_empty(),
        "no lines after draining:\n{}",
        out.stderr
    );
    for l in &drained {
        assert_eq!(field(l, "idleworkers"), Some(2), "{l}");
        assert_eq!(field(l, "runqueue"), Some(0), "{l}");
        assert_eq!(field(l, "tasks"), Some(0), "{l}");
    }
}

/// Writes `line` on stderr in one `write`: `eprintln!` with arguments writes each piece
/// separately, and the reporter's lines (written through its own descriptor) can land in
/// between.
fn marker(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Threads of this process according to `/proc/self/status`.
fn os_threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: line")
}

#[test]
fn threads_follow_the_process_thread_count() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(Duration::from_millis(300));
        marker(&format!("PHASE before {}", os_threads()));
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE -");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let extra: Vec<_> = (0..10)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        marker(&format!("PHASE after {}", os_threads()));
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE end");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in extra {
            t.join().expect("join");
        }
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let truth = |tag: &str| -> (u64, Vec<&str>) {
        let marker = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("PHASE {tag} ")))
            .expect("marker");
        let lines = phase(&out.stderr, tag);
        (marker.parse().expect("thread count"), lines)
    };
    let (before, before_lines) = truth("before");
    let (after, after_lines) = truth("after");
    assert_eq!(after, before + 10, "the test's own ground truth");
    assert!(
        !before_lines.is_empty() && !after_lines.is_empty(),
        "{}",
        out.stderr
    );
    for (n, lines) in [(before, before_lines), (after, after_lines)] {
        for l in lines {
            let t = field(l, "threads").expect("threads=");
            assert!(t.abs_diff(n) <= 2, "threads={t} but /proc says {n}: {l}");
        }
    }
}

#[cfg(not(tokio_unstable))]
#[test]
fn without_tokio_unstable_the_fields_are_left_out_with_one_note() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(Duration::from_millis(350));
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let sched = out.lines_starting("SCHED ");
    assert!(sched.len() >= 3, "{}", out.stderr);
    for l in sched {
        assert!(!l.contains('[') && !l.contains("blocking="), "{l}");
    }
    let notes: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.contains("tokio_unstable"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(notes[0].contains("RUSTFLAGS=\"--cfg tokio_unstable\""));
}

/// Under `tokio_unstable`: tasks spawned inside a worker sit in its local queue, and the blocking
/// pool's busy and idle threads are counted.
#[cfg(tokio_unstable)]
#[test]
fn local_queues_and_the_blocking_pool_are_right() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(Duration::from_millis(200));
        let (tx, rx) = std::sync::mpsc::channel();
        // Worker one: sleeps the thread, so it cannot steal.
        let tx1 = tx.clone();
        rt.spawn(async move {
            let _ = tx1.send(());
            std::thread::sleep(Duration::from_millis(1200));
        });
        rx.recv().expect("first blocker");
        // Worker two: spawns 10 tasks onto its own local queue, then sleeps the thread.
        rt.spawn(async move {
            for _ in 0..10 {
                tokio::spawn(async {});
            }
            let _ = tx.send(());
            std::thread::sleep(Duration::from_millis(1000));
        });
        rx.recv().expect("second blocker");
        // Three blocking-pool threads, busy for a while.
        for _ in 0..3 {
            rt.spawn_blocking(|| std::thread::sleep(Duration::from_millis(500)));
        }
        std::thread::sleep(Duration::from_millis(100));
        eprintln!("PHASE blocked");
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE -");
        std::thread::sleep(Duration::from_millis(1100));
        eprintln!("PHASE after");
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE end");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let local = |l: &str| -> Vec<u64> {
        let inner = l
            .split_once('[')
            .and_then(|(_, r)| r.strip_suffix(']'))
            .expect("[..]");
        inner
            .split(' ')
            .map(|v| v.parse().expect("depth"))
            .collect()
    };
    let blocked = phase(&out.stderr, "blocked");
    assert!(!blocked.is_empty(), "{}", out.stderr);
    for l in blocked {
        let depths = local(l);
        assert_eq!(depths.len(), 2, "{l}");
        // The first spawned task takes the LIFO slot, which is not the queue.
        let sum: u64 = depths.iter().sum();
        assert!((9..=10).contains(&sum), "local queues {depths:?}: {l}");
        assert_eq!(field(l, "blocking"), Some(3), "{l}");
        assert_eq!(field(l, "idleblocking"), Some(0), "{l}");
    }
    let after = phase(&out.stderr, "after");
    assert!(!after.is_empty(), "{}", out.stderr);
    for l in after {
        assert_eq!(local(l), [0, 0], "{l}");
        assert_eq!(field(l, "blocking"), Some(3), "{l}");
        assert_eq!(field(l, "idleblocking"), Some(3), "{l}");
    }
}
