//! Hostile clients against the debug server, while the application's own server answers every
//! request of a load client: bad parameters, huge headers, idle and slow-drip connections,
//! bodies, a saturated application runtime, a public bind with a token.

#![cfg(feature = "http")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::http_client::{ServerChild, get, get_within, serve_commands};
use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// The child: the in-test axum app on a 2-worker runtime with rdebug on. Prints `APP <addr>`;
/// commands: `saturate` (both workers spin for 3 s). Stdin closed: the app quits.
fn app_child() {
    let rt = support::two_worker_runtime();
    let handle = rt.handle().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let app: SocketAddr = rx.recv().expect("app address");
        serve_commands(|cmd| {
            if cmd == "saturate" {
                for _ in 0..2 {
                    handle.spawn(async {
                        let end = Instant::now() + Duration::from_secs(3);
                        while Instant::now() < end {
                            std::hint::spin_loop();
                        }
                    });
                }
                println!("SATURATED");
            }
        });
        support::load::quit(app);
    });
    rt.block_on(async {
        rdebug::init();
        support::server::serve(|a| {
            println!("APP {a}");
            let _ = tx.send(a);
        })
        .await;
    });
}

/// Sends raw `bytes` and reads what comes back (up to 5 s), tolerating a reset.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn hostile_clients_neither_stop_the_server_nor_slow_the_app() {
    let name = support::test_name!();
    if is_child(name) {
        app_child();
        return;
    }
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let debug = c.addr;
    let app: SocketAddr = c.wait_stdout("APP ").parse().expect("app address");
    let load = std::thread::spawn(move || support::load::run(app, 4, Duration::from_secs(5)));

    // Bad `seconds`: 400 naming the parameter, with X-Go-Pprof.
    for route in ["trace", "profile"] {
        for bad in ["abc", "-1", "0", "301", "99999999999999999999"] {
            let a = get(debug, &format!("/debug/pprof/{route}?seconds={bad}"));
            assert_eq!(a.status, 400, "{route} {bad}");
            assert_eq!(a.header("x-go-pprof"), "1");
            assert_eq!(a.header("content-type"), "text/plain; charset=utf-8");
            assert!(a.text().starts_with("bad seconds="), "{}", a.text());
        }
    }
    for q in ["hz=0", "hz=5000", "debug=9", "gc=x"] {
        assert_eq!(
            get(debug, &format!("/debug/pprof/heap?{q}")).status,
            400,
            "{q}"
        );
    }
    assert_eq!(get(debug, "/debug/pprof/nosuchprofile").status, 404);

    // A 64 KiB header is refused (431 and closed), and the server goes on.
    let big = format!(
        "GET /debug/vars HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = raw(debug, big.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:.200}"
    );
    assert!(!answer.contains("\"memstats\""));
    // A body is refused without being read; other methods are refused.
    let post = raw(
        debug,
        b"POST /debug/vars HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(post.starts_with("HTTP/1.1 413"), "{post:.200}");
    let del = raw(debug, b"DELETE /debug/vars HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(del.starts_with("HTTP/1.1 405"), "{del:.200}");

    // 300 idle connections and 50 slow-drip ones (a byte of a request head every 100 ms).
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(debug).ok())
        .collect();
    let mut drip: Vec<TcpStream> = (0..50)
        .filter_map(|_| TcpStream::connect(debug).ok())
        .collect();
    let head = b"GET /debug/vars HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let dripping = std::thread::spawn(move || {
        for i in 0..40 {
            for s in &mut drip {
                let _ = s.write_all(&[head.get(i).copied().unwrap_or(b'z')]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drip
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let vars = get_within(debug, "/debug/vars", &[], Duration::from_secs(2));
    let took = started.elapsed();
    let vars = vars.expect("/debug/vars answers within 2 s despite 350 hostile connections");
    assert_eq!(vars.status, 200);
    println!("/debug/vars with 300 idle + 50 slow-drip connections open: {took:?}");
    let drip = dripping.join().expect("drip thread");
    drop((idle, drip));

    // The application's runtime saturated: the debug server still answers (its own thread).
    c.command("saturate", "SATURATED");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let g = get_within(
        debug,
        "/debug/pprof/goroutine?debug=1",
        &[],
        Duration::from_secs(2),
    )
    .expect("goroutine answers within 2 s while the app's workers spin");
    println!(
        "goroutine while both app workers spin: {:?}",
        started.elapsed()
    );
    let main = g
        .text()
        .lines()
        .find(|l| l.starts_with("# runtime main: "))
        .expect("main")
        .to_owned();
    assert_eq!(support::num(&main, "idleworkers"), 0, "{main}");

    let summary = load.join().expect("load thread");
    println!("app under load meanwhile: {summary:?}");
    assert!(summary.ok > 0, "{summary:?}");
    assert_eq!(
        summary.failed, 0,
        "the app answered every request: {summary:?}"
    );
    c.finish().assert_success();
}

#[test]
fn public_bind_warns_once_and_the_token_guards_dumps() {
    let name = support::test_name!();
    if is_child(name) {
        app_child();
        return;
    }
    let mut c = ServerChild::start(
        name,
        &[
            ("RDEBUG", "http=0.0.0.0:0"),
            ("RDEBUG_HTTP_TOKEN", "s3cret"),
        ],
    );
    let debug = SocketAddr::from(([127, 0, 0, 1], c.addr.port()));
    c.wait_stdout("APP ");
    let warnings: Vec<&String> = c
        .stderr
        .iter()
        .filter(|l| l.starts_with("rdebug: warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", c.stderr);
    assert!(
        warnings[0].contains("0.0.0.0:") && warnings[0].contains("not a loopback address"),
        "{}",
        warnings[0]
    );
    let guarded = [
        "/debug/pprof/cmdline",
        "/debug/pprof/goroutine?debug=1",
        "/debug/pprof/threadcreate",
        "/debug/pprof/trace?seconds=1",
        "/debug/pprof/heap",
        "/debug/pprof/profile?seconds=1",
    ];
    for path in guarded {
        let none = get(debug, path);
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(none.header("x-go-pprof"), "1");
        let sep = if path.contains('?') { '&' } else { '?' };
        assert_eq!(
            get(debug, &format!("{path}{sep}token=nope")).status,
            403,
            "{path}"
        );
        let bearer = get_within(
            debug,
            path,
            &[("authorization", "Bearer wrong")],
            Duration::from_secs(5),
        )
        .expect("answer");
        assert_eq!(bearer.status, 403, "{path}");
    }
    let ok = get_within(
        debug,
        "/debug/pprof/cmdline",
        &[("authorization", "Bearer s3cret")],
        Duration::from_secs(5),
    )
    .expect("answer");
    assert_eq!(ok.status, 200);
    assert_eq!(
        get(debug, "/debug/pprof/goroutine?debug=1&token=s3cret").status,
        200
    );
    // Every page that shows the process needs it (argv is in /debug/vars); the dashboard's
    // own files do not.
    assert_eq!(get(debug, "/debug/pprof/").status, 401);
    assert_eq!(get(debug, "/debug/vars").status, 401);
    assert_eq!(get(debug, "/debug/rdebug").status, 200);
    c.finish().assert_success();
}

#[test]
fn a_taken_port_warns_once_and_the_program_goes_on() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        println!("RESULT alive {}", rdebug::sched_stats(rt.handle()).workers);
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = run_child(
        name,
        &[("RDEBUG", format!("http=127.0.0.1:{port}"))],
        Duration::from_secs(20),
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "alive 2");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "rdebug: warning: debug server: cannot listen on 127.0.0.1:{port}: "
        )),
        "{}",
        lines[0]
    );
    let _ = NO_ENV;
}
