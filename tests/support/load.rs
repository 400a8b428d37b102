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
                                && std::str::from_utf8(&body).is_ok_and(|b| b.contains(&want)) =>
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
        let Ok((mut tx, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
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
