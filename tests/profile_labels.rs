//! Labels that follow a future (`rdebug::labels`, Go's `pprof.Do`): CPU samples carry them and
//! the tokio task id, read back with the real `go tool pprof -tagfocus` / `-tags`.
#![cfg(feature = "pprof")]

mod support;

use std::time::{Duration, Instant};

use support::burn::{burn_a, burn_b, cpu_ns};
use support::pprof::{share_of, tags, top};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(90);

/// Burns `units` chunks in `burn` per turn, then yields, until `until`; returns this task's id
/// and the thread CPU time it burned, ns.
async fn route(until: Instant, units: u32, burn: fn(u64) -> u64) -> (tokio::task::Id, u64) {
    let mut spent = 0;
    while Instant::now() < until {
        let t0 = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        for _ in 0..units {
            burn(150_000);
        }
        spent += cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
        tokio::task::yield_now().await;
    }
    (tokio::task::id(), spent)
}

/// Two tasks on one worker take turns burning CPU 3:1 under `route=/a` and `route=/b` (the
/// truth: the thread CPU time each burned). `-tagfocus` splits the profile as the truth splits,
/// within 0.12 of the share; each route's `task_id` label is the id of the task that burned
/// for it; a label of hostile length and characters is cut, not fatal.
#[test]
fn cpu_samples_carry_labels_and_the_task_id() {
    let name = support::test_name!();
    let pb = support::temp_path("labels.pb.gz");
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let until = Instant::now() + Duration::from_millis(2600);
        let hostile = "\u{202e}\u{0}\u{fffd}é".repeat(300);
        let a = rt.spawn(rdebug::labels(&[("route", "/a")], route(until, 3, burn_a)));
        let b = rt.spawn(rdebug::labels(
            &[("route", "/b"), ("note", &hostile), ("", "empty key")],
            route(until, 1, burn_b),
        ));
        std::thread::sleep(Duration::from_millis(200));
        let p = rdebug::profile::cpu(Duration::from_secs(2), 200).expect("cpu profile");
        let (a, b) = rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) });
        println!("RESULT task_a {}", a.0);
        println!("RESULT task_b {}", b.0);
        println!("RESULT share_a {}", a.1 as f64 / (a.1 + b.1) as f64);
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let stdout = &out.stdout;
    let truth: f64 = support::result_value(stdout, "share_a");
    assert!(
        (truth - 0.75).abs() <= 0.12,
        "the scenario burned {truth:.3} in /a, not 3:1"
    );
    for r in ["/a", "/b"] {
        let t = top(&pb, &[&format!("-tagfocus=route={r}")]);
        let f = format!("burn_{}", &r[1..]);
        assert!(t.row(&f).is_some(), "{f} under route={r}:\n{}", t.text);
    }
    let t = tags(&pb, &["-tagshow=route"]);
    let a = share_of(&t, "/a");
    let b = share_of(&t, "/b");
    let share = a / (a + b);
    assert!(
        (share - truth).abs() <= 0.12,
        "/a's share: profile {share:.3}, thread CPU time {truth:.3}\n{t}"
    );
    for (r, key) in [("/a", "task_a"), ("/b", "task_b")] {
        let id: u64 = support::result_value(stdout, key);
        let t = tags(&pb, &[&format!("-tagfocus=route={r}"), "-tagshow=task_id"]);
        let ids: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("task_id:"))
            .skip(1)
            .take_while(|l| l.contains('%'))
            .collect();
        assert_eq!(ids.len(), 1, "one task id under route={r}:\n{t}");
        assert!(
            ids[0].trim_end().ends_with(&format!(": {id}")),
            "route={r}: task {id} expected:\n{t}"
        );
    }
    let t = tags(&pb, &["-tagfocus=route=/b", "-tagshow=note"]);
    let note = t
        .lines()
        .find(|l| l.contains('\u{fffd}'))
        .unwrap_or_else(|| panic!("the hostile label is missing:\n{t}"));
    assert!(note.len() < 200, "the note label is cut: {note}");
    let _ = std::fs::remove_file(&pb);
}

/// An unlabelled task on a watched runtime: once the CPU profile has found the workers, its
/// samples carry its `task_id` all the same.
#[test]
fn unlabelled_tasks_on_watched_workers_carry_their_id() {
    let name = support::test_name!();
    let pb = support::temp_path("task-id.pb.gz");
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rdebug::watch(rt.handle());
        // A first profile while the runtime is idle finds its worker.
        let _ = rdebug::profile::cpu(Duration::from_millis(100), 100).expect("warm-up");
        let until = Instant::now() + Duration::from_millis(1600);
        let task = rt.spawn(route(until, 1, burn_b));
        std::thread::sleep(Duration::from_millis(200));
        let p = rdebug::profile::cpu(Duration::from_secs(1), 200).expect("cpu profile");
        let (id, _) = rt.block_on(task).unwrap();
        println!("RESULT task {id}");
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let id: u64 = support::result_value(&out.stdout, "task");
    let t = tags(&pb, &["-tagshow=task_id"]);
    let share = share_of(&t, &id.to_string());
    assert!(share >= 80.0, "task {id}: {share}% of the samples:\n{t}");
    let _ = std::fs::remove_file(&pb);
}
