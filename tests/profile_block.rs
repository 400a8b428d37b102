//! Block profiles (`rdebug::profile::block`, `/debug/pprof/block`) against blocking the test
//! does itself in a named function, read back with the real `go tool pprof`.
#![cfg(feature = "pprof")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdebug::profile::ProfileError;
use support::burn::burn_a;
use support::pprof::{top, total};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// Blocks its worker 20 ms, as a handler calling blocking code would; returns when it slept.
#[inline(never)]
fn sleeps_20ms() -> (Instant, Instant) {
    let t0 = Instant::now();
    std::thread::sleep(std::hint::black_box(Duration::from_millis(20)));
    (t0, Instant::now())
}

/// Time the sleeps started at `slept` were asleep within `[a, b]`: each is asleep from its
/// start for its 20 ms (what it takes after that to get a CPU back is not blocking).
fn overlap(slept: &[(Instant, Instant)], a: Instant, b: Instant) -> Duration {
    slept
        .iter()
        .map(|&(s, e)| {
            let asleep_until = e.min(s + Duration::from_millis(20));
            asleep_until.min(b).saturating_duration_since(s.max(a))
        })
        .sum()
}

/// One task sleeps 20 ms per poll (labelled `route=/sleep`) while another burns CPU, on a
/// 2-worker runtime. The 2 s block profile gives `sleeps_20ms` ≥ 80% of its delay and `burn_a`
/// under 5%; its total delay is within 30% of the time the task slept in the window (the
/// truth, measured around each sleep); its samples carry the label. Before any runtime is
/// watched a block profile is `Unavailable`; a second one meanwhile is `BlockBusy`.
#[test]
fn block_profile_shows_the_blocking_function() {
    let name = support::test_name!();
    let pb = support::temp_path("block.pb.gz");
    if is_child(name) {
        let none = rdebug::profile::block(Duration::from_millis(10), 100).err();
        println!(
            "RESULT unwatched_unavailable {}",
            u8::from(matches!(none, Some(ProfileError::Unavailable(_))))
        );
        let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let a = support::http_client::get(addr, "/debug/pprof/block?seconds=1");
        println!("RESULT http_unwatched {}", a.status);
        println!(
            "RESULT http_says_why {}",
            u8::from(a.text().contains("no tokio runtime is watched"))
        );
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        // rdebug finds the workers' threads with a short task on each, which needs them free
        // for a moment: a first (empty) profile while the runtime is idle.
        let idle = rdebug::profile::block(Duration::from_millis(100), 100).expect("idle profile");
        println!("RESULT idle_samples {}", idle.samples());
        let stop = Instant::now() + Duration::from_millis(2800);
        let slept = Arc::new(Mutex::new(Vec::new()));
        let log = slept.clone();
        let sleeper = rt.spawn(rdebug::labels(&[("route", "/sleep")], async move {
            while Instant::now() < stop {
                let s = sleeps_20ms();
                log.lock().unwrap().push(s);
                tokio::task::yield_now().await;
            }
        }));
        let burner = rt.spawn(async move {
            while Instant::now() < stop {
                burn_a(100_000);
                tokio::task::yield_now().await;
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let second = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let http = support::http_client::get(addr, "/debug/pprof/block?seconds=1").status;
            (
                rdebug::profile::block(Duration::from_millis(10), 100).err(),
                http,
            )
        });
        let a = Instant::now();
        let p = rdebug::profile::block(Duration::from_secs(2), 100).expect("block profile");
        let b = a + p.duration();
        rt.block_on(async {
            sleeper.await.unwrap();
            burner.await.unwrap();
        });
        let truth = overlap(&slept.lock().unwrap(), a, b);
        println!("RESULT truth_ns {}", truth.as_nanos());
        let (second, http) = second.join().unwrap();
        println!(
            "RESULT second_busy {}",
            u8::from(second == Some(ProfileError::BlockBusy))
        );
        println!("RESULT http_second {http}");
        server.stop();
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let r = |k| support::result_value::<f64>(&out.stdout, k);
    assert_eq!(r("unwatched_unavailable"), 1.0);
    assert_eq!(r("second_busy"), 1.0, "a second block profile meanwhile");
    assert_eq!(r("http_unwatched"), 503.0, "no runtime watched");
    assert_eq!(r("http_says_why"), 1.0);
    assert_eq!(r("http_second"), 409.0, "/debug/pprof/block while one runs");
    assert_eq!(r("idle_samples"), 0.0, "an idle runtime blocks nowhere");
    let t = top(&pb, &[]);
    let all = total(&t);
    let row = |f: &str| t.row(f).map_or(0.0, |r| r.cum);
    let sleep = row("sleeps_20ms");
    assert!(
        sleep >= 0.8 * all,
        "sleeps_20ms {sleep} of {all}:\n{}",
        t.text
    );
    assert!(
        row("burn_a") <= 0.05 * all,
        "burn_a blocks nothing:\n{}",
        t.text
    );
    let truth = r("truth_ns");
    assert!(
        (all - truth).abs() <= 0.3 * truth,
        "delay {all} ns, slept {truth} ns:\n{}",
        t.text
    );
    assert!(
        t.header.iter().any(|l| l.contains("Type: delay")),
        "{:?}",
        t.header
    );
    let labelled = top(&pb, &["-tagfocus=route=/sleep"]);
    assert!(
        labelled.row("sleeps_20ms").is_some(),
        "block samples carry the labels:\n{}",
        labelled.text
    );
    let _ = std::fs::remove_file(&pb);
}

/// Waits for `m`, held most of the time by another thread: the place a lock wait must show.
#[inline(never)]
fn waits_for_lock(m: &Mutex<u64>) {
    *m.lock().unwrap() += 1;
}

/// A task waiting on a `std::sync::Mutex` that a plain thread holds 30 ms at a time: the
/// waiting function holds at least 80% of the block profile's delay.
#[test]
fn a_lock_wait_is_attributed_to_the_waiting_function() {
    let name = support::test_name!();
    let pb = support::temp_path("lock.pb.gz");
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        let _ = rdebug::profile::block(Duration::from_millis(100), 100).expect("idle profile");
        let stop = Instant::now() + Duration::from_millis(2000);
        let lock = Arc::new(Mutex::new(0u64));
        let holder = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                while Instant::now() < stop {
                    let g = lock.lock().unwrap();
                    std::thread::sleep(Duration::from_millis(30));
                    drop(g);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let waiter = rt.spawn(async move {
            while Instant::now() < stop {
                waits_for_lock(&lock);
                tokio::task::yield_now().await;
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let p = rdebug::profile::block(Duration::from_millis(1500), 100).expect("block profile");
        rt.block_on(async { waiter.await.unwrap() });
        holder.join().unwrap();
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let t = top(&pb, &[]);
    let all = total(&t);
    let waits = t.row("waits_for_lock").map_or(0.0, |r| r.cum);
    assert!(
        all > 0.0 && waits >= 0.8 * all,
        "waits_for_lock {waits} of {all}:\n{}",
        t.text
    );
    let _ = std::fs::remove_file(&pb);
}

/// Context switches (voluntary + involuntary) of this process's tokio worker threads, found by
/// the name the test gives them, and how many there are.
fn worker_switches() -> (u64, usize) {
    let mut total = 0;
    let mut n = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "idle-worker" {
            continue;
        }
        n += 1;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    (total, n)
}

/// An idle watched runtime while a 1 s block profile runs at 100 Hz: its parked workers get no
/// signal, so their threads do not switch at all (Go's promise: an idle service stays idle).
#[test]
fn parked_workers_are_never_disturbed() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("idle-worker")
            .build()
            .unwrap();
        rdebug::watch(rt.handle());
        // The first profile finds the workers' threads (a short task on each), then they park.
        let _ = rdebug::profile::block(Duration::from_millis(200), 100).expect("warm-up");
        std::thread::sleep(Duration::from_millis(300));
        let (before, n) = worker_switches();
        let p = rdebug::profile::block(Duration::from_secs(1), 100).expect("block profile");
        let (after, _) = worker_switches();
        println!("RESULT workers {n}");
        println!("RESULT switches {}", after - before);
        println!("RESULT samples {}", p.samples());
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    let r = |k| support::result_value::<u64>(&out.stdout, k);
    assert_eq!(r("workers"), 2);
    assert_eq!(r("switches"), 0, "parked workers woke up");
    assert_eq!(r("samples"), 0);
}

/// A client that gives up on `/debug/pprof/block?seconds=30` after 1 s ends that profile: a
/// `block?seconds=1` asked right after (409s retried every 50 ms) answers 200 (the one block
/// profile's place is free again) within 3 s, as the CPU route does when its client leaves.
#[test]
fn a_block_profile_ends_when_its_client_leaves() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        let _ = rdebug::profile::block(Duration::from_millis(100), 100).expect("idle profile");
        let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let gave_up = support::http_client::get_within(
            addr,
            "/debug/pprof/block?seconds=30",
            &[],
            Duration::from_secs(1),
        );
        println!("RESULT gave_up {}", u8::from(gave_up.is_none()));
        // The server learns that the client left when its connection closes: a request sent
        // at the same moment may still find the place taken, so 409s are retried for 3 s.
        let t0 = Instant::now();
        let (mut status, mut conflicts) = (0, 0);
        while t0.elapsed() < Duration::from_secs(3) {
            let next = support::http_client::get_within(
                addr,
                "/debug/pprof/block?seconds=1",
                &[],
                Duration::from_secs(10),
            );
            status = next.map_or(0, |a| a.status);
            if status != 409 {
                break;
            }
            conflicts += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("RESULT next_status {status}");
        println!("RESULT next_conflicts {conflicts}");
        println!("RESULT next_ms {}", t0.elapsed().as_millis());
        server.stop();
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    let r = |k| support::result_value::<u64>(&out.stdout, k);
    assert_eq!(r("gave_up"), 1, "the first client got an answer within 1 s");
    assert_eq!(
        r("next_status"),
        200,
        "the block profile outlived its client"
    );
    assert!(
        r("next_ms") <= 3000,
        "next profile took {} ms",
        r("next_ms")
    );
}
