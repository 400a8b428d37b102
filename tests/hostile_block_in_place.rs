//! `tokio::task::block_in_place` hands a worker to another OS thread: rdebug follows the worker
//! there. Before, it kept reading and signalling the old thread: STALL lines showed the blocking
//! pool's idle stack, a profile of two spinning workers reported 1,977 ms blocked, and once the
//! old threads left the pool no STALL line came at all.
#![cfg(feature = "pprof")]

mod support;

use std::time::{Duration, Instant};

use support::pprof::{top, total};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(90);

/// The three stalls the STALL lines must name, in order.
#[inline(never)]
fn stall_before_the_handoff(d: Duration) {
    std::thread::sleep(std::hint::black_box(d));
}

#[inline(never)]
fn stall_after_the_handoff(d: Duration) {
    std::thread::sleep(std::hint::black_box(d));
}

#[inline(never)]
fn stall_after_the_old_threads_left(d: Duration) {
    std::thread::sleep(std::hint::black_box(d));
}

/// Keeps a worker busy on a CPU for `d`, in polls of 100 µs (no stall).
async fn spins(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        let poll = Instant::now();
        while poll.elapsed() < Duration::from_micros(100) {
            std::hint::black_box(0u64);
        }
        tokio::task::yield_now().await;
    }
}

/// Two workers whose old threads leave the blocking pool 300 ms after they idle.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(300))
        .enable_all()
        .build()
        .unwrap()
}

/// Stall, `block_in_place` on both workers, stall, the old threads leave the pool, stall: one
/// STALL line each, naming its function; then a block profile of both workers spinning reports
/// (almost) no blocked time.
#[test]
fn workers_are_followed_across_block_in_place() {
    let name = support::test_name!();
    let pb = support::temp_path("bip-block.pb.gz");
    if is_child(name) {
        let rt = runtime();
        let pause = || std::thread::sleep(Duration::from_millis(700));
        rt.block_on(async { rdebug::init() });
        pause();
        let stall = |f: fn(Duration)| {
            rt.block_on(rt.spawn(async move { f(Duration::from_millis(400)) }))
                .unwrap();
        };
        stall(stall_before_the_handoff);
        pause();
        // Both workers move to other threads: each runs one task that blocks in place.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let moved: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                rt.spawn(async move {
                    tokio::task::block_in_place(|| {
                        b.wait();
                        std::thread::sleep(Duration::from_millis(100));
                    })
                })
            })
            .collect();
        for m in moved {
            rt.block_on(m).unwrap();
        }
        pause();
        stall(stall_after_the_handoff);
        // The old threads idle 300 ms in the pool, then exit.
        std::thread::sleep(Duration::from_millis(1200));
        stall(stall_after_the_old_threads_left);
        pause();
        let spinning: Vec<_> = (0..4)
            .map(|_| rt.spawn(spins(Duration::from_millis(1500))))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let p = rdebug::profile::block(Duration::from_secs(1), 100).expect("block profile");
        for s in spinning {
            rt.block_on(s).unwrap();
        }
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        println!("RESULT stalls {}", rdebug::sched_stats(rt.handle()).stalls);
        return;
    }
    let env = [
        ("PB", pb.as_os_str()),
        ("RDEBUG", std::ffi::OsStr::new("stalltrace=50")),
    ];
    let out = run_child(name, &env, TIMEOUT);
    out.assert_success();
    let stalls = out.lines_starting("STALL ");
    assert_eq!(stalls.len(), 3, "one STALL line per stall:\n{}", out.stderr);
    support::assert_stalls_name(
        &out.stderr,
        &[
            "stall_before_the_handoff",
            "stall_after_the_handoff",
            "stall_after_the_old_threads_left",
        ],
    );
    assert_eq!(support::result_value::<u64>(&out.stdout, "stalls"), 3);
    let t = top(&pb, &[]);
    let blocked = total(&t);
    assert!(
        blocked < 50e6,
        "spinning workers block nowhere: {blocked} ns\n{}",
        t.text
    );
    let _ = std::fs::remove_file(&pb);
}
