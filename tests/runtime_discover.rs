//! Runtimes rdebug is never handed, found from the allocator once `rdebug::init()` ran with
//! `rdebug::Alloc` as the global allocator: a library's private server runtime (SCHED and STALL
//! lines), four current-thread runtimes on four threads, a runtime built and dropped 100 times,
//! `init()` before any runtime, the main runtime beside a library's, and the debug server alone.
//! The probe's countdown and its safety: `runtime_discover_safety.rs`.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::{is_child, run_child, sched_labels, some_allocations};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// A library as a user cannot change it: it builds its multi-thread runtime privately and serves
/// HTTP-like requests on `listener` until `stop`; the request `GET /block` blocks its poll 300 ms
/// (in [`blocks_in_poll_300ms`]). Returns its runtime's id.
mod library {
    use super::*;

    pub fn serve(listener: TcpListener, stop: Instant) -> String {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let id = rt.handle().id().to_string();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while Instant::now() < stop {
                let Ok(Ok((conn, _))) =
                    tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
                else {
                    continue;
                };
                tokio::spawn(answer(conn));
            }
        });
        id
    }

    async fn answer(mut conn: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.ends_with(b"\r\n\r\n") && buf.len() < 4096 {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request = String::from_utf8_lossy(&buf).into_owned();
        if request.starts_with("GET /block ") {
            blocks_in_poll_300ms();
        }
        let body = format!("{} bytes\n", some_allocations(20));
        let reply = format!(
            "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
    }

    #[inline(never)]
    pub fn blocks_in_poll_300ms() {
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn request(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

/// A library's private multi-thread runtime gets SCHED lines (`runtime=rt<id>`, 2 workers) and a
/// 300 ms blocking poll in it one STALL line naming the runtime (and, with `pprof`, the function).
#[test]
fn a_library_runtime_gets_sched_and_stall_lines() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init(); // outside any runtime, before the library builds one
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Instant::now() + Duration::from_millis(2500);
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            for _ in 0..10 {
                assert!(request(addr, "/").contains("200 OK"));
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(300));
            assert!(request(addr, "/block").contains("200 OK"));
            for _ in 0..5 {
                request(addr, "/");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let id = library::serve(listener, stop);
        client.join().unwrap();
        println!("RESULT {id}");
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=100,stalltrace=50")], TIMEOUT);
    out.assert_success();
    let label = format!("runtime=rt{} ", support::result_line(&out.stdout));
    let sched: Vec<&str> = out
        .lines_starting("SCHED ")
        .into_iter()
        .filter(|l| l.contains(&label))
        .collect();
    assert!(
        sched.len() >= 10,
        "SCHED lines for {label}:\n{}",
        out.stderr
    );
    assert!(
        sched.iter().all(|l| support::num(l, "workers") == 2),
        "{}",
        out.stderr
    );
    let stalls = out.lines_starting("STALL ");
    assert_eq!(stalls.len(), 1, "one STALL line:\n{}", out.stderr);
    assert!(stalls[0].contains(&label), "{}", stalls[0]);
    let polled: u64 = stalls[0]
        .split_once("polled=")
        .and_then(|(_, v)| v.strip_suffix("ms")?.parse().ok())
        .unwrap_or_else(|| panic!("no polled= in {:?}", stalls[0]));
    assert!((50..300).contains(&polled), "{}", stalls[0]);
    #[cfg(feature = "pprof")]
    assert!(
        out.stderr.contains("blocks_in_poll_300ms"),
        "the stall's stack names the blocking function:\n{}",
        out.stderr
    );
}

/// Four threads, each running a current-thread runtime (two named with tokio's builder, two
/// not): four runtimes watched at once, labelled by their names or `rt<id>`.
#[test]
fn four_current_thread_runtimes_are_each_watched_and_named() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let stop = Instant::now() + Duration::from_millis(1500);
        let threads: Vec<_> = (0..4)
            .map(|k| {
                std::thread::spawn(move || {
                    let mut b = tokio::runtime::Builder::new_current_thread();
                    b.enable_all();
                    if k < 2 {
                        b.name(format!("shard-{k}"));
                    }
                    let rt = b.build().expect("runtime");
                    let id = rt.handle().id().to_string();
                    rt.block_on(async move {
                        while Instant::now() < stop {
                            tokio::spawn(async { some_allocations(10) }).await.unwrap();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    });
                    if k < 2 {
                        format!("shard-{k}")
                    } else {
                        format!("rt{id}")
                    }
                })
            })
            .collect();
        let labels: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        println!("RESULT {}", labels.join(" "));
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=100")], TIMEOUT);
    out.assert_success();
    let expected: BTreeSet<String> = support::result_line(&out.stdout)
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(expected.len(), 4);
    assert_eq!(sched_labels(&out.stderr), expected, "{}", out.stderr);
    // At some tick all four were watched at once, each on its own line with 1 worker.
    let mut ticks: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
    for l in out.lines_starting("SCHED ") {
        let (ms, rest) = l.split_once(": ").unwrap();
        if let Some(label) = support::runtime_of(rest) {
            assert_eq!(support::num(l, "workers"), 1, "{l}");
            ticks.entry(ms).or_default().insert(label);
        }
    }
    assert!(
        ticks.values().any(|t| t.len() == 4),
        "no tick with all four:\n{}",
        out.stderr
    );
}

/// A runtime built, used and dropped 100 times: each one is found (rdebug's idle task appears in
/// it), then stops being watched (one "shut down" note each); the watched list stays small and
/// the heap does not grow with the count.
#[test]
fn a_runtime_built_and_dropped_100_times_is_watched_and_forgotten_each_time() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let in_use = || {
            let c = rdebug::alloc_counters();
            c.allocated_bytes.saturating_sub(c.freed_bytes)
        };
        let mut found = 0;
        let mut ids = Vec::new();
        let mut heap_at_10 = 0;
        for round in 0..100 {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            ids.push(rt.handle().id().to_string());
            // Our task runs for as long as it takes rdebug's idle task to appear (watched).
            let watched = rt.block_on(async {
                tokio::spawn(async {
                    let until = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < until {
                        some_allocations(5);
                        let m = tokio::runtime::Handle::current().metrics();
                        if m.num_alive_tasks() >= 2 {
                            return true;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    false
                })
                .await
                .unwrap()
            });
            found += usize::from(watched);
            drop(rt);
            if round == 9 {
                heap_at_10 = in_use();
            }
        }
        // Let the reporter see the last one go.
        std::thread::sleep(Duration::from_millis(300));
        println!(
            "RESULT {found} {} {}",
            in_use().saturating_sub(heap_at_10),
            ids.join(",")
        );
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=20")], TIMEOUT);
    out.assert_success();
    let result: Vec<&str> = support::result_line(&out.stdout).split(' ').collect();
    assert_eq!(result[0], "100", "runtimes found:\n{}", out.stderr);
    let growth: u64 = result[1].parse().unwrap();
    assert!(
        growth < 2 << 20,
        "heap grew {growth} bytes over 90 runtimes"
    );
    let gone: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" shut down; its SCHED lines stop"))
        .collect();
    for id in result[2].split(',') {
        let note = format!("runtime rt{id} shut down;");
        assert_eq!(
            gone.iter().filter(|l| l.contains(&note)).count(),
            1,
            "{note}\n{}",
            out.stderr
        );
    }
    // The watched list stays small: no tick shows more than two runtimes.
    let mut per_tick: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in out.lines_starting("SCHED ") {
        *per_tick.entry(l.split_once(": ").unwrap().0).or_default() += 1;
    }
    assert!(per_tick.values().all(|&n| n <= 2), "{per_tick:?}");
}

/// `init()` before any runtime exists, then a runtime starts at once: it is found before the
/// reporter's second SCHED tick, so no "no tokio runtime is watched" warning is printed, and its
/// lines come.
#[test]
fn init_before_any_runtime_gives_no_warning_once_one_is_found() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        let rt = support::two_worker_runtime();
        let id = rt.handle().id().to_string();
        rt.block_on(async {
            let stop = Instant::now() + Duration::from_millis(1000);
            while Instant::now() < stop {
                tokio::spawn(async { some_allocations(10) }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        println!("RESULT {id}");
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=200")], TIMEOUT);
    out.assert_success();
    assert!(
        out.lines_starting("rdebug: warning: ").is_empty(),
        "{}",
        out.stderr
    );
    let label = format!("runtime=rt{} ", support::result_line(&out.stdout));
    let sched = out.lines_starting("SCHED ");
    assert!(
        sched.iter().filter(|l| l.contains(&label)).count() >= 4,
        "{}",
        out.stderr
    );
}

/// `init()` inside the main runtime, and a library's runtime elsewhere: both are watched, the
/// main one without `runtime=`, the library's as `rt<id>`.
#[test]
fn the_main_runtime_and_a_library_runtime_are_both_watched() {
    let name = support::test_name!();
    if is_child(name) {
        let main = support::two_worker_runtime();
        main.block_on(async { rdebug::init() });
        let library = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(3)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..60 {
                    tokio::spawn(async { some_allocations(10) }).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            rt.handle().id().to_string()
        });
        main.block_on(async {
            for _ in 0..60 {
                tokio::spawn(async { some_allocations(10) }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        println!("RESULT {}", library.join().unwrap());
        return;
    }
    let out = run_child(name, &[("RDEBUG", "schedtrace=100")], TIMEOUT);
    out.assert_success();
    let label = format!("rt{}", support::result_line(&out.stdout));
    let sched = out.lines_starting("SCHED ");
    let main: Vec<_> = sched.iter().filter(|l| !l.contains("runtime=")).collect();
    let lib: Vec<_> = sched
        .iter()
        .filter(|l| l.contains(&format!("runtime={label} ")))
        .collect();
    assert!(main.len() >= 4 && lib.len() >= 3, "{}", out.stderr);
    assert!(
        main.iter().all(|l| support::num(l, "workers") == 2),
        "{}",
        out.stderr
    );
    assert!(
        lib.iter().all(|l| support::num(l, "workers") == 3),
        "{}",
        out.stderr
    );
    assert_eq!(sched_labels(&out.stderr), BTreeSet::from([label]));
}

/// With only the debug server on (`RDEBUG=http=`), a library's runtime is on its pages: found at
/// a request, `/debug/vars` lists it with the 5 tasks it runs, and its block profile answers 200
/// (503 when no runtime is watched).
#[cfg(feature = "http")]
#[test]
fn the_debug_server_shows_a_library_runtime() {
    let name = support::test_name!();
    let addr = support::http_client::free_addr();
    if is_child(name) {
        let addr: std::net::SocketAddr = std::env::var("ADDR").unwrap().parse().unwrap();
        rdebug::init();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let _ = tx.send(rt.handle().id().to_string());
            rt.block_on(async {
                for _ in 0..5 {
                    tokio::spawn(async {
                        loop {
                            some_allocations(5);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    });
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        });
        let id = rx.recv().unwrap();
        let label = format!("rt{id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let tasks = loop {
            let vars = support::http_client::get(addr, "/debug/vars");
            let v: serde_json::Value = serde_json::from_slice(&vars.body).unwrap();
            let tasks = v["sched"].as_array().and_then(|rts| {
                rts.iter()
                    .find(|r| r["runtime"] == label.as_str())
                    .and_then(|r| r["tasks"].as_u64())
            });
            if tasks.is_some() || Instant::now() > deadline {
                break tasks.unwrap_or(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let block = support::http_client::get(addr, "/debug/pprof/block?seconds=1");
        println!("RESULT {tasks} {}", block.status);
        return;
    }
    let out = run_child(
        name,
        &[
            ("RDEBUG", format!("http={addr}")),
            ("ADDR", addr.to_string()),
        ],
        TIMEOUT,
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "5 200", "{}", out.stderr);
}
