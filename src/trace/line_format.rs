//! The printed lines: SCHED, scheddetail, gc and gctrace=2 detail, in text or JSON, written from
//! the field tables of [`stats::fields`](crate::stats::fields).
//!
//! Every function appends one complete line (ending in `\n`) to a reused buffer with `write!`,
//! which formats integers without allocating.

use std::io::Write;

use crate::config::Format;
use crate::stats::encode::{json_fields, json_head, local_queues, text_fields};
use crate::stats::fields::{self, Value};
use crate::stats::{GcCycle, SchedStats, encode as records};

/// MiB, truncated (`>> 20`), as Go prints MB.
pub(crate) fn mb(bytes: u64) -> u64 {
    bytes >> 20
}

/// `SCHED <ms>ms: [runtime=<name> ]workers=W idleworkers=I threads=T tasks=K [blocking=B
/// idleblocking=IB ]runqueue=G[ [l0 l1 ...]]`; in JSON the same fields under their serde names,
/// the local queues as `"per_worker":[{"local_queue_depth":l0},...]`.
pub(crate) fn sched(out: &mut Vec<u8>, fmt: Format, ms: u64, label: Option<&str>, s: &SchedStats) {
    match fmt {
        Format::Text => {
            let _ = write!(out, "SCHED {ms}ms: ");
            if let Some(l) = label {
                let _ = write!(out, "runtime={l} ");
            }
            text_fields(out, fields::SCHED, s, true);
            if let Some(depths) = local_queues(s) {
                out.extend_from_slice(b" [");
                for (i, d) in depths.enumerate() {
                    let _ = write!(out, "{}{d}", if i > 0 { " " } else { "" });
                }
                out.push(b']');
            }
            out.push(b'\n');
        }
        Format::Json => records::sched_json(out, ms, label, s),
    }
}

/// One `scheddetail` line for worker `i`: `  W<i>: parked= parks= busy=<ms>ms[ busy%=<share>]`
/// and, under `tokio_unstable`, `polls= steals= noops= runqsize=[ meanpoll=<us>us]`. `busy%` is
/// the share of the interval since the previous SCHED line, left out when there was none.
pub(crate) fn worker_detail(
    out: &mut Vec<u8>,
    fmt: Format,
    label: Option<&str>,
    i: usize,
    s: &SchedStats,
    busy_share_pct: Option<u64>,
) {
    let Some(w) = s.per_worker.get(i) else { return };
    // `busy%` is a property of the interval, not of the worker: it goes right after `busy`.
    let split = fields::WORKER
        .iter()
        .position(|f| f.key == "busy_ns")
        .map_or(fields::WORKER.len(), |p| p + 1);
    let (head, tail) = fields::WORKER.split_at(split);
    match fmt {
        Format::Text => {
            let _ = write!(out, "  W{i}: ");
            text_fields(out, head, w, true);
            if let Some(p) = busy_share_pct {
                let _ = write!(out, " busy%={p}");
            }
            text_fields(out, tail, w, false);
            out.push(b'\n');
        }
        Format::Json => {
            json_head(out, "worker", label);
            let _ = write!(out, ",\"worker\":{i}");
            json_fields(out, fields::WORKER, w);
            if let Some(p) = busy_share_pct {
                let _ = write!(out, ",\"busy_pct\":{p}");
            }
            out.extend_from_slice(b"}\n");
        }
    }
}

/// The blocking-pool `scheddetail` line, `  blocking: threads= idle= queue=`, when its numbers
/// exist (`tokio_unstable`).
pub(crate) fn blocking_detail(out: &mut Vec<u8>, fmt: Format, label: Option<&str>, s: &SchedStats) {
    if fields::BLOCKING
        .iter()
        .any(|f| (f.get)(s) == Value::Missing)
    {
        return;
    }
    match fmt {
        Format::Text => {
            out.extend_from_slice(b"  blocking: ");
            text_fields(out, fields::BLOCKING, s, true);
            out.push(b'\n');
        }
        Format::Json => {
            json_head(out, "blocking", label);
            json_fields(out, fields::BLOCKING, s);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// `gc N @S.SSSs P%: B->A->L MB, G MB goal, W P[ (forced)]`
pub(crate) fn gc(out: &mut Vec<u8>, fmt: Format, c: &GcCycle) {
    match fmt {
        Format::Text => {
            let pct = (c.cpu_fraction * 100.0) as u64;
            let _ = writeln!(
                out,
                "gc {} @{}.{:03}s {pct}%: {}->{}->{} MB, {} MB goal, {} P{}",
                c.num,
                c.at_ms / 1000,
                c.at_ms % 1000,
                mb(c.before),
                mb(c.after),
                mb(c.live),
                mb(c.goal),
                c.procs,
                if c.forced { " (forced)" } else { "" }
            );
        }
        Format::Json => records::gc_json(out, c),
    }
}

/// The `gctrace=2` line: what was allocated and freed during the cycle and at what rate, purge
/// sweeps and bytes purged, and where memory stands.
pub(crate) fn gc_detail(out: &mut Vec<u8>, fmt: Format, c: &GcCycle) {
    match fmt {
        Format::Text => {
            let _ = writeln!(
                out,
                "  gc {}: {}ms: alloc {} B {} objs ({} MB/s {}/s), free {} B {} objs ({} MB/s {}/s), purge {} sweeps {} MB, resident {} MB, retained {} MB, metadata {} MB, rss {} MB",
                c.num,
                c.span_ms,
                c.allocated_bytes,
                c.allocs,
                mb(c.allocated_bytes_per_sec),
                c.allocs_per_sec,
                c.freed_bytes,
                c.frees,
                mb(c.freed_bytes_per_sec),
                c.frees_per_sec,
                c.purge_sweeps,
                mb(c.purged),
                mb(c.resident),
                mb(c.retained),
                mb(c.metadata),
                mb(c.rss),
            );
        }
        Format::Json => {
            json_head(out, "gcdetail", None);
            json_fields(out, fields::GC_DETAIL, c);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// An `rdebug: <kind>: <message>` line, or `{"type":"<kind>","message":"..."}`.
pub(crate) fn note(out: &mut Vec<u8>, fmt: Format, kind: &str, message: &str) {
    crate::sys::stderr::encode_note(out, fmt == Format::Json, kind, message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerStats;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn sched_line_has_go_shape() {
        let mut s = SchedStats {
            workers: 2,
            idle_workers: 1,
            tasks: 9,
            global_queue_depth: 3,
            threads: Some(6),
            ..SchedStats::default()
        };
        s.per_worker = vec![WorkerStats::default(); 2];
        assert_eq!(
            text(|o| sched(o, Format::Text, 1000, None, &s)),
            "SCHED 1000ms: workers=2 idleworkers=1 threads=6 tasks=9 runqueue=3\n"
        );
        s.per_worker[0].local_queue_depth = Some(2);
        s.per_worker[1].local_queue_depth = Some(0);
        s.blocking_threads = Some(1);
        s.idle_blocking_threads = Some(1);
        assert_eq!(
            text(|o| sched(o, Format::Text, 0, Some("io"), &s)),
            "SCHED 0ms: runtime=io workers=2 idleworkers=1 threads=6 tasks=9 blocking=1 idleblocking=1 runqueue=3 [2 0]\n"
        );
        assert_eq!(
            text(|o| sched(o, Format::Json, 0, Some("a\"b"), &s)),
            "{\"type\":\"sched\",\"runtime\":\"a\\\"b\",\"ms\":0,\"workers\":2,\"idle_workers\":1,\"threads\":6,\"tasks\":9,\"blocking_threads\":1,\"idle_blocking_threads\":1,\"global_queue_depth\":3,\"stalls\":0,\"per_worker\":[{\"local_queue_depth\":2},{\"local_queue_depth\":0}]}\n"
        );
    }

    #[test]
    fn worker_line_leaves_out_what_it_does_not_have() {
        let mut s = SchedStats {
            per_worker: vec![WorkerStats {
                parked: true,
                park_count: 4,
                busy_ns: 12_345_678,
                ..WorkerStats::default()
            }],
            ..SchedStats::default()
        };
        assert_eq!(
            text(|o| worker_detail(o, Format::Text, None, 0, &s, Some(11))),
            "  W0: parked=1 parks=4 busy=12ms busy%=11\n"
        );
        assert_eq!(
            text(|o| worker_detail(o, Format::Text, None, 0, &s, None)),
            "  W0: parked=1 parks=4 busy=12ms\n"
        );
        let w = &mut s.per_worker[0];
        (w.polls, w.steals, w.noops, w.local_queue_depth) = (Some(5), Some(1), Some(2), Some(3));
        w.mean_poll_ns = Some(4_500);
        assert_eq!(
            text(|o| worker_detail(o, Format::Text, None, 0, &s, Some(7))),
            "  W0: parked=1 parks=4 busy=12ms busy%=7 polls=5 steals=1 noops=2 runqsize=3 meanpoll=4us\n"
        );
    }

    #[test]
    fn gc_line_has_go_shape() {
        let c = GcCycle {
            num: 3,
            at_ms: 1685,
            cpu_fraction: 0.0299,
            before: (5 << 20) + 1234,
            after: 3 << 20,
            live: (2 << 20) + (1 << 19),
            goal: 4 << 20,
            procs: 2,
            forced: true,
            ..GcCycle::default()
        };
        assert_eq!(
            text(|o| gc(o, Format::Text, &c)),
            "gc 3 @1.685s 2%: 5->3->2 MB, 4 MB goal, 2 P (forced)\n"
        );
        let json = text(|o| gc(o, Format::Json, &c));
        assert!(
            json.starts_with("{\"type\":\"gc\",\"num\":3,\"at_ms\":1685,\"cpu_fraction\":0.0299,"),
            "{json}"
        );
    }

    /// Counters at the top of their range, a CPU share that is not a number: lines still come out
    /// whole, and JSON stays JSON.
    #[test]
    fn lines_survive_huge_values_and_odd_shares() {
        let mut c = GcCycle {
            num: u64::MAX,
            at_ms: u64::MAX,
            cpu_fraction: f64::NAN,
            before: u64::MAX,
            after: u64::MAX,
            live: u64::MAX,
            goal: u64::MAX,
            procs: u64::MAX,
            allocated_bytes: u64::MAX,
            allocs: u64::MAX,
            allocs_per_sec: u64::MAX,
            ..GcCycle::default()
        };
        for fmt in [Format::Text, Format::Json] {
            let line = text(|o| gc(o, fmt, &c));
            assert!(
                line.ends_with('\n') && line.matches('\n').count() == 1,
                "{line}"
            );
            let detail = text(|o| gc_detail(o, fmt, &c));
            assert!(detail.ends_with('\n'), "{detail}");
        }
        let detail = text(|o| gc_detail(o, Format::Text, &c));
        assert!(detail.contains(&format!("{}/s", u64::MAX)), "{detail}");
        // Shares out of range print as whole numbers.
        for share in [f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e300] {
            c.cpu_fraction = share;
            let line = text(|o| gc(o, Format::Text, &c));
            assert!(line.starts_with(&format!("gc {} @", u64::MAX)), "{line}");
            let json = text(|o| gc(o, Format::Json, &c));
            assert!(!json.contains("inf") && !json.contains("NaN"), "{json}");
        }
    }
}
