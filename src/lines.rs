//! The printed lines: SCHED, scheddetail, gc and gctrace=2 detail, in text or JSON.
//!
//! Every function appends one complete line (ending in `\n`) to a reused buffer with `write!`,
//! which formats integers without allocating.

use std::io::Write;

use crate::config::Format;
use crate::gc::Cycle;
use crate::sched::SchedStats;

/// MiB, truncated (`>> 20`), as Go prints MB.
pub(crate) fn mb(bytes: u64) -> u64 {
    bytes >> 20
}

/// `SCHED <ms>ms: [runtime=<name> ]workers=W idleworkers=I threads=T tasks=K [blocking=B
/// idleblocking=IB ]runqueue=G[ [l0 l1 ...]]`
pub(crate) fn sched(out: &mut Vec<u8>, fmt: Format, ms: u64, label: Option<&str>, s: &SchedStats) {
    let _ = match fmt {
        Format::Text => sched_text(out, ms, label, s),
        Format::Json => sched_json(out, ms, label, s),
    };
}

fn sched_text(
    out: &mut Vec<u8>,
    ms: u64,
    label: Option<&str>,
    s: &SchedStats,
) -> std::io::Result<()> {
    write!(out, "SCHED {ms}ms: ")?;
    if let Some(l) = label {
        write!(out, "runtime={l} ")?;
    }
    write!(out, "workers={} idleworkers={} ", s.workers, s.idle_workers)?;
    if let Some(t) = s.threads {
        write!(out, "threads={t} ")?;
    }
    write!(out, "tasks={} ", s.tasks)?;
    if let (Some(b), Some(ib)) = (s.blocking_threads, s.idle_blocking_threads) {
        write!(out, "blocking={b} idleblocking={ib} ")?;
    }
    write!(out, "runqueue={}", s.global_queue_depth)?;
    local_queues(out, s, b" [", b' ', b']')?;
    out.push(b'\n');
    Ok(())
}

/// The per-worker local queue depths, `open` d0 `sep` d1 ... `close`; nothing when any depth is
/// unknown (without `tokio_unstable`).
fn local_queues(
    out: &mut Vec<u8>,
    s: &SchedStats,
    open: &[u8],
    sep: u8,
    close: u8,
) -> std::io::Result<()> {
    if s.per_worker.is_empty() || s.per_worker.iter().any(|w| w.local_queue_depth.is_none()) {
        return Ok(());
    }
    out.extend_from_slice(open);
    for (i, w) in s.per_worker.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        write!(out, "{}", w.local_queue_depth.unwrap_or(0))?;
    }
    out.push(close);
    Ok(())
}

fn sched_json(
    out: &mut Vec<u8>,
    ms: u64,
    label: Option<&str>,
    s: &SchedStats,
) -> std::io::Result<()> {
    write!(out, "{{\"type\":\"sched\",\"ms\":{ms}")?;
    if let Some(l) = label {
        out.extend_from_slice(b",\"runtime\":");
        json_str(out, l);
    }
    write!(
        out,
        ",\"workers\":{},\"idleworkers\":{}",
        s.workers, s.idle_workers
    )?;
    if let Some(t) = s.threads {
        write!(out, ",\"threads\":{t}")?;
    }
    write!(out, ",\"tasks\":{}", s.tasks)?;
    if let (Some(b), Some(ib)) = (s.blocking_threads, s.idle_blocking_threads) {
        write!(out, ",\"blocking\":{b},\"idleblocking\":{ib}")?;
    }
    write!(out, ",\"runqueue\":{}", s.global_queue_depth)?;
    local_queues(out, s, b",\"local\":[", b',', b']')?;
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// One `scheddetail` line for worker `i`: parked, parks, busy time and its share of the interval
/// since the previous SCHED line; under `tokio_unstable` also polls, steals, noops, local queue
/// depth and mean poll time.
pub(crate) fn worker_detail(
    out: &mut Vec<u8>,
    fmt: Format,
    label: Option<&str>,
    i: usize,
    s: &SchedStats,
    busy_share_pct: u64,
) {
    let Some(w) = s.per_worker.get(i) else { return };
    let _ = (|| -> std::io::Result<()> {
        match fmt {
            Format::Text => {
                write!(
                    out,
                    "  W{i}: parked={} parks={} busy={}ms busy%={busy_share_pct}",
                    u8::from(w.parked),
                    w.park_count,
                    w.busy_ns / 1_000_000
                )?;
                if let (Some(p), Some(st), Some(no), Some(q), Some(mp)) = (
                    w.polls,
                    w.steals,
                    w.noops,
                    w.local_queue_depth,
                    w.mean_poll_ns,
                ) {
                    write!(
                        out,
                        " polls={p} steals={st} noops={no} runqsize={q} meanpoll={}us",
                        mp / 1000
                    )?;
                }
                out.push(b'\n');
            }
            Format::Json => {
                out.extend_from_slice(b"{\"type\":\"worker\"");
                if let Some(l) = label {
                    out.extend_from_slice(b",\"runtime\":");
                    json_str(out, l);
                }
                write!(
                    out,
                    ",\"worker\":{i},\"parked\":{},\"parks\":{},\"busy_ms\":{},\"busy_pct\":{busy_share_pct}",
                    w.parked,
                    w.park_count,
                    w.busy_ns / 1_000_000
                )?;
                if let (Some(p), Some(st), Some(no), Some(q), Some(mp)) = (
                    w.polls,
                    w.steals,
                    w.noops,
                    w.local_queue_depth,
                    w.mean_poll_ns,
                ) {
                    write!(
                        out,
                        ",\"polls\":{p},\"steals\":{st},\"noops\":{no},\"runqsize\":{q},\"meanpoll_us\":{}",
                        mp / 1000
                    )?;
                }
                out.extend_from_slice(b"}\n");
            }
        }
        Ok(())
    })();
}

/// The blocking-pool `scheddetail` line, when its numbers exist (`tokio_unstable`).
pub(crate) fn blocking_detail(out: &mut Vec<u8>, fmt: Format, label: Option<&str>, s: &SchedStats) {
    let (Some(b), Some(ib), Some(q)) = (
        s.blocking_threads,
        s.idle_blocking_threads,
        s.blocking_queue_depth,
    ) else {
        return;
    };
    let _ = match fmt {
        Format::Text => writeln!(out, "  blocking: threads={b} idle={ib} queue={q}"),
        Format::Json => {
            out.extend_from_slice(b"{\"type\":\"blocking\"");
            if let Some(l) = label {
                out.extend_from_slice(b",\"runtime\":");
                json_str(out, l);
            }
            writeln!(out, ",\"threads\":{b},\"idle\":{ib},\"queue\":{q}}}")
        }
    };
}

/// `gc N @S.SSSs P%: B->A->L MB, G MB goal, W P[ (forced)]`
pub(crate) fn gc(out: &mut Vec<u8>, fmt: Format, c: &Cycle) {
    let pct = (c.cpu_fraction * 100.0) as u64;
    let ms = c.at.as_millis();
    let goal = if c.goal == u64::MAX { 0 } else { mb(c.goal) };
    let _ = match fmt {
        Format::Text => writeln!(
            out,
            "gc {} @{}.{:03}s {pct}%: {}->{}->{} MB, {goal} MB goal, {} P{}",
            c.n,
            ms / 1000,
            ms % 1000,
            mb(c.before),
            mb(c.after),
            mb(c.live),
            c.procs,
            if c.forced { " (forced)" } else { "" }
        ),
        Format::Json => writeln!(
            out,
            "{{\"type\":\"gc\",\"gc\":{},\"s\":{}.{:03},\"cpu_pct\":{pct},\"before_mb\":{},\"after_mb\":{},\"live_mb\":{},\"goal_mb\":{goal},\"p\":{},\"forced\":{},\"before\":{},\"after\":{},\"live\":{},\"goal\":{}}}",
            c.n,
            ms / 1000,
            ms % 1000,
            mb(c.before),
            mb(c.after),
            mb(c.live),
            c.procs,
            c.forced,
            c.before,
            c.after,
            c.live,
            if c.goal == u64::MAX { 0 } else { c.goal },
        ),
    };
}

/// The `gctrace=2` line: what was allocated and freed during the cycle and at what rate, purge
/// sweeps and bytes purged, and where memory stands.
pub(crate) fn gc_detail(out: &mut Vec<u8>, fmt: Format, c: &Cycle) {
    let secs = c.span.as_secs_f64();
    let rate = |v: u64| {
        if secs > 0.0 {
            (v as f64 / secs) as u64
        } else {
            0
        }
    };
    let k = &c.counted;
    let h = &c.heap;
    let _ = match fmt {
        Format::Text => writeln!(
            out,
            "  gc {}: {}ms: alloc {} B {} objs ({} MB/s {}/s), free {} B {} objs ({} MB/s {}/s), purge {} sweeps {} MB, resident {} MB, retained {} MB, metadata {} MB, rss {} MB",
            c.n,
            c.span.as_millis(),
            k.allocated_bytes,
            k.allocs,
            mb(rate(k.allocated_bytes)),
            rate(k.allocs),
            k.freed_bytes,
            k.frees,
            mb(rate(k.freed_bytes)),
            rate(k.frees),
            c.purge_sweeps,
            mb(c.purged),
            mb(h.resident),
            mb(h.retained),
            mb(h.metadata),
            mb(c.rss),
        ),
        Format::Json => writeln!(
            out,
            "{{\"type\":\"gcdetail\",\"gc\":{},\"span_ms\":{},\"alloc_bytes\":{},\"allocs\":{},\"alloc_bytes_per_s\":{},\"allocs_per_s\":{},\"free_bytes\":{},\"frees\":{},\"free_bytes_per_s\":{},\"frees_per_s\":{},\"purge_sweeps\":{},\"purged\":{},\"resident\":{},\"retained\":{},\"metadata\":{},\"rss\":{}}}",
            c.n,
            c.span.as_millis(),
            k.allocated_bytes,
            k.allocs,
            rate(k.allocated_bytes),
            rate(k.allocs),
            k.freed_bytes,
            k.frees,
            rate(k.freed_bytes),
            rate(k.frees),
            c.purge_sweeps,
            c.purged,
            h.resident,
            h.retained,
            h.metadata,
            c.rss,
        ),
    };
}

/// An `rdebug: <kind>: <message>` line, or `{"type":"<kind>","message":"..."}`.
pub(crate) fn note(out: &mut Vec<u8>, fmt: Format, kind: &str, message: &str) {
    match fmt {
        Format::Text => {
            let _ = writeln!(out, "rdebug: {kind}: {message}");
        }
        Format::Json => {
            out.extend_from_slice(b"{\"type\":");
            json_str(out, kind);
            out.extend_from_slice(b",\"message\":");
            json_str(out, message);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::WorkerStats;
    use std::time::Duration;

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
            "{\"type\":\"sched\",\"ms\":0,\"runtime\":\"a\\\"b\",\"workers\":2,\"idleworkers\":1,\"threads\":6,\"tasks\":9,\"blocking\":1,\"idleblocking\":1,\"runqueue\":3,\"local\":[2,0]}\n"
        );
    }

    #[test]
    fn gc_line_has_go_shape() {
        let c = Cycle {
            n: 3,
            at: Duration::from_millis(1685),
            cpu_fraction: 0.0299,
            before: (5 << 20) + 1234,
            after: 3 << 20,
            live: (2 << 20) + (1 << 19),
            goal: 4 << 20,
            procs: 2,
            forced: true,
            ..Cycle::default()
        };
        assert_eq!(
            text(|o| gc(o, Format::Text, &c)),
            "gc 3 @1.685s 2%: 5->3->2 MB, 4 MB goal, 2 P (forced)\n"
        );
        let json = text(|o| gc(o, Format::Json, &c));
        assert!(
            json.starts_with(
                "{\"type\":\"gc\",\"gc\":3,\"s\":1.685,\"cpu_pct\":2,\"before_mb\":5,"
            )
        );
    }

    /// Rates from deltas: a counter that did not move, a clock that did not advance, counters at
    /// the top of their range, a CPU share that is not a number. Lines still come out whole.
    #[test]
    fn rates_survive_still_counters_a_still_clock_and_huge_values() {
        let mut c = Cycle {
            n: u64::MAX,
            at: Duration::MAX,
            cpu_fraction: f64::NAN,
            before: u64::MAX,
            after: u64::MAX,
            live: u64::MAX,
            goal: u64::MAX,
            procs: u64::MAX,
            span: Duration::ZERO,
            ..Cycle::default()
        };
        c.counted.allocated_bytes = u64::MAX;
        c.counted.allocs = u64::MAX;
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
        assert!(
            detail.contains("(0 MB/s 0/s)"),
            "a zero span gives zero rates: {detail}"
        );
        // A counter that did not move over a real span.
        c.span = Duration::from_secs(1);
        c.counted = Default::default();
        let detail = text(|o| gc_detail(o, Format::Text, &c));
        assert!(detail.contains("alloc 0 B 0 objs (0 MB/s 0/s)"), "{detail}");
        // Shares out of range print as whole numbers.
        for share in [f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e300] {
            c.cpu_fraction = share;
            let line = text(|o| gc(o, Format::Text, &c));
            assert!(line.starts_with(&format!("gc {} @", u64::MAX)), "{line}");
        }
        // A tiny span with a huge count: the rate saturates, it does not wrap.
        c.span = Duration::from_nanos(1);
        c.counted.allocs = u64::MAX;
        let detail = text(|o| gc_detail(o, Format::Text, &c));
        assert!(detail.contains(&format!("{}/s", u64::MAX)), "{detail}");
    }
}
