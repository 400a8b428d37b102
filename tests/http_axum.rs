//! `rdebug::http::router()` mounted in an application's own axum server: the same endpoints
//! and answers as the server's own.

#![cfg(feature = "axum")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::http_client::get;
use support::{NO_ENV, is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

#[test]
fn the_router_serves_the_same_endpoints_in_the_app() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        let never = Arc::new(tokio::sync::Notify::new());
        rt.block_on(async {
            rdebug::init();
            rdebug::watch(&tokio::runtime::Handle::current());
            for _ in 0..7 {
                let n = never.clone();
                tokio::spawn(async move { n.notified().await });
            }
            let app = axum::Router::new()
                .route("/hello", axum::routing::get(|| async { "hello" }))
                .merge(rdebug::http::router());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            // 7 parked tasks, axum's serve task, and the task axum runs each connection on.
            let tasks = 7 + 1 + 1;
            tokio::task::spawn_blocking(move || {
                let g = get(addr, "/debug/pprof/goroutine?debug=1");
                assert_eq!(g.header("content-type"), "text/plain; charset=utf-8");
                assert!(
                    g.text()
                        .starts_with(&format!("goroutine profile: total {tasks}\n")),
                    "{}",
                    g.text()
                );
                let v = get(addr, "/debug/vars");
                assert_eq!(
                    (v.status, v.header("content-type")),
                    (200, "application/json")
                );
                let vars: serde_json::Value = serde_json::from_slice(&v.body).expect("JSON");
                assert_eq!(vars["sched"][0]["workers"], 2);
                let idx = get(addr, "/debug/pprof/");
                assert_eq!(idx.header("content-type"), "text/html; charset=utf-8");
                let bad = get(addr, "/debug/pprof/trace?seconds=0");
                assert_eq!((bad.status, bad.header("x-go-pprof")), (400, "1"));
                assert_eq!(get(addr, "/debug/pprof/nosuch").status, 404);
                assert_eq!(get(addr, "/hello").text(), "hello");
                println!("RESULT ok {tasks}");
            })
            .await
            .expect("checks");
        });
        return;
    }
    let out = run_child(name, NO_ENV, Duration::from_secs(30));
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "ok 9");
}
