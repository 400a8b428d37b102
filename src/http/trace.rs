//! `/debug/pprof/trace?seconds=N`: rdebug's SCHED and gc records as JSON lines for N seconds
//! (default 1, as Go's), streamed as they are taken. This is not Go's binary execution trace:
//! `go tool trace` cannot read it; any JSON-lines tool can, and it has the fields of the
//! `RDEBUG=format=json` lines.
//!
//! A `sched` record per watched runtime every SCHED period — the running reporter's `schedtrace`
//! when it has one, else 1000 ms — starting at once; a `gc` record for every allocator cycle that
//! closes during the window (the allocator is sampled every `gcpoll` ms, 100 by default, unless a
//! `gctrace` reporter already samples it). `ms` is milliseconds since init, as `at_ms` of gc.

use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::time::{Instant, sleep_until};

use super::reply::{self, Body, NDJSON};
use super::runtimes;
use crate::stats::{encode, gc, mem};

/// Default length, seconds (Go's).
pub(crate) const DEFAULT_SECONDS: u64 = 1;
/// SCHED period when no reporter sets one, ms.
const DEFAULT_PERIOD_MS: u64 = 1000;
/// Allocator sampling period when no reporter sets one, ms.
const DEFAULT_POLL_MS: u64 = 100;

/// The SCHED period and allocator sampling period in effect, ms.
fn periods() -> (u64, u64) {
    let config = crate::trace::global().map(|r| r.config());
    let sched = config
        .as_ref()
        .map(|c| c.schedtrace_ms())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_PERIOD_MS);
    let poll = config
        .as_ref()
        .filter(|c| c.gctrace() > 0)
        .map_or(DEFAULT_POLL_MS, |c| c.gcpoll_ms());
    (sched, poll.max(1))
}

/// Most traces running at once.
const MAX_TRACES: usize = 4;
/// Traces running now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Holds one of the [`MAX_TRACES`] places while a trace runs.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        RUNNING
            .fetch_update(Relaxed, Relaxed, |n| (n < MAX_TRACES).then_some(n + 1))
            .ok()
            .map(|_| Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Relaxed);
    }
}

pub(crate) fn start(seconds: u64) -> Response<Body> {
    let Some(place) = Place::take() else {
        return reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("{MAX_TRACES} traces are running already: try again when one ends"),
        );
    };
    let (response, tx) = reply::stream(NDJSON, 16);
    let response = reply::attachment(response, "trace");
    tokio::spawn(async move {
        let _place = place;
        let (sched_ms, poll_ms) = periods();
        let (sched_every, poll_every) = (
            Duration::from_millis(sched_ms),
            Duration::from_millis(poll_ms),
        );
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let (mut next_sched, mut next_poll) = (start, start);
        let mut seen = gc::tracker().as_ref().map_or(0, |t| t.totals().num_gc);
        let mut buf = Vec::with_capacity(1024);
        loop {
            let next = next_sched.min(next_poll);
            if next >= end {
                break;
            }
            sleep_until(next).await;
            let now = Instant::now();
            buf.clear();
            if now >= next_poll {
                next_poll = later(next_poll, poll_every, now);
                // With no gctrace reporter sampling the allocator, memstats() samples it.
                if gc::POLLER_ACTIVE.load(Relaxed) == 0 {
                    let _ = mem::read();
                }
                if let Some(t) = gc::tracker().as_ref() {
                    let (_, last) = t.cycles_after(seen, |c| encode::gc_json(&mut buf, c));
                    seen = last;
                }
            }
            if now >= next_sched {
                next_sched = later(next_sched, sched_every, now);
                let ms = crate::stats::millis(crate::clock::origin().elapsed());
                for (label, s) in runtimes::snapshot() {
                    encode::sched_json(&mut buf, ms, Some(&label), &s);
                }
            }
            if !buf.is_empty() && tx.send(Bytes::copy_from_slice(&buf)).await.is_err() {
                return; // the client went away
            }
        }
    });
    response
}

/// The tick after `due`, `every` later, or `every` after `now` when the loop fell behind (no
/// burst of catch-up records).
fn later(due: Instant, every: Duration, now: Instant) -> Instant {
    let next = due + every;
    if next <= now { now + every } else { next }
}
