//! What the reporter writes and what it costs: JSON lines with the text lines' fields, no
//! allocation per tick once warmed up, one `write` per line.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Keeps the reporter busy: a runtime, allocations, purges and forced cycles for `dur`.
fn workload(dur: Duration) {
    let rt = support::two_worker_runtime();
    rt.block_on(async {
        rdebug::init();
        let start = std::time::Instant::now();
        let mut round = 0u32;
        while start.elapsed() < dur {
            let held: Vec<Vec<u8>> = (0..8).map(|_| vec![1u8; 1 << 20]).collect();
            tokio::task::yield_now().await;
            drop(held);
            round += 1;
            if round % 4 == 0 {
                rdebug::free_os_memory();
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
}

/// The `key` names of a text line's `key=value` fields.
fn text_keys(line: &str) -> BTreeSet<String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

/// The JSON key (the struct's serde name) of a text line's Go-style key.
fn json_key(text_key: &str) -> &str {
    match text_key {
        "idleworkers" => "idle_workers",
        "blocking" => "blocking_threads",
        "idleblocking" => "idle_blocking_threads",
        "runqueue" => "global_queue_depth",
        k => k,
    }
}

#[test]
fn json_lines_parse_and_carry_the_text_fields() {
    let name = support::test_name!();
    if is_child(name) {
        workload(Duration::from_millis(700));
        return;
    }
    let env = "schedtrace=50,scheddetail=1,gctrace=2,gcpoll=10";
    let text = run_child(name, &[("RDEBUG", env)], Duration::from_secs(60));
    text.assert_success();
    let json = run_child(
        name,
        &[("RDEBUG", &format!("{env},format=json,bogus=1"))],
        Duration::from_secs(60),
    );
    json.assert_success();
    let mut kinds = BTreeSet::new();
    for line in json.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", json.stderr));
        let kind = v["type"].as_str().expect("type").to_owned();
        let obj = v.as_object().expect("object");
        // Every JSON line deserializes into the public struct whose serde names are its keys.
        match kind.as_str() {
            "sched" => {
                let text_line = text.lines_starting("SCHED ")[0];
                for k in text_keys(text_line) {
                    let key = json_key(&k);
                    assert!(obj.contains_key(key), "{key} ({k}) missing in {line}");
                }
                assert!(obj["ms"].is_u64());
                let s: rdebug::SchedStats = serde_json::from_str(line).expect("SchedStats");
                assert_eq!(s.workers, 2, "{line}");
                assert_eq!(Some(s.idle_workers as u64), obj["idle_workers"].as_u64());
            }
            "gc" => {
                for k in [
                    "num",
                    "at_ms",
                    "cpu_fraction",
                    "before",
                    "after",
                    "live",
                    "goal",
                    "procs",
                    "forced",
                ] {
                    assert!(obj.contains_key(k), "{k} missing in {line}");
                }
                let c: rdebug::GcCycle = serde_json::from_str(line).expect("GcCycle");
                assert_eq!(Some(c.num), obj["num"].as_u64());
                assert_eq!(c.procs, 2, "{line}");
            }
            "gcdetail" => {
                let c: rdebug::GcCycle = serde_json::from_str(line).expect("GcCycle detail");
                assert_eq!(Some(c.rss), obj["rss"].as_u64());
                assert!(c.rss > 0, "{line}");
            }
            "worker" => {
                let w: rdebug::WorkerStats = serde_json::from_str(line).expect("WorkerStats");
                assert_eq!(Some(w.park_count), obj["park_count"].as_u64());
            }
            "blocking" => {
                let s: rdebug::SchedStats = serde_json::from_str(line).expect("blocking");
                assert!(s.blocking_threads.is_some(), "{line}");
            }
            "warning" | "note" => {}
            other => panic!("unexpected type {other}: {line}"),
        }
        kinds.insert(kind);
    }
    for k in ["sched", "gc", "gcdetail", "worker", "warning"] {
        assert!(kinds.contains(k), "no {k} line:\n{}", json.stderr);
    }
    // The same numbers of gc lines would be a coincidence; their numbering must be the same.
    let gc_numbers: Vec<u64> = json
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "gc")
        .map(|v| v["num"].as_u64().expect("gc number"))
        .collect();
    assert_eq!(
        gc_numbers,
        (1..=gc_numbers.len() as u64).collect::<Vec<_>>()
    );
}

#[test]
fn the_reporter_allocates_nothing_per_tick_once_warmed_up() {
    let name = support::test_name!();
    if is_child(name) {
        let watcher = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(400));
            let r = rdebug::reporter().expect("reporter");
            let warm = r.stats();
            std::thread::sleep(Duration::from_millis(1200));
            let later = r.stats();
            println!(
                "RESULT ticks={} lines={} allocs={} bytes={} warm_allocs={}",
                later.ticks - warm.ticks,
                later.lines - warm.lines,
                later.thread_allocs - warm.thread_allocs,
                later.thread_alloc_bytes - warm.thread_alloc_bytes,
                warm.thread_allocs,
            );
        });
        workload(Duration::from_millis(1700));
        watcher.join().expect("watcher");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=10,scheddetail=1,gctrace=2,gcpoll=5")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("RESULT");
    let f = |k| support::field(line, k).unwrap();
    assert!(f("ticks") >= 100, "{line}");
    assert!(f("lines") >= 100, "{line}");
    assert!(
        f("warm_allocs") > 0,
        "the counters do see the reporter thread: {line}"
    );
    assert_eq!(f("allocs"), 0, "allocations per tick after warm-up: {line}");
    assert_eq!(f("bytes"), 0, "{line}");
}

/// The on-CPU time of the thread named `rdebug` (the reporter), ns, from its `schedstat`.
fn reporter_schedstat_ns() -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() == "rdebug" {
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// `ReporterStats::thread_cpu_ns` is the reporter thread's own CPU time, to the nanosecond: at
/// five moments of a busy second it is within 3 ms below what the kernel's `schedstat` says
/// that thread ran (the stats are as of the last tick, at most 10 ms before; clock-tick figures,
/// 10 ms apart, miss that).
#[test]
fn the_reporters_own_cpu_time_is_its_threads() {
    let name = support::test_name!();
    if is_child(name) {
        let watcher = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            let r = rdebug::reporter().expect("reporter");
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(200));
                let told = r.stats().thread_cpu_ns;
                let ran = reporter_schedstat_ns().expect("the reporter's schedstat");
                println!("RESULT told={told} ran={ran}");
            }
        });
        workload(Duration::from_millis(1300));
        watcher.join().expect("watcher");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "schedtrace=10,scheddetail=1,gctrace=2,gcpoll=5")],
        Duration::from_secs(60),
    );
    out.assert_success();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("RESULT "))
        .collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    for line in lines {
        let f = |k| support::field(line, k).unwrap();
        let (told, ran) = (f("told"), f("ran"));
        assert!(told > 0, "{line}");
        assert!(
            told <= ran && ran - told <= 3_000_000,
            "the reporter says it ran {told} ns, the kernel says {ran} ns: {line}"
        );
    }
}

/// With stderr a `SOCK_SEQPACKET` socket, every `send` arrives as one message: the reader sees
/// exactly how the reporter split its writes.
#[test]
fn each_line_is_one_write() {
    use std::os::fd::{FromRawFd, OwnedFd};

    let name = support::test_name!();
    if is_child(name) {
        workload(Duration::from_millis(500));
        return;
    }
    let mut fds = [0i32; 2];
    // SAFETY: socketpair fills two fds on success.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair");
    // SAFETY: both fds are fresh and owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The command holds our copy of the child's end: it must be dropped once spawned, or the
    // reader below never sees the end.
    let child = support::child_command(name)
        .env("RDEBUG", "schedtrace=20,scheddetail=1,gctrace=2,gcpoll=10")
        .stderr(std::process::Stdio::from(theirs))
        .spawn()
        .expect("child");
    let reader = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: reading into our buffer from our socket.
            let n = unsafe { libc::recv(ours.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            messages.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
        }
        messages
    });
    let out = support::collect(child, Duration::from_secs(60));
    let messages = reader.join().expect("reader");
    assert!(out.status.success());
    let ours: Vec<_> = messages
        .iter()
        .filter(|m| m.starts_with("SCHED ") || m.starts_with("gc ") || m.starts_with("  "))
        .collect();
    assert!(ours.len() >= 40, "{messages:?}");
    for m in ours {
        assert!(
            m.ends_with('\n') && m.matches('\n').count() == 1,
            "one write carried other than one line: {m:?}"
        );
    }
}
