//! A small axum web service instrumented with `rdebug`, the Rust take on
//! Go's `GODEBUG=schedtrace=…,gctrace=…`.
//!
//! It serves three routes:
//!
//! * `GET|POST /sendjson` – serialises two small `Customer` records to JSON,
//!   like the handler of the classic Go profiling walkthrough;
//! * `GET /search?q=…` – case-insensitive substring search over a generated
//!   corpus of a few hundred lines (`q` is capped at 256 bytes);
//! * `POST /cache` – appends the request body to a server-side cache that is
//!   cleared whenever it reaches 64 MiB, so the heap visibly grows and shrinks.
//!
//! Its debug pages come from rdebug's debug server (built with rdebug's `http`
//! feature): `RDEBUG=http=127.0.0.1:6060` serves Go's `/debug/pprof/` pages
//! and `/debug/vars` (`rdebug::memstats()` and `rdebug::sched_stats()` as
//! JSON, what Go programs export with expvar) on a thread of its own. Each
//! request runs under the profiler label `route=<matched route>`
//! (`rdebug::labels`, three lines in `label_route`), so with `--features pprof`
//! `go tool pprof -tags http://127.0.0.1:6060/debug/pprof/profile` splits the
//! CPU by route.
//!
//! There are three ways to run it.
//!
//! **The self-contained demo.** It idles for 3 s, drives load at itself over
//! 8 keep-alive connections (from a separate one-thread runtime) for 10 s,
//! idles for 3 s more, prints a summary and exits. Unless `RDEBUG` is already
//! set, it turns on `RDEBUG=schedtrace=1000,gctrace=1` (plus `http=127.0.0.1:0`,
//! the debug server on a free port, when built with `--features http`):
//!
//! ```text
//! cargo run --release --example webapp -- --demo        # or --demo 30
//! cargo run --release --features http --example webapp -- --demo
//! ```
//!
//! **The server on its own**, with the trace on stderr and the request log on
//! stdout thrown away:
//!
//! ```text
//! cargo build --release --example webapp
//! RDEBUG=schedtrace=1000,gctrace=1 ./target/release/examples/webapp > /dev/null
//! ```
//!
//! and with the debug server (`cargo build --release --features http --example webapp`):
//!
//! ```text
//! RDEBUG=schedtrace=1000,http=127.0.0.1:6060 ./target/release/examples/webapp > /dev/null
//! curl http://127.0.0.1:6060/debug/vars
//! ```
//!
//! **Load from outside**, e.g. with [hey](https://github.com/rakyll/hey) in a
//! second terminal while the server above is running:
//!
//! ```text
//! hey -m POST -c 8 -n 100000 http://127.0.0.1:4000/sendjson
//! ```
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:4000`; `127.0.0.1:0` in
//! demo mode) and `--demo [SECS]` (default 10). Set `RUST_LOG=debug` to log
//! every request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// `eprintln!` in one `write`: std's unbuffered stderr writes each formatted piece separately,
/// and rdebug's reporter writes its lines from another thread in between.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const USAGE: &str = "usage: webapp [--addr HOST:PORT] [--demo [SECS]]";
const DEFAULT_ADDR: &str = "127.0.0.1:4000";
const DEMO_ADDR: &str = "127.0.0.1:0";
/// The demo's `RDEBUG`: the traces, and the debug server on a free port when it is built in.
const DEMO_RDEBUG: &str = if cfg!(feature = "http") {
    "schedtrace=1000,gctrace=1,http=127.0.0.1:0"
} else {
    "schedtrace=1000,gctrace=1"
};
const DEMO_DEFAULT_SECS: u64 = 10;
const DEMO_MAX_SECS: u64 = 3600;
const DEMO_IDLE: Duration = Duration::from_secs(3);
const DEMO_CONNS: usize = 8;

/// What the command line asked for.
#[derive(Debug, Default)]
struct Options {
    /// `--addr HOST:PORT`, not yet resolved.
    addr: Option<String>,
    /// `--demo [SECS]`: the length of the load phase in seconds.
    demo: Option<u64>,
    /// `-h` / `--help`.
    help: bool,
}

/// Parses the arguments after the program name.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => opts.help = true,
            "--addr" => match args.next() {
                Some(addr) => opts.addr = Some(addr),
                None => return Err("--addr needs a HOST:PORT value".into()),
            },
            "--demo" => {
                let secs = match args.next_if(|a| !a.starts_with('-')) {
                    None => DEMO_DEFAULT_SECS,
                    Some(s) => match s.parse::<u64>() {
                        Ok(n) if (1..=DEMO_MAX_SECS).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "--demo takes whole seconds from 1 to {DEMO_MAX_SECS}, not {s:?}"
                            ));
                        }
                    },
                };
                opts.demo = Some(secs);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(opts)
}

/// Resolves `HOST:PORT` to the first address it names.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("bad --addr {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr:?} resolves to no address"))
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) => {
            say!("webapp: {msg}; {USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if opts.demo.is_some() && std::env::var_os("RDEBUG").is_none() {
        // SAFETY: nothing has spawned a thread yet (no runtime, no logger),
        // so no other thread can be reading the environment concurrently.
        unsafe { std::env::set_var("RDEBUG", DEMO_RDEBUG) };
    }

    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stdout)
        .init();

    let default_addr = if opts.demo.is_some() {
        DEMO_ADDR
    } else {
        DEFAULT_ADDR
    };
    let addr = match resolve(opts.addr.as_deref().unwrap_or(default_addr)) {
        Ok(addr) if opts.demo.is_some() && !addr.ip().is_loopback() => {
            say!("webapp: --demo only loads a loopback address, not {addr}; {USAGE}");
            return ExitCode::from(2);
        }
        Ok(addr) => addr,
        Err(msg) => {
            say!("webapp: {msg}; {USAGE}");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("webapp-server")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("webapp: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let result = match opts.demo {
        None => runtime.block_on(serve(addr)),
        Some(secs) => demo(runtime, addr, Duration::from_secs(secs)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            say!("webapp: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until Ctrl-C.
pub(crate) async fn serve(addr: SocketAddr) -> Result<(), String> {
    rdebug::init();
    let (listener, local) = bind(addr).await?;
    log::info!("listening on http://{local}");
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            // If the handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// Runs the demo: serve, idle, load, idle, summary.
fn demo(runtime: Runtime, addr: SocketAddr, load_for: Duration) -> Result<(), String> {
    let (listener, local) = runtime.block_on(async {
        rdebug::init();
        bind(addr).await
    })?;
    log::info!("listening on http://{local}");
    say!("webapp: listening on http://{local}");
    say!(
        "webapp: demo: {idle} s idle, then {DEMO_CONNS} connections of load on /sendjson, \
         /search and /cache for {secs} s, then {idle} s idle, then exit",
        idle = DEMO_IDLE.as_secs(),
        secs = load_for.as_secs(),
    );

    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        axum::serve(listener, app())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    std::thread::sleep(DEMO_IDLE);

    // The client gets its own runtime so that its threads stay out of the
    // server's workers; rdebug finds it on its own (its SCHED lines say
    // `runtime=rt2`).
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("webapp-load")
        .build()
        .map_err(|e| format!("cannot start the load runtime: {e}"))?;
    let summary = client.block_on(load::run(local, DEMO_CONNS, load_for));
    client.shutdown_timeout(Duration::from_secs(1));

    std::thread::sleep(DEMO_IDLE);

    let _ = stop.send(());
    match runtime.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await }) {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => log::warn!("server failed: {e}"),
        Ok(Err(e)) => log::warn!("server task failed: {e}"),
        Err(_) => log::warn!("server did not stop within 2 s"),
    }
    runtime.shutdown_timeout(Duration::from_secs(1));

    say!(
        "webapp: demo done: {} requests, {} errors, {:.0} req/s",
        summary.requests,
        summary.errors,
        summary.per_second(),
    );
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    Ok((listener, local))
}

// ---------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------

/// The cache is cleared when adding an entry would take it past this.
const CACHE_MAX_BYTES: usize = 64 << 20;
/// Largest accepted `POST /cache` body; bigger ones get 413.
const CACHE_MAX_ENTRY: usize = 64 << 10;
/// Longest accepted search query.
const MAX_QUERY_BYTES: usize = 256;
/// Lines in the search corpus.
const CORPUS_LINES: usize = 500;

#[derive(Clone, Default)]
struct AppState {
    cache: Arc<Mutex<Cache>>,
}

/// Bounded heap ballast fed by `POST /cache`.
#[derive(Default)]
struct Cache {
    entries: Vec<Vec<u8>>,
    bytes: usize,
}

fn app() -> Router {
    Router::new()
        .route("/sendjson", get(send_json).post(send_json))
        .route("/search", get(search))
        .route(
            "/cache",
            post(cache).layer(DefaultBodyLimit::max(CACHE_MAX_ENTRY)),
        )
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn(label_route))
        .with_state(AppState::default())
}

/// Labels each request by its matched route (`route=/sendjson`), so a CPU profile splits by
/// route: `go tool pprof -tagfocus=route=/search …/debug/pprof/profile`, or `-tags`.
async fn label_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    rdebug::labels(&[("route", route)], next.run(req)).await
}

/// Logs each request at debug level (an info line per request would be
/// far too much at tens of thousands of requests per second).
async fn log_request(req: Request, next: Next) -> Response {
    if !log::log_enabled!(log::Level::Debug) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    log::debug!("{method} {uri} -> {}", response.status());
    response
}

#[derive(Serialize)]
struct Customer {
    name: String,
    email: String,
    age: u32,
    tags: Vec<String>,
}

/// `GET|POST /sendjson`: two customers as JSON.
async fn send_json() -> Json<Vec<Customer>> {
    Json(vec![
        Customer {
            name: "Ada Lovelace".to_owned(),
            email: "ada@example.com".to_owned(),
            age: 36,
            tags: vec!["math".to_owned(), "engines".to_owned()],
        },
        Customer {
            name: "Grace Hopper".to_owned(),
            email: "grace@example.com".to_owned(),
            age: 85,
            tags: vec!["cobol".to_owned(), "navy".to_owned(), "bugs".to_owned()],
        },
    ])
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
}

#[derive(Serialize)]
struct SearchResult {
    q: String,
    count: usize,
    /// 1-based numbers of the matching lines.
    lines: Vec<usize>,
}

/// Lower-case lines searched by `GET /search`, generated once.
static CORPUS: LazyLock<Vec<String>> = LazyLock::new(|| {
    const WORDS: [&str; 16] = [
        "tokio", "worker", "parks", "steals", "task", "heap", "arena", "jemalloc", "epoch",
        "thread", "queue", "poll", "timer", "socket", "request", "gc",
    ];
    // A fixed linear congruential generator keeps the corpus deterministic.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    (0..CORPUS_LINES)
        .map(|i| {
            let mut line = format!("line {i}:");
            for _ in 0..12 {
                line.push(' ');
                line.push_str(WORDS[next() % WORDS.len()]);
            }
            line.push_str(&format!(" {}", next() % 1000));
            line
        })
        .collect()
});

/// `GET /search?q=…`: numbers of the corpus lines containing `q`, ignoring case.
async fn search(Query(params): Query<SearchParams>) -> Response {
    let q = match params.q {
        Some(q) if !q.is_empty() => q,
        _ => return (StatusCode::BAD_REQUEST, "missing query parameter q\n").into_response(),
    };
    if q.len() > MAX_QUERY_BYTES {
        let msg = format!("q is longer than {MAX_QUERY_BYTES} bytes\n");
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let needle = q.to_lowercase();
    let lines: Vec<usize> = CORPUS
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(needle.as_str()))
        .map(|(i, _)| i + 1)
        .collect();
    Json(SearchResult {
        q,
        count: lines.len(),
        lines,
    })
    .into_response()
}

#[derive(Serialize)]
struct CacheStatus {
    entries: usize,
    bytes: usize,
}

/// `POST /cache`: keeps a copy of the body; the cache empties itself at 64 MiB.
async fn cache(State(state): State<AppState>, body: Bytes) -> Json<CacheStatus> {
    let entry = body.to_vec();
    // Drop a full cache outside the lock.
    let (evicted, status) = {
        let mut cache = state
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let evicted = if cache.bytes + entry.len() > CACHE_MAX_BYTES {
            cache.bytes = 0;
            std::mem::take(&mut cache.entries)
        } else {
            Vec::new()
        };
        cache.bytes += entry.len();
        cache.entries.push(entry);
        let status = CacheStatus {
            entries: cache.entries.len(),
            bytes: cache.bytes,
        };
        (evicted, status)
    };
    if !evicted.is_empty() {
        log::debug!("cache full: dropped {} entries", evicted.len());
    }
    drop(evicted);
    Json(status)
}

// ---------------------------------------------------------------------------
// The demo's load generator
// ---------------------------------------------------------------------------

mod load {
    //! A tiny closed-loop HTTP/1.1 load generator built on hyper's client
    //! connection API: a fixed number of keep-alive connections, each sending
    //! its next request as soon as the previous response body has been read.

    use std::net::SocketAddr;
    use std::time::Duration;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::client::conn::http1::{self, SendRequest};
    use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
    use hyper::{Method, Request, Uri};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;
    use tokio::task::JoinSet;
    use tokio::time::{Instant, sleep, timeout_at};

    /// Body of each `POST /cache` request.
    static CACHE_BODY: [u8; 8 << 10] = [b'x'; 8 << 10];
    /// Queries rotated through by the `GET /search` requests.
    const SEARCHES: [&str; 4] = [
        "/search?q=Tokio",
        "/search?q=worker%20steals",
        "/search?q=heap%20arena",
        "/search?q=no-such-thing",
    ];
    /// Pause before reconnecting after a failed connection.
    const RECONNECT_DELAY: Duration = Duration::from_millis(50);

    /// What a load run achieved.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Summary {
        /// Responses received, whatever their status.
        pub requests: u64,
        /// Non-2xx responses plus failed connections and exchanges.
        pub errors: u64,
        /// Wall time of the run.
        pub elapsed: Duration,
    }

    impl Summary {
        /// Responses per second over the run.
        pub fn per_second(&self) -> f64 {
            let secs = self.elapsed.as_secs_f64();
            if secs > 0.0 {
                self.requests as f64 / secs
            } else {
                0.0
            }
        }
    }

    /// Drives `conns` keep-alive connections at `addr` for `dur`, mixing
    /// 70% `POST /sendjson`, 20% `GET /search` and 10% `POST /cache`.
    pub async fn run(addr: SocketAddr, conns: usize, dur: Duration) -> Summary {
        let start = Instant::now();
        let deadline = start + dur;
        let host = HeaderValue::from_str(&addr.to_string())
            .expect("a socket address is a valid header value");
        let mut workers = JoinSet::new();
        for id in 0..conns {
            workers.spawn(connection(addr, host.clone(), id, deadline));
        }
        let mut total = Summary::default();
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(part) => {
                    total.requests += part.requests;
                    total.errors += part.errors;
                }
                Err(e) => {
                    log::warn!("load worker failed: {e}");
                    total.errors += 1;
                }
            }
        }
        total.elapsed = start.elapsed();
        total
    }

    /// One client connection, re-established after errors, until `deadline`.
    async fn connection(
        addr: SocketAddr,
        host: HeaderValue,
        id: usize,
        deadline: Instant,
    ) -> Summary {
        let mut counts = Summary::default();
        let mut seq = id;
        while Instant::now() < deadline {
            let mut sender = match timeout_at(deadline, connect(addr)).await {
                Err(_) => break,
                Ok(Ok(sender)) => sender,
                Ok(Err(e)) => {
                    log::debug!("load: connecting to {addr}: {e}");
                    counts.errors += 1;
                    sleep(RECONNECT_DELAY).await;
                    continue;
                }
            };
            loop {
                let req = request(seq, &host);
                seq = seq.wrapping_add(1);
                match timeout_at(deadline, exchange(&mut sender, req)).await {
                    Err(_) => return counts,
                    Ok(Ok(ok)) => {
                        counts.requests += 1;
                        if !ok {
                            counts.errors += 1;
                        }
                    }
                    Ok(Err(e)) => {
                        log::debug!("load: request to {addr}: {e}");
                        counts.errors += 1;
                        break;
                    }
                }
            }
        }
        counts
    }

    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends when `sender` is dropped or the peer closes.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("load: connection closed: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `req`, reads the whole response body and reports whether the
    /// status was 2xx.
    async fn exchange(
        sender: &mut SendRequest<Full<Bytes>>,
        req: Request<Full<Bytes>>,
    ) -> Result<bool, Error> {
        sender.ready().await?;
        let response = sender.send_request(req).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        Ok(ok)
    }

    /// The `seq`-th request of a connection.
    fn request(seq: usize, host: &HeaderValue) -> Request<Full<Bytes>> {
        let (method, uri, body) = match seq % 10 {
            0 => (
                Method::POST,
                Uri::from_static("/cache"),
                Bytes::from_static(&CACHE_BODY),
            ),
            1 | 6 => (
                Method::GET,
                Uri::from_static(SEARCHES[(seq / 10) % SEARCHES.len()]),
                Bytes::new(),
            ),
            _ => (Method::POST, Uri::from_static("/sendjson"), Bytes::new()),
        };
        let is_cache = !body.is_empty();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        req.headers_mut().insert(HOST, host.clone());
        if is_cache {
            req.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        req
    }
}
