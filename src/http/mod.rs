//! The debug server: Go's `net/http/pprof` endpoints, and rdebug's own pages (feature `http`).
//!
//! Start it with `RDEBUG=http=127.0.0.1:6060` (`:6060` means loopback) and [`init`](crate::init),
//! with [`serve`] from code, or mount [`router`] into the application's own axum server (feature
//! `axum`). [`serve`] runs on its own thread, `rdebug-http`, with its own current-thread tokio
//! runtime, so it answers while the application's runtime is saturated.
//!
//! ```
//! let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
//! let addr = server.local_addr();
//! // curl http://{addr}/debug/pprof/
//! # use std::io::{Read, Write};
//! # let mut c = std::net::TcpStream::connect(addr).unwrap();
//! # c.write_all(b"GET /debug/vars HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
//! # let mut answer = String::new();
//! # c.read_to_string(&mut answer).unwrap();
//! # assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
//! # assert!(answer.contains("\"memstats\":{"), "{answer}");
//! server.stop();
//! ```
//!
//! # Endpoints
//!
//! | path | answer |
//! |---|---|
//! | `/debug/pprof/` | index page, as Go's, with links to rdebug's pages |
//! | `/debug/pprof/profile?seconds=N` | CPU profile (feature `pprof`); one at a time, else 409 |
//! | `/debug/pprof/heap`, `allocs` | heap profiles (feature `pprof`) |
//! | `/debug/pprof/goroutine` | the watched tokio runtimes: workers, idle, tasks, queues (text; `debug=2` adds workers); with feature `taskdump` and `--cfg tokio_unstable`, `debug=1&dump=1` / `debug=2&dump=1` list every task's trace (see below) |
//! | `/debug/pprof/threadcreate` | the OS threads of the process: tid, state, CPU time, name (text) |
//! | `/debug/pprof/trace?seconds=N` | rdebug's SCHED and gc records as JSON lines for N s (default 1), not Go's binary trace |
//! | `/debug/pprof/cmdline` | argv joined by NUL |
//! | `/debug/pprof/block?seconds=N` | off-CPU time of busy tokio workers, Go's block format (feature `pprof`; see [`rdebug::profile::block`](crate::profile::block)); one at a time, else 409; 503 when no runtime is watched |
//! | `/debug/pprof/mutex` | 404 with the reason: a lock wait cannot be told apart from other blocking honestly; lock waits show in `block` |
//! | `/debug/vars` | `memstats()` and `sched_stats()` of every watched runtime, JSON |
//! | `/metrics` | Prometheus text |
//! | `/debug/rdebug` | live dashboard: the last five minutes of SCHED, heap, CPU and RSS figures, one tick a second; also charts a captured `format=json` log |
//!
//! Task dumps (`goroutine?debug=1&dump=1`, `debug=2&dump=1`) are compiled in with `RUSTFLAGS="--cfg tokio_unstable"` and
//! rdebug's feature `taskdump` on Linux (aarch64, x86, x86_64, s390x); names and lines need
//! debuginfo in the binary. Each dump first watches the workers for 300 ms and requests none when
//! one is blocked in a poll, then waits at most 2 s for tokio's dump: a blocked runtime gets a 503
//! naming why, never a stalled server; one dump runs at a time (409). `dump=1` must be given:
//! tokio 1.54.1's dump can leave an app worker waiting for good (tokio-rs/tokio#8370). Without the cfg and feature,
//! every `debug` level is the summary, whose last line says how to get dumps.
//!
//! Errors are `text/plain` with `X-Go-Pprof: 1` (`go tool pprof` prints the body). Bad query
//! values get 400 naming the parameter: `seconds` is a whole number from 1 to 300, `hz` from 1
//! to 1000, `debug` 0, 1 or 2, `gc` 0 or 1.
//!
//! # Safety
//!
//! The server binds exactly the address given, loopback by default; the doors below are checked
//! before any route runs, on [`serve`]'s server and on [`router`] alike.
//!
//! - **Token.** When `RDEBUG_HTTP_TOKEN` is set (not empty), every page that shows the process
//!   needs it: all of `/debug/pprof/` (profiles, dumps, and the index, which counts tasks and
//!   threads), `/debug/vars` (it holds argv), `/metrics` and the dashboard's data
//!   (`/debug/rdebug/history`). It is sent as `Authorization: Bearer <token>` (the scheme in any
//!   case) or `?token=<token>` (`go tool pprof` can only pass the latter; open the dashboard as
//!   `/debug/rdebug?token=<token>`): 401 without one, 403 with a wrong one. rdebug asks for the
//!   token whenever it is set, whatever the address. A token longer than 1024 bytes is refused at
//!   start ([`serve`] fails with [`Error::Refused`]; [`router`] warns once and answers 503).
//!   Prometheus sends the token with `authorization: {credentials: <token>}` (type `Bearer` is
//!   its default) in the scrape config:
//!
//!   ```yaml
//!   scrape_configs:
//!     - job_name: app
//!       authorization:
//!         credentials: s3cret   # or credentials_file: /etc/prometheus/rdebug-token
//!       static_configs:
//!         - targets: ["127.0.0.1:6060"]
//!   ```
//! - **Non-loopback addresses.** Without a token, [`serve`] (and `RDEBUG=http=`) refuses a
//!   non-loopback address (`0.0.0.0:6060` too) with one line naming the opt-in:
//!   `RDEBUG_HTTP_PUBLIC=1` serves it to anyone anyway. With a token or the opt-in, one warning.
//! - **DNS rebinding.** A request whose `Host` is neither a loopback name (`localhost`,
//!   `*.localhost`) nor an IP literal gets 403, unless the name is listed in
//!   `RDEBUG_HTTP_HOSTS` (comma-separated; `*` for every name), so a web page cannot read the
//!   server through a name of its own that resolves to 127.0.0.1.
//! - **Cross-site requests.** Any web page the developer opens can make the browser send
//!   requests to the loopback server (start a 300 s profile, purge the arenas, ask for a task
//!   dump). Requests with `Sec-Fetch-Site: cross-site` or `same-site` (other ports of
//!   `localhost` are the same *site*), or an `Origin` other than the server's own, get 403 on
//!   every page but the dashboard's static files. Typing the URL, bookmarks, `curl`, `go tool
//!   pprof` and Prometheus send neither.
//! - **HEAD** answers what the checks decide, and never runs a profile or a dump.
//!
//! Bounded: request heads of 16 KiB, no request bodies (413), 10 s to send a request head
//! (slow-drip clients are dropped), 64 connections (at the limit a new connection closes the
//! oldest idle one, or is closed itself when all are being answered), `seconds` ≤ 300, 4 traces
//! at a time, one CPU profile and one heap dump at a time (409 for another; a CPU profile whose
//! client went away stops), 8 dashboard long-polls waiting at once (more answer at once).

/// `if_taskdump! { { items } else { items } }`: the first items where tokio can dump tasks
/// (`--cfg tokio_unstable`, rdebug's feature `taskdump`, Linux on aarch64, x86, x86_64 or s390x:
/// tokio's own condition for `Handle::dump`), the others elsewhere. The one place that condition
/// is written.
macro_rules! if_taskdump {
    ({ $($yes:item)* } else { $($no:item)* }) => {
        $(
            #[cfg(all(
                tokio_unstable,
                feature = "taskdump",
                target_os = "linux",
                any(
                    target_arch = "aarch64",
                    target_arch = "x86",
                    target_arch = "x86_64",
                    target_arch = "s390x"
                )
            ))]
            $yes
        )*
        $(
            #[cfg(not(all(
                tokio_unstable,
                feature = "taskdump",
                target_os = "linux",
                any(
                    target_arch = "aarch64",
                    target_arch = "x86",
                    target_arch = "x86_64",
                    target_arch = "s390x"
                )
            )))]
            $no
        )*
    };
}

mod auth;
mod dashboard;
mod dumps;
mod guard;
mod history;
mod index;
mod metrics;
mod params;
mod profiles;
mod reply;
mod routes;
mod runtimes;
mod server;
if_taskdump! {
    {
        mod taskdump;
    } else {}
}
mod trace;
mod vars;

use std::net::SocketAddr;
use std::sync::OnceLock;

pub use server::Server;

use crate::error::Error;
use crate::sys::stderr;

/// Starts the debug server on `addr` on its own thread; returns once it listens.
///
/// Port 0 picks a free port: [`Server::local_addr`] says which. A non-loopback address needs
/// `RDEBUG_HTTP_TOKEN` (or the opt-in `RDEBUG_HTTP_PUBLIC=1`), else it is [`Error::Refused`];
/// with either it prints one warning on stderr. A token longer than 1024 bytes is refused too.
/// The server does not watch any runtime itself: [`init`](crate::init) (or
/// [`watch`](crate::watch)) decides which runtimes the pages show. See the module docs' Safety
/// section for the token, `Host` and cross-site checks.
///
/// ```
/// let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
/// assert!(server.local_addr().ip().is_loopback());
/// server.stop();
///
/// // A port that is taken is an error naming the address.
/// let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let err = rdebug::http::serve(taken.local_addr().unwrap()).unwrap_err();
/// assert!(err.to_string().starts_with("cannot listen on 127.0.0.1:"));
///
/// // A non-loopback address without a token is refused, naming the opt-in.
/// # if std::env::var_os("RDEBUG_HTTP_TOKEN").is_none() && std::env::var_os("RDEBUG_HTTP_PUBLIC").is_none() {
/// let err = rdebug::http::serve("0.0.0.0:0".parse().unwrap()).unwrap_err();
/// assert!(err.to_string().contains("RDEBUG_HTTP_PUBLIC=1"), "{err}");
/// # }
/// ```
pub fn serve(addr: SocketAddr) -> Result<Server, Error> {
    let ctx = routes::Ctx::from_env().map_err(Error::Refused)?;
    let token = ctx.token.is_set();
    let public = !addr.ip().is_loopback();
    if public && !token && !public_opt_in() {
        return Err(Error::Refused(format!(
            "refusing to serve on {addr}, not a loopback address, without a token (anyone who \
             can reach it could read the process): set {}, or {PUBLIC_ENV}=1 to serve it \
             to anyone anyway",
            auth::TOKEN_ENV
        )));
    }
    let server = server::start(addr, ctx)?;
    if public {
        let guard = if token {
            "every page that shows the process needs the token in RDEBUG_HTTP_TOKEN"
        } else {
            "served without a token, as RDEBUG_HTTP_PUBLIC=1 asks"
        };
        stderr::note(
            "warning",
            &format!(
                "debug server listens on {}, not a loopback address: anyone who can reach it can \
                 try it; {guard}",
                server.local_addr()
            ),
        );
    }
    Ok(server)
}

/// The variable that lets the server listen on a non-loopback address without a token.
const PUBLIC_ENV: &str = "RDEBUG_HTTP_PUBLIC";

/// Whether `RDEBUG_HTTP_PUBLIC=1`.
fn public_opt_in() -> bool {
    std::env::var_os(PUBLIC_ENV).is_some_and(|v| v == "1")
}

/// The server `RDEBUG=http=` started.
static FROM_ENV: OnceLock<Server> = OnceLock::new();

/// Whether `RDEBUG=http=` started the server.
pub(crate) fn from_env_running() -> bool {
    FROM_ENV.get().is_some()
}

/// Starts the server for `RDEBUG=http=ADDR` and says where on stderr.
pub(crate) fn start_from_env(addr: SocketAddr) -> Result<(), Error> {
    let server = serve(addr)?;
    stderr::note(
        "note",
        &format!(
            "debug server on http://{}/debug/pprof/",
            server.local_addr()
        ),
    );
    let _ = FROM_ENV.set(server);
    Ok(())
}

/// The debug server's endpoints as an [`axum::Router`], to mount in the application's own
/// server (feature `axum`). The same handlers as [`serve`]'s; the application's server then sets
/// the connection limits, and the endpoints run on its runtime.
///
/// ```
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .merge(rdebug::http::router());
/// # let _ = app;
/// ```
#[cfg(feature = "axum")]
pub fn router() -> axum::Router {
    use axum::routing::any;
    let ctx = routes::Ctx::from_env().unwrap_or_else(|why| {
        stderr::note(
            "warning",
            &format!("debug server router: {why}; every page that shows the process answers 503"),
        );
        routes::Ctx {
            token: auth::Token::unusable(why),
            hosts: guard::Hosts::from_env(),
        }
    });
    let ctx = std::sync::Arc::new(ctx);
    let handler = move |req: axum::extract::Request| {
        let ctx = ctx.clone();
        async move {
            let (parts, _body) = req.into_parts();
            routes::respond(&parts.method, &parts.uri, &parts.headers, &ctx)
                .await
                .map(axum::body::Body::new)
        }
    };
    axum::Router::new()
        .route("/debug/pprof", any(handler.clone()))
        .route("/debug/pprof/", any(handler.clone()))
        .route("/debug/pprof/{*name}", any(handler.clone()))
        .route("/debug/vars", any(handler.clone()))
        .route("/metrics", any(handler.clone()))
        .route("/debug/rdebug", any(handler.clone()))
        .route("/debug/rdebug/{*page}", any(handler))
}
