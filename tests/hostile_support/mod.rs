//! Helpers shared by the `hostile_*` tests: a child process spawned like `common::run_child` but
//! with full control of its environment (bytes that are not UTF-8) and of its stdio (stderr
//! closed, a pipe nobody reads, a pipe whose reader goes away), a small in-test axum server, and
//! a hyper load client.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{ChildOutput, child_command, collect};

/// Runs test `name` in a child with `RDEBUG` set to `rdebug` (any bytes), collecting its output.
pub fn run_child_os(name: &str, rdebug: &OsStr, timeout: Duration) -> ChildOutput {
    let mut cmd = child_command(name);
    cmd.env("RDEBUG", rdebug);
    let child = cmd.spawn().expect("spawn test child");
    collect(child, timeout)
}

/// Lines of `child`'s stdout, as they come, on a channel (the reader thread ends with the pipe).
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("child stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` starting with `prefix`, with the prefix removed; the lines before
/// it are pushed to `seen`. Panics after `timeout`.
pub fn expect_line(
    lines: &mpsc::Receiver<String>,
    prefix: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix(prefix) {
                    return rest.to_owned();
                }
                seen.push(l);
            }
            Err(e) => panic!("no line starting with {prefix:?} from the child: {e}"),
        }
    }
}

/// `key=<u64>` from a whitespace-separated line.
pub fn num(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Resident set size of process `pid`, bytes.
pub fn rss_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

pub mod load {
    //! A hyper HTTP/1.1 load client: `conns` keep-alive connections, each sending
    //! `POST /sendjson {"a":i,"b":j}` in a loop until the deadline and checking every answer.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    /// What the client saw.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Summary {
        /// Requests sent.
        pub sent: u64,
        /// Answers that were 200 with the right sum in the body.
        pub ok: u64,
        /// Anything else: errors, wrong status, wrong body, timeouts.
        pub failed: u64,
        /// Slowest answer, ms.
        pub max_ms: u64,
    }

    /// Drives `addr` for `length` over `conns` connections (on a runtime of its own).
    pub fn run(addr: SocketAddr, conns: usize, length: Duration) -> Summary {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        let sent = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let max_ms = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let deadline = Instant::now() + length;
            let mut tasks = Vec::new();
            for c in 0..conns {
                let (sent, ok, failed, max_ms) =
                    (sent.clone(), ok.clone(), failed.clone(), max_ms.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                        failed.fetch_add(1, Relaxed);
                        return;
                    };
                    let Ok((mut tx, conn)) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                    else {
                        failed.fetch_add(1, Relaxed);
                        return;
                    };
                    tokio::spawn(conn);
                    let mut i = c as u64 * 1_000_000;
                    while Instant::now() < deadline {
                        i += 1;
                        let body = format!("{{\"a\":{i},\"b\":7}}");
                        let req = hyper::Request::post("/sendjson")
                            .header("host", "localhost")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("request");
                        sent.fetch_add(1, Relaxed);
                        let started = Instant::now();
                        let answer = tokio::time::timeout(Duration::from_secs(10), async {
                            let res = tx.send_request(req).await.ok()?;
                            let status = res.status();
                            let body = res.into_body().collect().await.ok()?.to_bytes();
                            Some((status, body))
                        })
                        .await;
                        max_ms.fetch_max(started.elapsed().as_millis() as u64, Relaxed);
                        let want = format!("\"sum\":{}", i + 7);
                        match answer {
                            Ok(Some((status, body)))
                                if status == 200
                                    && std::str::from_utf8(&body)
                                        .is_ok_and(|b| b.contains(&want)) =>
                            {
                                ok.fetch_add(1, Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Relaxed);
                                return;
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        Summary {
            sent: sent.load(Relaxed),
            ok: ok.load(Relaxed),
            failed: failed.load(Relaxed),
            max_ms: max_ms.load(Relaxed),
        }
    }

    /// `GET /quit`: asks the in-test server to stop.
    pub fn quit(addr: SocketAddr) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async {
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let Ok((mut tx, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return;
            };
            tokio::spawn(conn);
            let req = hyper::Request::get("/quit")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("request");
            let _ = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req)).await;
        });
    }
}

pub mod server {
    //! The in-test web server run by a child: axum on 127.0.0.1:0, `POST /sendjson` answering
    //! `{"sum":a+b,...}` after reading `rdebug::memstats()` and `rdebug::sched_stats()` (so a
    //! reporter that held a lock while stuck on its output would stall requests), `GET /quit`.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde::{Deserialize, Serialize};
    use tokio::sync::Notify;

    #[derive(Deserialize)]
    struct Payload {
        a: u64,
        b: u64,
    }

    #[derive(Serialize)]
    struct Reply {
        sum: u64,
        heap_objects: u64,
        workers: usize,
    }

    async fn sendjson(Json(p): Json<Payload>) -> Json<Reply> {
        let m = rdebug::memstats();
        let s = rdebug::sched_stats(&tokio::runtime::Handle::current());
        Json(Reply {
            sum: p.a + p.b,
            heap_objects: m.heap_objects,
            workers: s.workers,
        })
    }

    /// Binds, calls `on_listen` with the address, serves until `GET /quit`.
    pub async fn serve(on_listen: impl FnOnce(SocketAddr)) {
        let quit = Arc::new(Notify::new());
        let q = quit.clone();
        let app = Router::new().route("/sendjson", post(sendjson)).route(
            "/quit",
            get(move || {
                let q = q.clone();
                async move {
                    q.notify_one();
                    "bye"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        on_listen(listener.local_addr().expect("local addr"));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { quit.notified().await })
            .await
            .expect("serve");
    }
}
