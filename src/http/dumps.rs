//! The process dumps: `cmdline` (argv joined by NUL, as Go's), `threadcreate` (the OS threads of
//! the process from `/proc`) and `goroutine` (the watched tokio runtimes).
//!
//! `goroutine` shows per runtime its workers, idle workers, tasks and queues (`debug=2` adds a
//! line per worker and the blocking pool), written from the same field tables as the SCHED lines.
//! Every task's trace (tokio's `Handle::dump`) is `taskdump.rs`'s, for `debug=1` and `2` with
//! `dump=1`, in builds with `RUSTFLAGS="--cfg tokio_unstable"` and rdebug's feature `taskdump`
//! (Linux on aarch64, x86, x86_64, s390x; names and lines need debuginfo in the binary). Without
//! them, without `dump=1`, and for `debug=0`, this summary is the answer; its last line says how
//! to get the traces.
//!
//! Go serves `goroutine` and `threadcreate` as pprof protobuf when `debug=0`. With the `pprof`
//! feature, rdebug serves `goroutine?debug=0` as pprof protobuf too (sample type
//! `goroutine/count`, one sample per runtime and task state: see
//! [`profile::goroutine`](crate::profile::goroutine)); without it, and for `threadcreate`, the text.

use std::fmt::Write as _;
use std::io::Write as _;

use hyper::Response;

use super::reply::{self, Body, TEXT};
use super::runtimes::{self, NONE_WATCHED};
use crate::stats::encode::text_fields;
use crate::stats::{SchedStats, fields};

/// `/debug/pprof/cmdline`: the program's arguments joined by NUL bytes.
pub(crate) fn cmdline() -> Response<Body> {
    let mut out = Vec::new();
    for (i, a) in std::env::args_os().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(a.as_encoded_bytes());
    }
    reply::ok(TEXT, out)
}

/// Most threads listed; past it, one line counts the rest.
const MAX_THREADS: usize = 10_000;

/// `/debug/pprof/threadcreate`:
///
/// ```text
/// threadcreate profile: total 7
/// # tid state cpu name
/// 4242 S 0.120s main
/// ```
///
/// (the columns are separated by tabs).
pub(crate) fn threadcreate() -> Response<Body> {
    let mut rows = Vec::new();
    let mut more = 0usize;
    for tid in crate::sys::task::thread_ids() {
        if rows.len() == MAX_THREADS {
            more += 1;
            continue;
        }
        rows.push((tid, thread(tid)));
    }
    rows.sort_by_key(|(tid, _)| *tid);
    let mut out = String::with_capacity(64 * rows.len() + 64);
    let _ = writeln!(out, "threadcreate profile: total {}", rows.len() + more);
    out.push_str("# tid\tstate\tcpu\tname\n");
    for (tid, t) in &rows {
        let cpu = t.cpu_ns.map_or_else(
            || "?".into(),
            |ns| format!("{}.{:03}s", ns / 1_000_000_000, ns / 1_000_000 % 1000),
        );
        let _ = writeln!(out, "{tid}\t{}\t{cpu}\t{}", t.state, t.name.escape_debug());
    }
    if more > 0 {
        let _ = writeln!(out, "# {more} more threads not listed");
    }
    if rows.is_empty() {
        out.push_str("# no /proc/self/task on this system\n");
    }
    reply::ok(TEXT, out)
}

/// One thread as its `stat` describes it.
struct Thread {
    name: String,
    state: char,
    cpu_ns: Option<u64>,
}

fn thread(tid: i64) -> Thread {
    match crate::sys::task::task_stat(tid) {
        Some(t) => Thread {
            name: t.name,
            state: t.state as char,
            cpu_ns: Some(t.cpu_ns),
        },
        None => Thread {
            name: String::new(),
            state: '?',
            cpu_ns: None,
        },
    }
}

/// `/debug/pprof/goroutine`:
///
/// ```text
/// goroutine profile: total 26
/// # runtime main: workers=2 idleworkers=2 threads=9 tasks=26 runqueue=0
/// ```
///
/// `debug=2` adds `#   W<i>: parked= parks= busy=...` per worker and `#   blocking: ...`.
pub(crate) fn goroutine(debug: u8) -> Response<Body> {
    let list = runtimes::snapshot();
    #[cfg(feature = "pprof")]
    if debug == 0 {
        let gz = crate::profile::goroutine::summary_pprof_gz(&list);
        return reply::attachment(reply::ok(reply::OCTETS, gz), "goroutine");
    }
    let total = list
        .iter()
        .map(|(_, s)| s.tasks as u64)
        .fold(0, u64::saturating_add);
    let mut out = Vec::with_capacity(256 * (list.len() + 1));
    let _ = writeln!(out, "goroutine profile: total {total}");
    if list.is_empty() {
        let _ = writeln!(out, "# {NONE_WATCHED}");
    }
    for (label, s) in &list {
        runtime_lines(&mut out, label, s, debug);
    }
    out.extend_from_slice(TASKS_NOTE.as_bytes());
    reply::ok(TEXT, out)
}

if_taskdump! {
    {
        /// How to get every task's trace, as the summary says it.
        const TASKS_NOTE: &str =
            "# every task's trace: goroutine?debug=1&dump=1 (grouped) or ?debug=2&dump=1 (each \
             task); tokio 1.54's dump can wedge a worker of the app for good (tokio-rs/tokio#8370)\n";
    } else {
        /// How to get every task's trace, as the summary says it.
        const TASKS_NOTE: &str = "# per-task traces (tokio task dumps) need a build with \
            RUSTFLAGS=\"--cfg tokio_unstable\" and rdebug's feature taskdump, on Linux\n";
    }
}

/// The `# runtime <label>: ...` line of one runtime, and with `debug=2` its worker and
/// blocking-pool lines.
pub(crate) fn runtime_lines(out: &mut Vec<u8>, label: &str, s: &SchedStats, debug: u8) {
    let _ = write!(out, "# runtime {label}: ");
    text_fields(out, fields::SCHED, s, true);
    out.push(b'\n');
    if debug >= 2 {
        for (i, w) in s.per_worker.iter().enumerate() {
            let _ = write!(out, "#   W{i}: ");
            text_fields(out, fields::WORKER, w, true);
            out.push(b'\n');
        }
        let start = out.len();
        out.extend_from_slice(b"#   blocking: ");
        let before = out.len();
        text_fields(out, fields::BLOCKING, s, true);
        if out.len() == before {
            out.truncate(start);
        } else {
            out.push(b'\n');
        }
    }
}
