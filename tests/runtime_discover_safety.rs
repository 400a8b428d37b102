//! The probe that finds runtimes from the allocator (`src/runtime/discover.rs`): a thread
//! probes its first calls only, and probing through tokio's own context switches (entering other
//! runtimes in tasks, `block_in_place`, `spawn_blocking`, `LocalSet`, shutdowns) never panics.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{is_child, run_child, sched_labels, some_allocations};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// The countdown: a thread probes its first few thousand calls only. A thread that made 20,000
/// allocations before it runs a current-thread runtime is past it (that runtime is not found,
/// as `docs/limits.md` says); a fresh thread's runtime is.
#[test]
fn a_thread_probes_its_first_calls_only() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let run = |warm: usize| {
            std::thread::spawn(move || {
                some_allocations(warm);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let id = rt.handle().id().to_string();
                rt.block_on(async {
                    for _ in 0..50 {
                        tokio::spawn(async { some_allocations(10) }).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
                id
            })
        };
        let (late, fresh) = (run(20_000), run(0));
        let (late, fresh) = (late.join().unwrap(), fresh.join().unwrap());
        println!("RESULT {late} {fresh}");
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=100")], TIMEOUT);
    out.assert_success();
    let ids: Vec<&str> = support::result_line(&out.stdout).split(' ').collect();
    let labels = sched_labels(&out.stderr);
    assert!(labels.contains(&format!("rt{}", ids[1])), "{}", out.stderr);
    assert!(!labels.contains(&format!("rt{}", ids[0])), "{}", out.stderr);
}

/// The probe through tokio's own context switches, on fresh threads that are all still probing:
/// tasks that enter another runtime's context and allocate inside it, nested `enter` guards
/// dropped in order, `block_in_place`, `spawn_blocking` running a current-thread runtime of its
/// own, tasks whose drop allocates when their runtime shuts down, and a `LocalSet`. A panic
/// anywhere aborts the child (a panic inside the allocator would); the runtimes are found.
#[test]
fn probing_through_tokios_context_switches_is_safe() {
    let name = support::test_name!();
    if is_child(name) {
        std::panic::set_hook(Box::new(|_| std::process::abort()));
        rdebug::init();
        struct AllocOnDrop;
        impl Drop for AllocOnDrop {
            fn drop(&mut self) {
                some_allocations(20);
            }
        }
        let mut ids = BTreeSet::new();
        for _ in 0..20 {
            let other = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            ids.insert(rt.handle().id().to_string());
            let oh = other.handle().clone();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for k in 0..8 {
                    let oh = oh.clone();
                    tasks.push(tokio::spawn(async move {
                        some_allocations(5);
                        {
                            let g1 = oh.enter();
                            some_allocations(5);
                            let h2 = tokio::runtime::Handle::current();
                            let g2 = h2.enter();
                            some_allocations(5);
                            drop(g2);
                            drop(h2);
                            drop(g1);
                        }
                        if k % 2 == 0 {
                            tokio::task::block_in_place(|| some_allocations(50));
                        }
                        tokio::task::spawn_blocking(|| {
                            let inner = tokio::runtime::Builder::new_current_thread()
                                .build()
                                .unwrap();
                            inner.block_on(async {
                                tokio::spawn(async { some_allocations(10) }).await.unwrap();
                                let local = tokio::task::LocalSet::new();
                                local
                                    .run_until(async {
                                        tokio::task::spawn_local(async { some_allocations(10) })
                                            .await
                                            .unwrap()
                                    })
                                    .await
                            })
                        })
                        .await
                        .unwrap();
                        some_allocations(5)
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                // Left running: dropped (allocating in their drop) when the runtime shuts down.
                for _ in 0..8 {
                    tokio::spawn(async {
                        let _d = AllocOnDrop;
                        std::future::pending::<()>().await;
                    });
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            });
            drop(rt);
            drop(other);
        }
        println!(
            "RESULT {}",
            ids.iter()
                .map(|i| format!("rt{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=10")], TIMEOUT);
    out.assert_success();
    let built: BTreeSet<String> = support::result_line(&out.stdout)
        .split(' ')
        .map(str::to_owned)
        .collect();
    let seen = sched_labels(&out.stderr);
    let found = built.intersection(&seen).count();
    assert!(found >= 15, "{found} of 20 runtimes found:\n{}", out.stderr);
}
