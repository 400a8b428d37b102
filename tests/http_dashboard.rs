//! `/debug/rdebug`, the live dashboard: its history against ground truths a child creates (one
//! worker kept busy, 64 MiB held), and the page itself in a real headless Chromium — live against
//! the webapp example under `hey` load, and offline on a captured `format=json` log.

#![cfg(feature = "http")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::browser;
use support::hey::Hey;
use support::http_client::{
    APP_ADDR_ENV, ServerChild, free_addr, get, serve_commands, start_app, wait_listening,
};
use support::is_child;

/// The webapp example itself (its routes, its `rdebug::init()`), run by the child.
#[allow(dead_code)]
#[path = "../examples/webapp.rs"]
mod webapp;

const MIB: f64 = (1 << 20) as f64;

/// The tests of this file run one at a time: the browser test's load would take the CPU the
/// history test measures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn ticks(text: &str) -> Vec<serde_json::Value> {
    records(text)
        .into_iter()
        .filter(|r| r["type"] == "tick")
        .collect()
}

fn f(r: &serde_json::Value, key: &str) -> f64 {
    r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {r}"))
}

/// The newest tick's `ms` now.
fn newest_ms(addr: SocketAddr) -> u64 {
    let t = ticks(&get(addr, "/debug/rdebug/history").text());
    t.last().map_or(0, |r| f(r, "ms") as u64)
}

/// The child of the history test: a 2-worker runtime; `spin` keeps one worker busy for 4 s in
/// 1 ms polls, `hold` / `free` 64 MiB.
fn history_child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    let mut held: Option<Vec<u8>> = None;
    serve_commands(|cmd| match cmd {
        "spin" => {
            let cpu0 = support::burn::cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
            let wall0 = Instant::now();
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let end = Instant::now() + Duration::from_secs(4);
                while Instant::now() < end {
                    let poll = Instant::now();
                    while poll.elapsed() < Duration::from_millis(1) {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
                let _ = tx.send(());
            });
            let _ = rx.recv();
            let cpu = support::burn::cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu0;
            // The truth for `process_cpu`: what the process got (less than a core when the
            // machine is busy with other work).
            println!(
                "SPUN {:.1}",
                cpu as f64 / wall0.elapsed().as_nanos() as f64 * 100.0
            );
        }
        "hold" => {
            held = Some(vec![7u8; 64 << 20]);
            println!("HELD");
        }
        "free" => {
            held = None;
            println!("FREED");
        }
        _ => println!("UNKNOWN {cmd}"),
    });
    drop(held);
}

/// The ticks' own figures: one worker of two busy for 4 s reads as 1 busy worker, and as the
/// process's CPU over the spin (measured by the child: ~100% of a core on an idle machine); 64 MiB held moves the live heap by 64 MiB; RSS agrees with /proc; `since` waits for the
/// next tick; a bad `since` is a 400 naming it.
#[test]
fn history_ticks_are_true() {
    let name = support::test_name!();
    if is_child(name) {
        history_child();
        return;
    }
    let _alone = alone();
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let addr = c.addr;
    std::thread::sleep(Duration::from_millis(1500));
    let before = newest_ms(addr);
    let spun = c.command("spin", "SPUN");
    let truth: f64 = spun.trim().parse().unwrap_or_else(|_| panic!("SPUN{spun}"));
    let during = ticks(&get(addr, &format!("/debug/rdebug/history?since={before}")).text());
    // The first and last ticks of the window overlap the spin only in part.
    let inner = &during[1..during.len().saturating_sub(1).max(1)];
    assert!(inner.len() >= 2, "ticks during the 4 s spin: {during:?}");
    for t in inner {
        let busy = f(t, "busy_workers");
        assert!((0.8..=1.25).contains(&busy), "busy_workers {busy}: {t}");
        assert_eq!(t["workers"], 2, "{t}");
    }
    let cpu = inner.iter().map(|t| f(t, "process_cpu")).sum::<f64>() / inner.len() as f64;
    assert!(
        (cpu - truth).abs() <= 25.0,
        "process_cpu {cpu:.1}% over the spin's ticks, the process's CPU over the spin {truth}%: \
         {inner:?}"
    );

    let wait_from = newest_ms(addr);
    let started = Instant::now();
    let next = ticks(&get(addr, &format!("/debug/rdebug/history?since={wait_from}")).text());
    assert!(
        !next.is_empty() && started.elapsed() < Duration::from_millis(1900),
        "since= waits for the next tick (1 s), not for the 2 s limit: {next:?} after {:?}",
        started.elapsed()
    );

    let heap_at = |addr| {
        let from = newest_ms(addr);
        let t = ticks(&get(addr, &format!("/debug/rdebug/history?since={from}")).text());
        t.last().expect("a tick").clone()
    };
    let base = heap_at(addr);
    c.command("hold", "HELD");
    let held = heap_at(addr);
    let rss_proc = support::rss_of(c.pid()) as f64;
    c.command("free", "FREED");
    let grew = f(&held, "heap_alloc") - f(&base, "heap_alloc");
    assert!(
        (grew - 64.0 * MIB).abs() <= 0.05 * 64.0 * MIB,
        "heap_alloc grew by {:.1} MiB while the child held 64 MiB",
        grew / MIB
    );
    let rss = f(&held, "rss");
    assert!(
        (rss - rss_proc).abs() <= 0.10 * rss_proc,
        "tick rss {rss} vs /proc {rss_proc}"
    );

    let bad = get(addr, "/debug/rdebug/history?since=soon");
    assert_eq!(bad.status, 400);
    assert!(bad.text().starts_with("bad since=soon"), "{}", bad.text());
    let out = c.finish();
    out.assert_success();
}

/// The webapp child: the webapp example (2 workers), and two ground truths on command: `stall`
/// blocks both workers for 2.5 s with 64 tasks waiting in the global queue; `threads` starts 4
/// threads that live 3 s.
fn webapp_child() {
    let handle = start_app(webapp::serve);
    serve_commands(|cmd| match cmd {
        "stall" => {
            for _ in 0..2 {
                handle.spawn(async { std::thread::sleep(Duration::from_millis(2500)) });
            }
            std::thread::sleep(Duration::from_millis(200));
            // Spawned from outside the runtime: they wait in the global queue.
            for _ in 0..64 {
                handle.spawn(async {});
            }
            println!("STALLED");
        }
        "threads" => {
            for _ in 0..4 {
                std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3)));
            }
            println!("THREADS");
        }
        _ => println!("UNKNOWN {cmd}"),
    });
}

/// The page's own account of what it drew (`<body data-state>`), per chart: the points, and per
/// series their count, distinct values, min, max and last.
fn page_state(dom: &str) -> serde_json::Value {
    let text = browser::attribute(dom, "data-state")
        .unwrap_or_else(|| panic!("no data-state on the page; DOM:\n{dom}"));
    serde_json::from_str(&text).expect("data-state is JSON")
}

fn series<'a>(state: &'a serde_json::Value, chart: &str, label: &str) -> &'a serde_json::Value {
    let s = &state["charts"][chart]["series"][label];
    assert!(
        s.is_object(),
        "no series {label:?} in chart {chart}: {state}"
    );
    s
}

const CHARTS: [&str; 7] = [
    "workers", "tasks", "queues", "threads", "heap", "cpu", "rss",
];

/// Headless Chromium opens the dashboard while hey loads the webapp: every chart has points,
/// the page takes a new tick every second, and the charts show what the test did — both workers
/// busy and 64 tasks in the global queue during the stall, 4 more threads, load on the heap and
/// the CPU. A screenshot is saved.
#[test]
fn the_live_dashboard_charts_the_webapp_under_hey() {
    let name = support::test_name!();
    if is_child(name) {
        webapp_child();
        return;
    }
    let _alone = alone();
    browser::chromium(); // fail first, clearly, when a tool is missing
    support::hey::hey();
    let app = free_addr();
    let app_env = app.to_string();
    let mut c = ServerChild::start(
        name,
        &[
            ("RDEBUG", "schedtrace=1000,gctrace=1,http=127.0.0.1:0"),
            (APP_ADDR_ENV, &app_env),
        ],
    );
    wait_listening(app);
    let body = "x".repeat(8 << 10);
    let url = format!("http://{app}/cache");
    let load = Hey::start(&[
        "-z", "14s", "-c", "4", "-q", "100", "-m", "POST", "-d", &body, &url,
    ]);
    std::thread::sleep(Duration::from_secs(3));
    c.command("stall", "STALLED");
    std::thread::sleep(Duration::from_secs(3));
    c.command("threads", "THREADS");

    // The page runs ~8 long-polls (each waits for the next real tick).
    let page = format!("http://{}/debug/rdebug", c.addr);
    let dom = browser::dump_dom(&page, Duration::from_millis(1600), Duration::from_secs(60));
    let state = page_state(&dom);
    let served = records(&get(c.addr, "/debug/rdebug/history").text());
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rdebug-dashboard.png");
    browser::screenshot(
        &page,
        &shot,
        (1400, 1500),
        Duration::from_millis(800),
        Duration::from_secs(30),
    );
    let status = load.wait(Duration::from_secs(30));
    let out = c.finish();
    println!("dashboard state: {state}\nscreenshot: {}", shot.display());

    assert!(status.success(), "hey: {status}");
    out.assert_success();
    assert_eq!(state["mode"], "live", "{state}");
    // Live: the newest tick moved on by about a second at each update.
    let newest: Vec<u64> = state["newest_ms"]
        .as_array()
        .expect("newest_ms")
        .iter()
        .map(|v| v.as_u64().expect("ms"))
        .collect();
    assert!(newest.len() >= 5, "updates: {newest:?}");
    let steps: Vec<u64> = newest.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|s| (500..=2500).contains(s)),
        "one tick a second: {steps:?}"
    );
    for chart in CHARTS {
        let c = &state["charts"][chart];
        assert!(
            c["points"].as_u64().unwrap_or(0) >= 10,
            "chart {chart} has too few points: {c}"
        );
        let changing = c["series"]
            .as_object()
            .expect("series")
            .values()
            .any(|s| s["distinct"].as_u64().unwrap_or(0) >= 2);
        assert!(changing, "chart {chart}: no series changed: {c}");
    }
    // The stall: both workers busy at a sample, 64 tasks in the global queue.
    assert_eq!(series(&state, "workers", "workers")["max"], 2, "{state}");
    assert_eq!(
        series(&state, "workers", "busy at the sample")["max"],
        2,
        "{state}"
    );
    let queued = series(&state, "queues", "global queue")["max"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        queued >= 64,
        "global queue max {queued} during the stall: {state}"
    );
    let threads = series(&state, "threads", "OS threads");
    let spread = threads["max"].as_u64().unwrap_or(0) - threads["min"].as_u64().unwrap_or(0);
    assert!(spread >= 4, "4 threads came and went: {threads}");
    // The load: the heap and the CPU moved; allocator cycles were marked.
    assert!(
        series(&state, "heap", "live")["distinct"].as_u64() >= Some(5),
        "{state}"
    );
    assert!(
        series(&state, "heap", "gc: live")["n"].as_u64() >= Some(1),
        "{state}"
    );
    let cpu = series(&state, "cpu", "process")["max"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(cpu >= 5.0, "process CPU under load: {cpu}%");
    // What the page drew is what the server served, up to the page's last tick.
    let last_ms = state["charts"]["tasks"]["last_s"].as_f64().unwrap_or(0.0) * 1000.0;
    let served_max = |kind: &str, key: &str| {
        served
            .iter()
            .filter(|r| r["type"] == kind && f(r, "ms") <= last_ms + 0.5)
            .filter_map(|r| r[key].as_f64())
            .fold(f64::MIN, f64::max)
    };
    for (chart, label, kind, key) in [
        ("cpu", "process", "tick", "process_cpu"),
        ("heap", "live", "tick", "heap_alloc"),
        ("tasks", "tasks", "sched", "tasks"),
        ("queues", "global queue", "sched", "global_queue_depth"),
        ("threads", "OS threads", "sched", "threads"),
    ] {
        let drawn = series(&state, chart, label)["max"].as_f64();
        assert_eq!(
            drawn,
            Some(served_max(kind, key)),
            "chart {chart}, {label}: the page's max vs the served {kind} records' {key}"
        );
    }
    // The screenshot is best-effort (see `browser::screenshot`); when Chromium wrote one, it is
    // a real picture.
    if let Ok(png) = std::fs::read(&shot) {
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "screenshot of {} bytes",
            png.len()
        );
    }
}

/// The log child: 48 MiB held, then released, with `format=json` traces on stderr.
fn log_child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async {
        rdebug::init();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let held = vec![3u8; 48 << 20];
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(held);
        rdebug::free_os_memory();
        tokio::time::sleep(Duration::from_millis(700)).await;
    });
}

/// The page charts a captured `format=json` log offline: SCHED figures from the sched records,
/// the heap from the gc records (its peak is the 48 MiB the child held), RSS from gcdetail.
#[test]
fn the_dashboard_charts_a_captured_json_log() {
    let name = support::test_name!();
    if is_child(name) {
        log_child();
        return;
    }
    let _alone = alone();
    browser::chromium();
    let out = support::run_child(
        name,
        &[("RDEBUG", "schedtrace=200,gctrace=2,format=json")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let log = &out.stderr;
    let state = log_page_state(log);
    println!("log state: {state}");
    assert_eq!(state["mode"], "log", "{state}");
    let sched_lines = log
        .lines()
        .filter(|l| l.contains("\"type\":\"sched\""))
        .count() as u64;
    assert!(sched_lines >= 5, "{log}");
    assert_eq!(
        series(&state, "tasks", "tasks")["n"],
        sched_lines,
        "{state}"
    );
    assert_eq!(series(&state, "workers", "workers")["max"], 2, "{state}");
    let peak = series(&state, "heap", "gc: live")["max"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (peak - 48.0 * MIB).abs() <= 0.05 * 48.0 * MIB,
        "peak live heap of the log's cycles {:.1} MiB, held 48 MiB: {state}",
        peak / MIB
    );
    assert!(
        series(&state, "rss", "gcdetail: RSS")["n"].as_u64() >= Some(1),
        "{state}"
    );
    // Live-only figures are absent from a log, and the page says so rather than drawing zeros.
    assert_eq!(series(&state, "heap", "live")["n"], 0, "{state}");
}

/// The stall-log child: both workers busy with short polls (the reporter learns the worker
/// threads), then two polls that each hold a worker 300 ms, 1.2 s apart, with `format=json`
/// traces on stderr.
fn stall_log_child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    short_polls(&rt);
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..2 {
        let done = rt.spawn(async { std::thread::sleep(Duration::from_millis(300)) });
        let _ = rt.block_on(done);
        std::thread::sleep(Duration::from_millis(1200));
    }
}

/// An opened `format=json` log marks its stalls too: two 300 ms polls with `stalltrace=100` give
/// two `stall` records, and the workers chart Chromium drew from the log carries two marks.
#[test]
fn a_captured_json_log_marks_each_stall() {
    let name = support::test_name!();
    if is_child(name) {
        stall_log_child();
        return;
    }
    let _alone = alone();
    browser::chromium();
    let out = support::run_child(
        name,
        &[("RDEBUG", "schedtrace=500,stalltrace=100,format=json")],
        Duration::from_secs(30),
    );
    out.assert_success();
    let log = &out.stderr;
    let stall_records = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "stall")
        .count();
    assert_eq!(
        stall_records, 2,
        "two 300 ms polls, two stall records: {log}"
    );
    let state = log_page_state(log);
    println!("stall log state: {state}");
    assert_eq!(state["mode"], "log", "{state}");
    assert_eq!(series(&state, "workers", "STALL lines")["n"], 2, "{state}");
    assert_eq!(state["marks"]["workers"], 2, "marks drawn: {state}");
}

/// The dashboard's state as headless Chromium drew it with `log` opened (carried in the page's
/// address), served by an rdebug debug server of this process.
fn log_page_state(log: &str) -> serde_json::Value {
    let encoded: String = log
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let server = rdebug::http::serve("127.0.0.1:0".parse().expect("addr")).expect("serve");
    let page = format!("http://{}/debug/rdebug#log={encoded}", server.local_addr());
    let dom = browser::dump_dom(&page, Duration::from_millis(500), Duration::from_secs(60));
    server.stop();
    page_state(&dom)
}

/// 400 tasks of 1 ms polls on `rt`, awaited: both workers busy, no poll long enough to stall.
fn short_polls(rt: &tokio::runtime::Runtime) {
    let tasks: Vec<_> = (0..400)
        .map(|_| {
            rt.spawn(async {
                let poll = Instant::now();
                while poll.elapsed() < Duration::from_millis(1) {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            })
        })
        .collect();
    for t in tasks {
        let _ = rt.block_on(t);
    }
}

/// The stall child: a 2-worker runtime watched by `rdebug::init()`; `block` runs one task whose
/// single poll holds its worker 300 ms (`std::thread::sleep`), `work` 400 tasks of 1 ms polls
/// (both workers busy, no stall), `count` prints the runtime's `stalls`.
fn stall_child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    serve_commands(|cmd| match cmd {
        "block" => {
            let done = rt.spawn(async { std::thread::sleep(Duration::from_millis(300)) });
            let _ = rt.block_on(done);
            println!("BLOCKED");
        }
        "work" => {
            short_polls(&rt);
            println!("WORKED");
        }
        "count" => println!("STALLS {}", rdebug::sched_stats(rt.handle()).stalls),
        _ => println!("UNKNOWN {cmd}"),
    });
}

/// Starts the stall child with `stalltrace=100`, keeps both workers busy with short polls (so
/// the reporter learns both worker threads), runs `cmds` (each followed by 2 s, so that no two
/// fall in one tick), and returns the dashboard's state as headless Chromium drew it, the
/// child's own stall count and its STALL lines.
fn stall_page(name: &str, cmds: &[(&str, &str)]) -> (serde_json::Value, u64, usize) {
    let mut c = ServerChild::start(name, &[("RDEBUG", "stalltrace=100,http=127.0.0.1:0")]);
    c.command("work", "WORKED");
    std::thread::sleep(Duration::from_millis(1500));
    for (cmd, ack) in cmds {
        c.command(cmd, ack);
        std::thread::sleep(Duration::from_secs(2));
    }
    let line = c.command("count", "STALLS");
    let counted = line
        .rsplit_once(' ')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    let page = format!("http://{}/debug/rdebug", c.addr);
    let dom = browser::dump_dom(&page, Duration::from_millis(1200), Duration::from_secs(60));
    let out = c.finish();
    out.assert_success();
    let state = page_state(&dom);
    println!("stall page state: {state}\nchild stderr:\n{}", out.stderr);
    let lines = out.lines_starting("STALL ").len();
    (state, counted, lines)
}

/// Three polls that each hold a worker 300 ms, 2 s apart, with `stalltrace=100`: the workers
/// chart Chromium drew carries exactly three stall marks (dashed lines on its canvas, counted
/// by the page's draw hook), one stall each; the child counted three and printed three STALL
/// lines.
#[test]
fn the_workers_chart_marks_each_stall() {
    let name = support::test_name!();
    if is_child(name) {
        stall_child();
        return;
    }
    let _alone = alone();
    browser::chromium();
    let (state, counted, lines) = stall_page(
        name,
        &[
            ("block", "BLOCKED"),
            ("block", "BLOCKED"),
            ("block", "BLOCKED"),
        ],
    );
    assert_eq!(
        (counted, lines),
        (3, 3),
        "the child's own stall count and STALL lines"
    );
    let stalls = series(&state, "workers", "stalls in the second");
    assert_eq!(stalls["n"], 3, "ticks with a stall: {state}");
    assert_eq!(stalls["max"], 1, "one stall a tick: {state}");
    assert_eq!(state["marks"]["workers"], 3, "marks drawn: {state}");
}

/// Busy workers (400 tasks of 1 ms polls, three times) but no poll of 100 ms: no stall, and the
/// workers chart, drawn, has no mark.
#[test]
fn the_workers_chart_has_no_mark_without_a_stall() {
    let name = support::test_name!();
    if is_child(name) {
        stall_child();
        return;
    }
    let _alone = alone();
    browser::chromium();
    let (state, counted, lines) = stall_page(name, &[("work", "WORKED"), ("work", "WORKED")]);
    assert_eq!(
        (counted, lines),
        (0, 0),
        "the child's own stall count and STALL lines"
    );
    assert!(
        state["charts"]["workers"]["points"].as_u64() >= Some(5),
        "the workers chart has its other series: {state}"
    );
    assert!(
        series(&state, "workers", "busy, mean over 1 s")["max"].as_f64() > Some(0.1),
        "the workers were busy: {state}"
    );
    assert_eq!(
        series(&state, "workers", "stalls in the second")["n"],
        0,
        "{state}"
    );
    assert_eq!(state["marks"]["workers"], 0, "marks drawn: {state}");
}
