//! Runtimes coming and going around the reporter: runtimes built after `init()` and watched
//! later, a `current_thread` runtime (idle and busy as they are), watched runtimes shut down
//! (dropped, `shutdown_background`) while the reporter runs, and many short-lived watched
//! runtimes (rdebug's memory for them stays bounded).

mod support;

use std::time::{Duration, Instant};

use support::{field, is_child, phase_of, run_child, runtime_of};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const PERIOD_MS: u64 = 20;

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The `before=` and `after=` live-heap bytes of the child's `LIVE` line.
fn live_before_after(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("LIVE "))
        .unwrap_or_else(|| panic!("{stdout}"));
    (
        field(line, "before").unwrap(),
        field(line, "after").unwrap(),
    )
}

#[test]
fn runtimes_come_and_go_while_the_reporter_runs() {
    let name = support::test_name!();
    if is_child(name) {
        let main_rt = support::two_worker_runtime();
        main_rt.block_on(async { rdebug::init() });
        // Built after init(), watched later.
        let b = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime b");
        rdebug::watch_named(b.handle(), "b");
        let d = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime d");
        rdebug::watch_named(d.handle(), "d");
        let c = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime c");
        rdebug::watch_named(c.handle(), "c");
        let b_handle = b.handle().clone();
        std::thread::sleep(Duration::from_millis(100));

        eprintln!("PHASE c-idle");
        c.block_on(async { tokio::time::sleep(Duration::from_millis(400)).await });
        eprintln!("PHASE c-busy");
        c.block_on(async { spin(Duration::from_millis(400)) });
        eprintln!("PHASE b-down");
        drop(b);
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE d-down");
        d.shutdown_background();
        std::thread::sleep(Duration::from_millis(300));
        eprintln!("PHASE end");
        // A dead runtime's handle can still be read, and watching it again does nothing.
        let s = rdebug::sched_stats(&b_handle);
        rdebug::watch_named(&b_handle, "b-again");
        std::thread::sleep(Duration::from_millis(100));
        println!("DEAD workers={} tasks={}", s.workers, s.tasks);
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", &format!("schedtrace={PERIOD_MS}"))],
        Duration::from_secs(60),
    );
    out.assert_success();
    let err = &out.stderr;
    let ratio = |lines: &[&str], idle: u64| {
        lines
            .iter()
            .filter(|l| field(l, "idleworkers") == Some(idle))
            .count() as f64
            / lines.len().max(1) as f64
    };

    // current_thread: idle while its block_on waits, busy while it runs.
    let idle = phase_of(err, "c-idle", Some("c"));
    let busy = phase_of(err, "c-busy", Some("c"));
    assert!(
        idle.len() >= 10,
        "{} lines for c while idle\n{err}",
        idle.len()
    );
    assert!(
        busy.len() >= 10,
        "{} lines for c while busy\n{err}",
        busy.len()
    );
    for l in idle.iter().chain(&busy) {
        assert_eq!(field(l, "workers"), Some(1), "{l}");
    }
    assert!(
        ratio(&idle, 1) >= 0.9,
        "c not idle while parked:\n{idle:#?}"
    );
    assert!(
        ratio(&busy, 0) >= 0.9,
        "c not busy while spinning:\n{busy:#?}"
    );

    // b and d: lines while alive, at most one in flight after their shutdown, and one note.
    for (rt, down) in [("b", "b-down"), ("d", "d-down")] {
        let before = phase_of(err, "c-idle", Some(rt));
        assert!(before.len() >= 10, "{} lines for {rt}\n{err}", before.len());
        let after: usize = [down, "d-down", "end"]
            .iter()
            .skip(usize::from(rt == "d"))
            .map(|p| phase_of(err, p, Some(rt)).len())
            .sum();
        assert!(
            after <= 1,
            "{after} lines for {rt} after its shutdown\n{err}"
        );
        let note = format!("rdebug: note: runtime {rt} shut down; its SCHED lines stop");
        assert_eq!(out.lines_starting(&note).len(), 1, "{err}");
    }
    assert!(
        out.lines_starting("SCHED ")
            .iter()
            .all(|l| runtime_of(l) != Some("b-again"))
    );

    // The main runtime goes on through everything.
    for p in ["c-idle", "c-busy", "b-down", "d-down"] {
        let n = phase_of(err, p, None).len();
        assert!(n >= 8, "{n} main lines in phase {p}\n{err}");
    }
    assert!(
        out.stdout.contains("DEAD workers=1 tasks=0"),
        "{}",
        out.stdout
    );
}

/// With only `gctrace` on, nothing prints SCHED lines, so nothing notices dead runtimes while
/// printing: watching 500 short-lived runtimes must not keep them (or their drivers) alive.
#[test]
fn many_short_lived_watched_runtimes_stay_bounded() {
    let name = support::test_name!();
    if is_child(name) {
        let make = || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rdebug::watch(rt.handle());
            rt.block_on(async { tokio::task::yield_now().await });
            drop(rt);
        };
        for _ in 0..20 {
            make();
        }
        let before = rdebug::alloc_counters().live_bytes;
        for _ in 0..500 {
            make();
        }
        let after = rdebug::alloc_counters().live_bytes;
        println!("LIVE before={before} after={after}");
        return;
    }
    for rdebug in ["gctrace=1", "schedtrace=10", ""] {
        let env: &[(&str, &str)] = if rdebug.is_empty() {
            &[]
        } else {
            &[("RDEBUG", rdebug)]
        };
        let out = run_child(name, env, Duration::from_secs(60));
        out.assert_success();
        let (before, after) = live_before_after(&out.stdout);
        // A dead runtime kept alive costs kilobytes (its driver, timer wheel and queues): 500 of
        // them would be megabytes.
        assert!(
            after < before + (256 << 10),
            "RDEBUG={rdebug:?}: live heap grew from {before} to {after} bytes over 500 runtimes"
        );
    }
}

/// The stall ticker forgets a runtime once it is dropped: 200 short-lived watched runtimes, each
/// looked at by the ticker (`stalltrace=5`, a look every 2.5 ms, each runtime alive 15 ms), leave
/// the live heap where it was. Before, each left its entry (the runtime's id and a record per
/// worker) for the life of the process: 200 of them about 60 KB.
#[test]
fn the_stall_ticker_forgets_dropped_runtimes() {
    let name = support::test_name!();
    if is_child(name) {
        let make = || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rdebug::watch(rt.handle());
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(15)).await });
            drop(rt);
        };
        let settle = || std::thread::sleep(Duration::from_millis(100));
        rdebug::init();
        // One stall first, so that the symbol tables the STALL lines are named from are read
        // (and kept) before the count starts.
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        std::thread::sleep(Duration::from_millis(50));
        rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(40)) }))
            .expect("stall");
        drop(rt);
        for _ in 0..20 {
            make();
        }
        settle();
        let before = rdebug::alloc_counters().live_bytes;
        for _ in 0..200 {
            make();
        }
        settle();
        let after = rdebug::alloc_counters().live_bytes;
        println!("LIVE before={before} after={after}");
        return;
    }
    let out = run_child(name, &[("RDEBUG", "stalltrace=5")], Duration::from_secs(60));
    out.assert_success();
    let (before, after) = live_before_after(&out.stdout);
    assert!(
        after < before + (16 << 10),
        "live heap grew from {before} to {after} bytes over 200 runtimes the ticker saw"
    );
}
