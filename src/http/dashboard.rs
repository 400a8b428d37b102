//! `/debug/rdebug`: the live dashboard (statsviz's idea, for rdebug's figures).
//!
//! | path | answer |
//! |---|---|
//! | `/debug/rdebug` | the page: seven charts of the last five minutes, updated every second |
//! | `/debug/rdebug/history?since=MS` | the [`history`](super::history) ticks after `MS` as JSON lines; with `since`, waits up to 2 s for the next tick (at most [`MAX_LONG_POLLS`] requests wait at once; more answer at once) |
//! | `/debug/rdebug/dashboard.js`, `uPlot.iife.min.js`, `uPlot.min.css`, `LICENSE-uPlot` | the page's script and its vendored chart library, [uPlot](https://github.com/leeoniya/uPlot) 1.6.32 (MIT) |
//!
//! The charts: workers (busy on average over each second, busy at the sample, all, and a
//! dashed vertical mark at every second with a stall, `RDEBUG=stalltrace`), tasks, run
//! queues (global, sum of the local ones), threads (the process's, the blocking pool's), heap
//! (live, footprint, goal, and a mark at every allocator cycle), CPU (allocator and process, in %
//! of one core) and RSS.
//!
//! The page also charts a log captured with `RDEBUG=...,format=json` (its "Open a log" button):
//! it reads the file in the browser (nothing is sent anywhere) and draws what the log has — SCHED
//! figures from `sched` records, the heap, goal and allocator CPU share from `gc` records, RSS
//! from `gcdetail` records (`gctrace=2`), and a stall mark on the workers chart for each `stall`
//! record (`stalltrace`); lines that are not rdebug's JSON are skipped. That is what gcvis did
//! for Go's gctrace.
//!
//! Everything is served from the binary (about 60 KB): the page works with no network. The page
//! sends `Content-Security-Policy: default-src 'self'`, so it runs no script but its own. With
//! `RDEBUG_HTTP_TOKEN` set, its data (`history`) needs the token as `/metrics` and `/debug/vars`
//! do: open the page as `/debug/rdebug?token=<token>` and the page passes it on.

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::history;
use super::params::{self, value};
use super::reply::{self, Body, HTML, NDJSON};

/// Longest a `history?since=` request waits for the next tick.
const LONG_POLL: Duration = Duration::from_secs(2);
/// Most `history?since=` requests waiting at once (one per open dashboard page); more answer
/// at once without waiting.
pub(crate) const MAX_LONG_POLLS: usize = 8;

/// Long-polls waiting now.
static LONG_POLLS: AtomicUsize = AtomicUsize::new(0);

/// One waiting long-poll, counted until dropped.
struct LongPoll;

impl LongPoll {
    /// A place among the [`MAX_LONG_POLLS`], or `None` when all are taken.
    fn enter() -> Option<LongPoll> {
        LONG_POLLS
            .fetch_update(AcqRel, Acquire, |n| (n < MAX_LONG_POLLS).then_some(n + 1))
            .ok()
            .map(|_| LongPoll)
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        LONG_POLLS.fetch_sub(1, AcqRel);
    }
}

const PAGE: &str = include_str!("assets/dashboard.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/LICENSE-uPlot");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

pub(crate) async fn serve(path: &str, query: &str) -> Response<Body> {
    // The history starts with the server; through the axum router, with the first request.
    history::ensure_feeding();
    let page = path
        .strip_prefix("/debug/rdebug")
        .unwrap_or("")
        .trim_start_matches('/');
    match page {
        "" => {
            let mut r = reply::ok(HTML, PAGE);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; style-src 'self' 'unsafe-inline'"),
            );
            r
        }
        "history" => history_page(query).await,
        "dashboard.js" => asset(JS, SCRIPT),
        "uPlot.iife.min.js" => asset(JS, UPLOT_JS),
        "uPlot.min.css" => asset(CSS, UPLOT_CSS),
        "LICENSE-uPlot" => asset(reply::TEXT, UPLOT_LICENSE),
        _ => reply::error(
            StatusCode::NOT_FOUND,
            "/debug/rdebug: no such page: the dashboard is /debug/rdebug, its data \
             /debug/rdebug/history",
        ),
    }
}

/// A static file of the page, cached by the browser for an hour.
fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut r = reply::ok(content_type, text);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

async fn history_page(query: &str) -> Response<Body> {
    // A page asks: its CPU chart needs the allocator-CPU sampler (the tick alone does not start
    // it).
    crate::stats::gc::want_cpu_figure();
    // `since`: the `ms` of the last tick the page has.
    let since = match value(query, "since")
        .map(|v| params::number("since", &v, 0, u64::MAX, "milliseconds since init"))
        .transpose()
    {
        Ok(since) => since,
        Err(refusal) => return *refusal,
    };
    // Past the cap a request answers at once (the page then asks again a little later), so
    // long-polls never hold every connection slot of the server.
    let waiting = LongPoll::enter();
    let wait = if waiting.is_some() {
        LONG_POLL
    } else {
        Duration::ZERO
    };
    let mut r = reply::ok(NDJSON, history::after(since, wait).await);
    drop(waiting);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
