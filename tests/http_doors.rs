//! The debug server's doors, with real HTTP requests against a child's server: the token on every
//! page that shows the process (and with `go tool pprof`), the start-up refusals (a token too
//! long, a public address without a token), DNS rebinding (`Host`) and cross-site requests, and
//! the lock-outs (long-polls, a second heap dump, a profile whose client left, HEAD).
#![cfg(feature = "pprof")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::http_client::{self, SERVER_NOTE, ServerChild, get, get_within, serve_commands};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TOKEN: &str = "s3cret-door";

/// The child: `RDEBUG=http=...` on a 2-worker runtime; runs until stdin closes.
fn child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    let held = std::hint::black_box(vec![7u8; 8 << 20]);
    serve_commands(|_| {});
    drop(held);
}

fn with(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> http_client::Answer {
    get_within(addr, target, headers, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer to GET {target} {headers:?}"))
}

/// Every route that shows the process, as a token holder asks for it.
const GUARDED: &[&str] = &[
    "/debug/pprof/",
    "/debug/pprof/heap",
    "/debug/pprof/allocs",
    "/debug/pprof/profile?seconds=1",
    "/debug/pprof/trace?seconds=1",
    "/debug/pprof/goroutine?debug=1&dump=1",
    "/debug/pprof/goroutine?debug=2",
    "/debug/pprof/threadcreate",
    "/debug/pprof/cmdline",
    "/debug/vars",
    "/metrics",
    "/debug/rdebug/history",
    "/debug/rdebug/history?since=0",
];

#[test]
fn every_page_that_shows_the_process_needs_the_token() {
    let name = support::test_name!();
    if is_child(name) {
        child();
        return;
    }
    let c = ServerChild::start(
        name,
        &[("RDEBUG", "http=127.0.0.1:0"), ("RDEBUG_HTTP_TOKEN", TOKEN)],
    );
    let addr = c.addr;
    let bearer = format!("Bearer {TOKEN}");
    let lower = format!("bearer {TOKEN}");
    for path in GUARDED {
        let sep = if path.contains('?') { '&' } else { '?' };
        let none = get(addr, path);
        assert_eq!(none.status, 401, "{path}: {}", none.text());
        assert_eq!(none.header("www-authenticate"), "Bearer", "{path}");
        let wrong = get(addr, &format!("{path}{sep}token=nope"));
        assert_eq!(wrong.status, 403, "{path}");
        let wrong = with(addr, path, &[("authorization", "Bearer nope")]);
        assert_eq!(wrong.status, 403, "{path}");
        let by_query = get(addr, &format!("{path}{sep}token={TOKEN}"));
        assert_eq!(by_query.status, 200, "{path}: {}", by_query.text());
        let by_header = with(addr, path, &[("authorization", &bearer)]);
        assert_eq!(by_header.status, 200, "{path}: {}", by_header.text());
        let any_case = with(addr, path, &[("authorization", &lower)]);
        assert_eq!(any_case.status, 200, "{path}: scheme without case");
    }
    // The argv in /debug/vars is what the token now guards.
    let vars = get(addr, &format!("/debug/vars?token={TOKEN}"));
    assert!(vars.text().contains("\"cmdline\":["), "{}", vars.text());
    // The dashboard's own files show nothing of the process: open.
    for path in ["/debug/rdebug", "/debug/rdebug/dashboard.js"] {
        assert_eq!(get(addr, path).status, 200, "{path}");
    }
    // `go tool pprof` passes the token in the URL.
    let heap = support::pprof::top(
        Path::new(&format!("http://{addr}/debug/pprof/heap?token={TOKEN}")),
        &["-sample_index=inuse_space"],
    );
    assert!(!heap.rows.is_empty(), "{}", heap.text);
    let refused = std::process::Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(format!("http://{addr}/debug/pprof/heap"))
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("RDEBUG_HTTP_TOKEN"),
        "{}: {said}",
        refused.status
    );
    c.finish().assert_success();
}

/// The axum router mounted in an app's own server guards the same routes.
#[test]
fn the_axum_router_needs_the_token_too() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async {
            let app = axum::Router::new().merge(rdebug::http::router());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            // The note ServerChild looks for.
            eprintln!("{SERVER_NOTE}{addr}/debug/pprof/");
            tokio::spawn(async move { axum::serve(listener, app).await });
            tokio::task::spawn_blocking(|| serve_commands(|_| {}))
                .await
                .expect("stdin");
        });
        return;
    }
    let c = ServerChild::start(name, &[("RDEBUG_HTTP_TOKEN", TOKEN)]);
    let addr = c.addr;
    for path in [
        "/debug/vars",
        "/metrics",
        "/debug/pprof/cmdline",
        "/debug/pprof/heap",
    ] {
        assert_eq!(get(addr, path).status, 401, "{path}");
        let ok = get(addr, &format!("{path}?token={TOKEN}"));
        assert_eq!(ok.status, 200, "{path}: {}", ok.text());
    }
    let rebound = with(addr, "/debug/vars", &[("host", "evil.example")]);
    assert_eq!(rebound.status, 403);
    c.finish().assert_success();
}

/// A token over 1 KiB could never match: the server does not start, and says why in one line.
#[test]
fn a_token_over_1_kib_is_refused_at_start() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        println!(
            "RESULT {}",
            rdebug::http::serve("127.0.0.1:0".parse().unwrap()).is_err()
        );
        return;
    }
    let long = "x".repeat(1025);
    let out = run_child(
        name,
        &[
            ("RDEBUG", "http=127.0.0.1:0"),
            ("RDEBUG_HTTP_TOKEN", long.as_str()),
        ],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "true");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "rdebug: warning: debug server: RDEBUG_HTTP_TOKEN is 1025 bytes long; at most 1024 are \
          accepted; going on without it"
        ],
        "{}",
        out.stderr
    );
}

/// A non-loopback address without a token does not serve; the line names the opt-in, which
/// then serves (with one warning).
#[test]
fn a_public_address_without_a_token_needs_the_opt_in() {
    let name = support::test_name!();
    if is_child(name) {
        rdebug::init();
        println!(
            "RESULT {}",
            rdebug::http::serve("0.0.0.0:0".parse().unwrap()).is_ok()
        );
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "http=0.0.0.0:0")],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "false");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].starts_with("rdebug: warning: debug server: refusing to serve on 0.0.0.0:0")
            && lines[0].contains("RDEBUG_HTTP_PUBLIC=1"),
        "{}",
        lines[0]
    );
    let out = run_child(
        name,
        &[("RDEBUG", "http=0.0.0.0:0"), ("RDEBUG_HTTP_PUBLIC", "1")],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "true");
    assert!(out.stderr.contains(SERVER_NOTE), "{}", out.stderr);
    assert_eq!(
        out.lines_starting("rdebug: warning: ").len(),
        2,
        "{}",
        out.stderr
    );
}

/// DNS rebinding: a `Host` that is neither a loopback name nor an IP literal is refused on every
/// page, unless named in `RDEBUG_HTTP_HOSTS`. Cross-site requests are refused on every page
/// with a cost or a secret, and answered from the same origin, `curl` or a typed URL.
#[test]
fn rebinding_and_cross_site_requests_are_refused() {
    let name = support::test_name!();
    if is_child(name) {
        child();
        return;
    }
    let c = ServerChild::start(
        name,
        &[
            ("RDEBUG", "http=127.0.0.1:0"),
            ("RDEBUG_HTTP_HOSTS", "box.internal"),
        ],
    );
    let addr = c.addr;
    let port = addr.port();
    let costly = [
        "/debug/pprof/profile?seconds=1",
        "/debug/pprof/heap?gc=1",
        "/debug/pprof/goroutine?debug=1&dump=1",
        "/debug/pprof/cmdline",
        "/debug/vars",
        "/metrics",
        "/debug/rdebug/history",
    ];
    let evil = format!("evil.example:{port}");
    for path in costly.iter().chain(&["/debug/pprof/", "/debug/rdebug"]) {
        let r = with(addr, path, &[("host", &evil)]);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.text().contains("RDEBUG_HTTP_HOSTS"), "{}", r.text());
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("box.internal:{port}"),
        "app.localhost".to_owned(),
    ] {
        assert_eq!(
            with(addr, "/debug/vars", &[("host", &host)]).status,
            200,
            "{host}"
        );
    }
    let own = format!("http://127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    for path in costly {
        for refused in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")],
            &[("origin", "http://evil.example")],
            &[("origin", &other_port)],
            &[("origin", "null")],
        ] {
            let r = with(addr, path, refused);
            assert_eq!(r.status, 403, "{path} {refused:?}: {}", r.text());
            assert_eq!(r.header("x-go-pprof"), "1");
        }
        for fine in [
            &[("sec-fetch-site", "same-origin"), ("origin", own.as_str())][..],
            &[("sec-fetch-site", "none")],
            &[],
        ] {
            let r = with(addr, path, fine);
            assert_eq!(r.status, 200, "{path} {fine:?}: {}", r.text());
        }
    }
    // The page itself may be opened from a link on another site.
    let page = with(addr, "/debug/rdebug", &[("sec-fetch-site", "cross-site")]);
    assert_eq!(page.status, 200);
    c.finish().assert_success();
}

/// Sends raw `bytes` on a fresh connection and returns it (the answers are not read).
fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("send");
    s
}

/// Lock-outs: long-polls cannot fill every connection slot; a heap dump while another is made
/// gets 409; a CPU profile whose client left frees its slot; HEAD runs no profile.
#[test]
fn no_client_can_lock_the_others_out() {
    let name = support::test_name!();
    if is_child(name) {
        child();
        return;
    }
    let c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let addr = c.addr;

    // 64 connections (every slot), each with 5 pipelined long-polls for a tick that never comes:
    // 10 s of waiting each, were every one allowed to wait.
    let poll = format!(
        "GET /debug/rdebug/history?since={} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        u64::MAX
    )
    .repeat(5);
    let polls: Vec<TcpStream> = (0..64).map(|_| send(addr, poll.as_bytes())).collect();
    std::thread::sleep(Duration::from_millis(500));
    let vars = get_within(addr, "/debug/vars", &[], Duration::from_secs(5));
    assert_eq!(
        vars.map(|a| a.status),
        Some(200),
        "locked out by long-polls"
    );
    drop(polls);

    // HEAD of a 300 s profile answers without profiling, and leaves the slot free.
    let mut head = send(
        addr,
        format!("HEAD /debug/pprof/profile?seconds=300 HTTP/1.1\r\nHost: {addr}\r\n\r\n")
            .as_bytes(),
    );
    head.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = [0u8; 256];
    let n = head.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "HEAD: {answer:?}");
    assert_eq!(get(addr, "/debug/pprof/profile?seconds=1").status, 200);

    // A 300 s profile whose client leaves after a second stops, and the next one runs.
    let gone = send(
        addr,
        format!("GET /debug/pprof/profile?seconds=300 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(addr, "/debug/pprof/profile?seconds=1").status, 409);
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut statuses = Vec::new();
    loop {
        let s = get(addr, "/debug/pprof/profile?seconds=1").status;
        statuses.push(s);
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the profile of a client that left still runs: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Heap dumps at once: one is made, the others get 409 rather than queueing.
    let mut seen = Vec::new();
    for _ in 0..10 {
        let round: Vec<u16> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| get(addr, "/debug/pprof/heap").status))
                .collect();
            hs.into_iter().map(|h| h.join().expect("client")).collect()
        });
        assert!(round.iter().all(|s| [200, 409].contains(s)), "{round:?}");
        seen.extend(round);
        if seen.contains(&409) && seen.contains(&200) {
            break;
        }
    }
    assert!(seen.contains(&409) && seen.contains(&200), "{seen:?}");
    c.finish().assert_success();
}

/// Whether the server closed `s` (end of stream, or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (a 408, say) before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

/// The connection limits: at 64 open connections a new one closes the oldest idle one and is
/// answered; a client that never finishes its request head is closed after the header timeout
/// (10 s).
#[test]
fn connection_cap_evicts_the_oldest_idle_and_slow_heads_time_out() {
    let name = support::test_name!();
    if is_child(name) {
        child();
        return;
    }
    let c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let addr = c.addr;
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // all accepted
    let vars = get(addr, "/debug/vars");
    assert_eq!(vars.status, 200, "the 65th connection is answered");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(5)),
        "the oldest idle connection was not closed to make room"
    );
    assert!(
        !closed_within(&mut idle[1], Duration::from_millis(200)),
        "more than one connection was closed"
    );
    drop(idle);
    let mut slow = send(addr, b"GET /debug/vars HTTP/1.1\r\nHost: localhost\r\n");
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)),
        "a request head that never ends is not timed out"
    );
    c.finish().assert_success();
}
