//! The debug server's endpoints against ground truths the child creates: 25 parked tasks, 2
//! workers, 64 MiB held, a forced allocator cycle, its own command line.

#![cfg(feature = "http")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::http_client::{ServerChild, get, serve_commands};
use support::is_child;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Tasks the child parks on a Notify that never fires.
const PARKED: usize = 25;

/// The child: a 2-worker runtime with `PARKED` parked tasks, `RDEBUG` from the parent; commands:
/// `tasks` (prints sched_stats().tasks), `hold` / `free` (64 MiB), `gc` (free_os_memory).
fn child_scenario() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    let never = Arc::new(tokio::sync::Notify::new());
    for _ in 0..PARKED {
        let n = never.clone();
        rt.spawn(async move { n.notified().await });
    }
    let mut held: Option<Vec<u8>> = None;
    serve_commands(|cmd| match cmd {
        "tasks" => println!("TASKS {}", rdebug::sched_stats(rt.handle()).tasks),
        "hold" => {
            held = Some(vec![7u8; 64 << 20]);
            println!("HELD {}", held.as_ref().map_or(0, Vec::len));
        }
        "free" => {
            held = None;
            println!("FREED");
        }
        "gc" => {
            rdebug::free_os_memory();
            println!("GC {}", rdebug::memstats().num_gc);
        }
        _ => println!("UNKNOWN {cmd}"),
    });
    drop(held);
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn endpoints_answer_with_go_content_types_and_true_figures() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let addr = c.addr;
    // The child answers commands once its tasks are parked.
    let tasks: usize = c.command("tasks", "TASKS ").trim().parse().expect("tasks");
    assert_eq!(tasks, PARKED);

    // Index: Go's layout, every profile linked with ?debug=1, rdebug's pages linked.
    let index = get(addr, "/debug/pprof/");
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
    let html = index.text();
    for p in [
        "allocs",
        "block",
        "cmdline",
        "goroutine",
        "heap",
        "mutex",
        "profile",
        "threadcreate",
        "trace",
    ] {
        assert!(
            html.contains(&format!("<a href='{p}?debug=1'>{p}</a>")),
            "{p}: {html}"
        );
    }
    for p in ["/debug/vars", "/metrics", "/debug/rdebug"] {
        assert!(html.contains(&format!("href=\"{p}\"")), "{p}: {html}");
    }
    assert!(
        html.contains(&format!(
            "<tr><td>{PARKED}</td><td><a href='goroutine?debug=1'>"
        )),
        "{html}"
    );
    assert_eq!(get(addr, "/debug/pprof").status, 301);

    // goroutine: the task count is sched_stats().tasks, and that is the tasks the child parked.
    let g = get(addr, "/debug/pprof/goroutine?debug=1");
    assert_eq!(
        (g.status, g.header("content-type")),
        (200, "text/plain; charset=utf-8")
    );
    let text = g.text();
    assert!(
        text.starts_with(&format!("goroutine profile: total {tasks}\n")),
        "{text}"
    );
    let main = text
        .lines()
        .find(|l| l.starts_with("# runtime main: "))
        .expect("main runtime line");
    assert_eq!(support::num(main, "tasks"), tasks as u64, "{main}");
    assert_eq!(support::num(main, "workers"), 2, "{main}");
    // debug=0 is a pprof proto, as Go's: `go tool pprof` counts the tasks, all of them waiting.
    #[cfg(feature = "pprof")]
    {
        let url = format!("http://{addr}/debug/pprof/goroutine");
        let t = support::pprof::top(std::path::Path::new(&url), &[]);
        assert_eq!(support::pprof::total(&t), tasks as f64, "{}", t.text);
        let waiting = t
            .row("tokio task waiting (runtime main)")
            .unwrap_or_else(|| panic!("{}", t.text));
        assert_eq!(waiting.flat, PARKED as f64, "{}", t.text);
        let tags = std::process::Command::new("go")
            .args(["tool", "pprof", "-tags", &url])
            .output()
            .expect("go tool pprof -tags");
        let tags = String::from_utf8_lossy(&tags.stdout);
        assert!(
            tags.contains("state: Total") && tags.contains("waiting"),
            "{tags}"
        );
    }
    let detail = get(addr, "/debug/pprof/goroutine?debug=2").text();
    assert_eq!(
        detail.lines().filter(|l| l.starts_with("#   W")).count(),
        2,
        "{detail}"
    );

    // threadcreate: the process's threads, the server's own among them.
    let t = get(addr, "/debug/pprof/threadcreate?debug=1");
    assert_eq!(
        (t.status, t.header("content-type")),
        (200, "text/plain; charset=utf-8")
    );
    let text = t.text();
    let total: u64 = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("threadcreate profile: total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).expect("status");
    let threads: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads:");
    assert_eq!(total, threads, "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .collect();
    assert_eq!(rows.len() as u64, total, "{text}");
    assert!(rows.iter().any(|r| r.ends_with("\trdebug-http")), "{text}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains("\ttokio-rt-worker"))
            .count(),
        2,
        "{text}"
    );

    // cmdline: the child's own argv, NUL-joined.
    let cmd = get(addr, "/debug/pprof/cmdline");
    assert_eq!(cmd.header("content-type"), "text/plain; charset=utf-8");
    let want = std::fs::read(format!("/proc/{}/cmdline", c.pid())).expect("cmdline");
    assert_eq!(cmd.body, want.strip_suffix(&[0]).unwrap_or(&want));

    // /debug/vars: JSON from the field tables; 2 workers; heap_alloc moves by 64 MiB held.
    let before = json(&get(addr, "/debug/vars").body);
    assert_eq!(
        get(addr, "/debug/vars").header("content-type"),
        "application/json"
    );
    assert_eq!(before["sched"][0]["runtime"], "main");
    assert_eq!(before["sched"][0]["workers"], 2);
    assert_eq!(before["sched"][0]["tasks"], PARKED);
    assert_eq!(
        before["sched"][0]["per_worker"].as_array().map(Vec::len),
        Some(2)
    );
    let m = &before["memstats"];
    assert_eq!(
        m["heap_objects"].as_u64().unwrap(),
        m["mallocs"].as_u64().unwrap() - m["frees"].as_u64().unwrap()
    );
    c.command("hold", "HELD ");
    let held = json(&get(addr, "/debug/vars").body);
    c.command("free", "FREED");
    let after = json(&get(addr, "/debug/vars").body);
    let heap =
        |v: &serde_json::Value| v["memstats"]["heap_alloc"].as_u64().expect("heap_alloc") as f64;
    let grew = heap(&held) - heap(&before);
    let shrank = heap(&held) - heap(&after);
    let mib64 = (64u64 << 20) as f64;
    println!(
        "heap_alloc: +{grew} -{shrank} bytes for 64 MiB ({:.2}%, {:.2}%)",
        100.0 * (grew / mib64 - 1.0),
        100.0 * (shrank / mib64 - 1.0)
    );
    assert!((grew / mib64 - 1.0).abs() <= 0.03, "grew {grew}");
    assert!((shrank / mib64 - 1.0).abs() <= 0.03, "shrank {shrank}");

    // Routes that answer with a reason.
    for (path, status, says) in [
        ("/debug/pprof/mutex", 404, "not available"),
        ("/debug/pprof/nosuch", 404, "Unknown profile"),
        ("/nosuch", 404, "404 page not found"),
        ("/debug/rdebug/nosuch", 404, "no such page"),
    ] {
        let a = get(addr, path);
        assert_eq!(a.status, status, "{path}");
        assert_eq!(a.header("x-go-pprof"), "1", "{path}");
        assert_eq!(
            a.header("content-type"),
            "text/plain; charset=utf-8",
            "{path}"
        );
        assert!(a.text().contains(says), "{path}: {}", a.text());
    }
    if !cfg!(feature = "pprof") {
        for p in ["profile?seconds=1", "heap", "allocs", "block?seconds=1"] {
            let a = get(addr, &format!("/debug/pprof/{p}"));
            assert_eq!(a.status, 404, "{p}");
            assert!(
                a.text().contains("`pprof` Cargo feature"),
                "{p}: {}",
                a.text()
            );
        }
    }

    let out = c.finish();
    out.assert_success();
}

#[test]
fn trace_streams_sched_and_gc_records_as_json_lines() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let mut c = ServerChild::start(name, &[("RDEBUG", "schedtrace=250,http=127.0.0.1:0")]);
    let addr = c.addr;
    // The server is up during `init()`; the child parks its tasks after it returns. Every record
    // of the window must see them, so the window opens once the child answers.
    c.command("tasks", "TASKS");
    let trace = std::thread::spawn(move || get(addr, "/debug/pprof/trace?seconds=2"));
    std::thread::sleep(Duration::from_millis(700));
    c.command("hold", "HELD ");
    c.command("free", "FREED");
    c.command("gc", "GC ");
    let t = trace.join().expect("trace thread");
    assert_eq!(t.status, 200);
    assert_eq!(t.header("content-type"), "application/x-ndjson");
    assert_eq!(
        t.header("content-disposition"),
        "attachment; filename=\"trace\""
    );
    let records: Vec<serde_json::Value> = t.text().lines().map(|l| json(l.as_bytes())).collect();
    let sched: Vec<&serde_json::Value> = records.iter().filter(|r| r["type"] == "sched").collect();
    let gcs: Vec<&serde_json::Value> = records.iter().filter(|r| r["type"] == "gc").collect();
    // 0, 250, ..., 1750 ms into the 2 s window.
    assert_eq!(sched.len(), 8, "{}", t.text());
    assert!(
        sched
            .iter()
            .all(|r| r["workers"] == 2 && r["tasks"] == PARKED),
        "{}",
        t.text()
    );
    let ms: Vec<u64> = sched
        .iter()
        .map(|r| r["ms"].as_u64().expect("ms"))
        .collect();
    let mut gaps: Vec<u64> = ms.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    println!("sched gaps (ms): {gaps:?}");
    assert!(
        (200..=300).contains(&median),
        "median gap {median} ms: {gaps:?}"
    );
    // The forced cycle the child made during the window is there, and nothing from before it.
    assert!(gcs.iter().any(|r| r["forced"] == true), "{}", t.text());
    let out = c.finish();
    out.assert_success();
}
