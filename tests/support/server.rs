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
