//! The one router: every endpoint, for both the server's own connections and the axum router.
//! It sees only the request's method, URI and headers: no request body is ever read.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};

use super::auth::Token;
use super::guard::{self, Hosts};
use super::params::{CpuSlot, Params};
use super::reply::{self, Body};
use super::{dashboard, dumps, index, metrics, profiles, trace, vars};

/// What every request is checked against.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    /// Required for every route that shows the process, when set.
    pub token: Token,
    /// Host names accepted besides loopback names and IP literals.
    pub hosts: Hosts,
}

impl Ctx {
    /// From the environment; `Err` names a setting that cannot be used (a token too long).
    pub(crate) fn from_env() -> Result<Ctx, String> {
        Ok(Ctx {
            token: Token::from_env()?,
            hosts: Hosts::from_env(),
        })
    }
}

/// Whether the request says it has a body (`Content-Length` above 0, or any
/// `Transfer-Encoding`).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// The answer to a request.
pub(crate) async fn respond(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Response<Body> {
    // Runtimes found since the last request are on this answer's pages.
    crate::runtime::discover::adopt();
    if has_body(headers) {
        let mut r = reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the rdebug debug server accepts no request bodies",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the rdebug debug server answers GET and HEAD only",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if let Err(r) = guard::check(path, headers, query, &ctx.hosts, &ctx.token) {
        return *r;
    }
    // HEAD: the checks and the status a GET would get, never the work (a profile, a dump).
    let head = method == Method::HEAD;
    let Some(name) = path.strip_prefix("/debug/pprof/") else {
        return match path {
            "/debug/pprof" => {
                let mut r = reply::with(StatusCode::MOVED_PERMANENTLY, reply::TEXT, "");
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/debug/pprof/"));
                r
            }
            "/debug/vars" | "/metrics" | "/debug/rdebug/history" if head => head_answer(),
            "/debug/vars" => vars::page(),
            "/metrics" => metrics::serve(query).await,
            p if p == "/debug/rdebug" || p.starts_with("/debug/rdebug/") => {
                dashboard::serve(p, query).await
            }
            _ => reply::error(StatusCode::NOT_FOUND, "404 page not found"),
        };
    };
    match name {
        "" => return index::page(),
        "mutex" => {
            return reply::error(
                StatusCode::NOT_FOUND,
                "mutex profile: not available: rdebug cannot tell a wait on a lock from other \
                 blocking honestly (std's Mutex and parking_lot wait in the same futex call as \
                 other primitives, and nothing records who holds a lock); /debug/pprof/block \
                 shows lock waits with the rest",
            );
        }
        "symbol" => {
            return reply::error(
                StatusCode::NOT_FOUND,
                "symbol: not needed: rdebug's profiles carry function names",
            );
        }
        "profile" | "heap" | "allocs" | "block" | "goroutine" | "threadcreate" | "cmdline"
        | "trace" => {}
        _ => return reply::error(StatusCode::NOT_FOUND, "Unknown profile"),
    }
    let params = match Params::parse(query) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if head {
        return head_answer();
    }
    match name {
        "cmdline" => dumps::cmdline(),
        "threadcreate" => dumps::threadcreate(),
        "goroutine" => goroutine(params.debug, query).await,
        "trace" => trace::start(params.seconds_or(trace::DEFAULT_SECONDS)),
        "profile" => match CpuSlot::take() {
            Ok(slot) => profiles::serve(name, &params, Some(slot)).await,
            Err(busy) => *busy,
        },
        _ => profiles::serve(name, &params, None).await,
    }
}

/// The answer to a HEAD that passed the checks: 200, no body, nothing run.
fn head_answer() -> Response<Body> {
    reply::ok(reply::TEXT, "")
}

if_taskdump! {
    {
        /// `goroutine`: every task's trace for `debug=1` and `2` with `dump=1` (tokio 1.54's dump
        /// can wedge a worker of the app: see `taskdump.rs`), else the summary.
        async fn goroutine(debug: u8, query: &str) -> Response<Body> {
            if debug > 0 && super::params::value(query, "dump").as_deref() == Some("1") {
                super::taskdump::serve(debug).await
            } else {
                dumps::goroutine(debug)
            }
        }
    } else {
        /// `goroutine`: the summary (no task dumps in this build).
        async fn goroutine(debug: u8, _query: &str) -> Response<Body> {
            dumps::goroutine(debug)
        }
    }
}
