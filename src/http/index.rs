//! `/debug/pprof/`: the index page, laid out as Go's (Count and Profile columns, links with
//! `?debug=1`, descriptions), plus links to rdebug's own pages.

use std::fmt::Write;

use super::reply::{self, Body, HTML};
use super::{profiles, runtimes};
use crate::sys::proc::process_files;
use hyper::Response;

/// Name, description, as Go words them where Go has the profile.
const PROFILES: &[(&str, &str)] = &[
    (
        "allocs",
        "A sampling of all past memory allocations (jemalloc's sampling profiler)",
    ),
    (
        "block",
        "Off-CPU time of busy tokio workers: where a poll blocked its worker (sleep, blocking I/O, std locks), as Go's stack traces that led to blocking. Needs the pprof feature. You can specify the duration in the seconds GET parameter",
    ),
    (
        "cmdline",
        "The command line invocation of the current program",
    ),
    (
        "goroutine",
        "The tokio runtimes rdebug watches: workers, idle workers, tasks and queues. Use debug=2 for per-worker detail",
    ),
    (
        "heap",
        "A sampling of memory allocations of live objects (jemalloc's sampling profiler). You can specify the gc GET parameter to purge freed memory before taking the heap sample",
    ),
    (
        "mutex",
        "Not available: a wait on a lock cannot be told apart from other blocking honestly; lock waits of tokio workers show in block",
    ),
    (
        "profile",
        "CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile file, use the go tool pprof command to investigate the profile",
    ),
    (
        "threadcreate",
        "The OS threads of the process, from /proc: name, state and CPU time",
    ),
    (
        "trace",
        "rdebug's SCHED and gc records as JSON lines (not Go's binary execution trace). You can specify the duration in the seconds GET parameter",
    ),
];

/// rdebug's own pages: path, description.
const PAGES: &[(&str, &str)] = &[
    (
        "/debug/vars",
        "memstats() and sched_stats() of every watched runtime, as JSON",
    ),
    (
        "/metrics",
        "Every rdebug figure in the Prometheus text format",
    ),
    (
        "/debug/rdebug",
        "Live dashboard: SCHED and gc history as charts",
    ),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The count shown for `name`.
fn count(name: &str) -> u64 {
    match name {
        "goroutine" => runtimes::snapshot()
            .iter()
            .map(|(_, s)| s.tasks as u64)
            .fold(0, u64::saturating_add),
        "threadcreate" => process_files().threads().unwrap_or(0),
        "heap" | "allocs" => profiles::count(name).unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn page() -> Response<Body> {
    let mut h = String::with_capacity(4096);
    h.push_str(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n\tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\nTypes of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n",
    );
    for (name, _) in PROFILES {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><a href='{name}?debug=1'>{name}</a></td></tr>",
            count(name)
        );
    }
    h.push_str("</table>\n<a href=\"goroutine?debug=2\">per-worker scheduler detail</a>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n");
    for (name, what) in PROFILES {
        let _ = writeln!(
            h,
            "<li><div class=profile-name>{name}: </div> {}</li>",
            escape(what)
        );
    }
    h.push_str("</ul>\n</p>\n<p>\nrdebug:\n<ul>\n");
    for (path, what) in PAGES {
        let _ = writeln!(
            h,
            "<li><a href=\"{path}\">{path}</a>: {}</li>",
            escape(what)
        );
    }
    h.push_str("</ul>\n</p>\n</body>\n</html>\n");
    reply::ok(HTML, h)
}
