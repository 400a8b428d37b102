//! The web server `scripts/soak.sh` drives for ten minutes: `POST|GET /sendjson` answers two
//! customers as JSON (like `examples/webapp.rs`), and `GET /memstats` answers
//! `rdebug::memstats()` as JSON together with what a checker thread found reading it every 10 ms:
//! how many reads, and how many broke `heap_objects == mallocs - frees` (with `mallocs >= frees`).
//!
//! ```text
//! cargo build --release --example soak_server
//! RDEBUG=schedtrace=1000,gctrace=1 ./target/release/examples/soak_server --addr 127.0.0.1:0
//! ```
//!
//! It prints `listening on http://HOST:PORT` on stdout and serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde::Serialize;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Reads made by the checker thread.
static READS: AtomicU64 = AtomicU64::new(0);
/// Reads where `heap_objects != mallocs - frees` or `mallocs < frees`.
static BROKEN: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize)]
struct Customer {
    name: &'static str,
    email: String,
    age: u32,
    tags: Vec<&'static str>,
}

async fn send_json() -> Json<Vec<Customer>> {
    Json(vec![
        Customer {
            name: "Ada Lovelace",
            email: "ada@example.com".to_owned(),
            age: 36,
            tags: vec!["math", "engines"],
        },
        Customer {
            name: "Grace Hopper",
            email: "grace@example.com".to_owned(),
            age: 85,
            tags: vec!["cobol", "navy", "bugs"],
        },
    ])
}

#[derive(Serialize)]
struct Snapshot {
    memstats: rdebug::MemStats,
    /// `heap_objects == mallocs - frees` for this very read.
    consistent: bool,
    checker_reads: u64,
    checker_broken: u64,
}

fn consistent(m: &rdebug::MemStats) -> bool {
    m.mallocs >= m.frees && m.heap_objects == m.mallocs - m.frees
}

async fn memstats() -> Json<Snapshot> {
    let m = rdebug::memstats();
    Json(Snapshot {
        consistent: consistent(&m),
        memstats: m,
        checker_reads: READS.load(Relaxed),
        checker_broken: BROKEN.load(Relaxed),
    })
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            _ => {
                eprintln!("usage: soak_server [--addr HOST:PORT]");
                return ExitCode::from(2);
            }
        }
    }
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak_server: bad --addr {addr:?}: {e}");
            return ExitCode::from(2);
        }
    };
    std::thread::Builder::new()
        .name("checker".into())
        .spawn(|| {
            loop {
                let m = rdebug::memstats();
                READS.fetch_add(1, Relaxed);
                if !consistent(&m) {
                    BROKEN.fetch_add(1, Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("checker thread");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let served = rt.block_on(async move {
        rdebug::init();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/sendjson", get(send_json).post(send_json))
            .route("/memstats", get(memstats));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak_server: {e}");
            ExitCode::FAILURE
        }
    }
}
