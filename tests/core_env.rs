//! `RDEBUG` as the program sees it: unset, partly bad, strict.

mod support;

use std::time::Duration;

use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = entry.expect("task entry").path().join("comm");
        names.push(
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        );
    }
    names
}

#[test]
fn unset_starts_no_thread_and_prints_nothing() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let before = thread_names().len();
        rt.block_on(async {
            rdebug::init();
            rdebug::init();
        });
        std::thread::sleep(Duration::from_millis(200));
        let names = thread_names();
        let tasks = rdebug::sched_stats(rt.handle()).tasks;
        println!(
            "RESULT threads_before={before} threads_after={} rdebug_threads={} tasks={tasks} reporter={}",
            names.len(),
            names.iter().filter(|n| *n == "rdebug").count(),
            rdebug::reporter().is_some()
        );
        return;
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(30));
    out.assert_success();
    assert_eq!(out.stderr, "", "nothing on stderr");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("RESULT");
    let f = |k| support::field(line, k).unwrap();
    assert_eq!(f("threads_before"), f("threads_after"), "{line}");
    assert_eq!(f("rdebug_threads"), 0, "{line}");
    assert_eq!(f("tasks"), 0, "no watcher task either: {line}");
    assert!(line.ends_with("reporter=false"), "{line}");
}

#[test]
fn each_bad_item_warns_once_and_the_rest_applies() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .build()
            .expect("runtime");
        rt.block_on(async {
            rdebug::init();
            rdebug::init();
        });
        std::thread::sleep(Duration::from_millis(300));
        let cfg = rdebug::reporter().expect("a reporter").config();
        println!(
            "RESULT schedtrace={} gcpercent={}",
            cfg.schedtrace_ms(),
            cfg.gcpercent().unwrap_or(0)
        );
        return;
    }
    let out = run_child(
        name,
        &[(
            "RDEBUG",
            "schedtrace=50, bogus=1 ,gctrace=9,gcpercent=50,schedtrace",
        )],
        Duration::from_secs(30),
    );
    out.assert_success();
    let warnings = out.lines_starting("rdebug: warning: ");
    assert_eq!(
        warnings,
        [
            "rdebug: warning: bogus=1: unknown key (keys: sched{trace,detail} stalltrace gc{trace,percent,poll} format http cpu/memprofile[rate]), ignoring it",
            "rdebug: warning: gctrace=9: expected 0, 1 or 2, ignoring it",
            "rdebug: warning: schedtrace: expected key=value, e.g. schedtrace=1000, ignoring it",
        ],
        "{}",
        out.stderr
    );
    // The valid items took effect: SCHED lines every 50 ms for the 3-worker runtime.
    let sched = out.lines_starting("SCHED ");
    assert!(sched.len() >= 4, "{}", out.stderr);
    assert!(sched.iter().all(|l| l.contains("workers=3 ")));
    assert!(out.stdout.contains("RESULT schedtrace=50 gcpercent=50"));
}

#[test]
fn try_init_names_the_bad_item_and_starts_nothing() {
    let name = support::test_name!();
    if is_child(name) {
        let err = rdebug::try_init().expect_err("format=xml is not accepted");
        std::thread::sleep(Duration::from_millis(200));
        let rdebug_threads = thread_names().iter().filter(|n| *n == "rdebug").count();
        println!("RESULT {err} | threads={rdebug_threads}");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=10,format=xml")],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("RESULT RDEBUG item format=xml: expected text or json | threads=0"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr, "",
        "strict mode prints nothing, it returns the error"
    );
}

#[test]
fn try_init_with_good_items_starts_the_reporter() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async { rdebug::try_init() })
            .expect("valid RDEBUG");
        let again = rdebug::try_init();
        std::thread::sleep(Duration::from_millis(200));
        println!("RESULT again_is_err={}", again.is_err());
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=50")],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(out.stdout.contains("RESULT again_is_err=true"));
    let sched = out.lines_starting("SCHED ");
    assert!(sched.len() >= 3, "{}", out.stderr);
    // A current_thread runtime has one worker: the thread in block_on, gone idle now.
    assert!(
        sched.iter().all(|l| l.contains("workers=1 ")),
        "{}",
        out.stderr
    );
}

#[test]
fn gcpercent_alone_sets_the_goal_without_starting_a_reporter() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let held = vec![3u8; 40 << 20];
        rdebug::free_os_memory(); // closes a cycle: the goal follows the live heap
        let m = rdebug::memstats();
        println!(
            "RESULT live={} next_gc={} reporter={}",
            m.heap_alloc,
            m.next_gc,
            rdebug::reporter().is_some()
        );
        std::hint::black_box(held);
        return;
    }
    let out = run_child(name, &[("RDEBUG", "gcpercent=50")], Duration::from_secs(30));
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("RESULT");
    let live = support::field(line, "live").unwrap() as f64;
    let next_gc = support::field(line, "next_gc").unwrap() as f64;
    assert!(live >= (40 << 20) as f64, "{line}");
    // 1.5 × live, not the default 2 × live.
    assert!((next_gc / live - 1.5).abs() < 0.02, "{line}");
    assert!(line.ends_with("reporter=false"), "{line}");
    assert_eq!(out.stderr, "");
}

/// The harness itself: `test_name!()` gives the path libtest knows a test by, inside a module
/// too, so the child's `--exact` filter finds it (the spawner panics if the child ran no test).
mod nested {
    use std::time::Duration;

    use super::support;

    #[test]
    fn test_name_is_the_path_exact_matches() {
        let name = support::test_name!();
        assert_eq!(name, "nested::test_name_is_the_path_exact_matches");
        assert_eq!(
            support::test_name!(super::unset_starts_no_thread_and_prints_nothing),
            "unset_starts_no_thread_and_prints_nothing"
        );
        if support::is_child(name) {
            println!("RESULT 1");
            return;
        }
        let out = support::run_child(name, support::NO_ENV, Duration::from_secs(30));
        out.assert_success();
        assert_eq!(support::result_numbers(&out.stdout), [1]);
    }
}
