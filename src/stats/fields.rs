//! The field tables: one per record kind, the single place that says what each figure is called.
//!
//! A [`Field`]'s `key` is the struct field's own name (the macro reads the value as
//! `record.<key>`, so a key that is not a field does not compile), hence the serde name, the key
//! of the JSON lines and the stem of the Prometheus name; `text` is the Go-style key of the text
//! line (`idleworkers`, `runqueue`), empty where the text line shows the figure by position (the
//! `gc` line) or not at all. The trace encoders write text and JSON from the same table, so the
//! two cannot drift; a unit test checks every table against the struct's serde keys.

use super::{GcCycle, MemStats, SchedStats, WorkerStats};

/// A figure as the encoders see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// A count or a size.
    Int(u64),
    /// A yes/no (text `0`/`1`, JSON `false`/`true`).
    Bool(bool),
    /// A share (0 to 1).
    Float(f64),
    /// Not available in this build or on this platform: left out of the line.
    Missing,
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Missing, Into::into)
    }
}

/// How the text line shows a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// As it is.
    Plain,
    /// Nanoseconds shown as whole milliseconds with `ms` after them.
    NsAsMs,
    /// Nanoseconds shown as whole microseconds with `us` after them.
    NsAsUs,
}

/// What a figure is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A level that goes up and down.
    Gauge,
    /// A total that only grows.
    Counter,
}

/// One figure of a record `R`.
///
/// `kind` and `help` (and the [`MEMSTATS`] table) are what the Prometheus exporter reads; until it
/// lands only the tests read them.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) struct Field<R> {
    /// The struct field's name: serde name, JSON key, Prometheus stem.
    pub key: &'static str,
    /// The text line's key, or empty when the text line shows the figure by position or not at all.
    pub text: &'static str,
    /// How the text line shows it.
    pub unit: Unit,
    /// Gauge or counter.
    pub kind: Kind,
    /// One line saying what it is and where it comes from (Prometheus HELP).
    pub help: &'static str,
    /// Reads it from a record.
    pub get: fn(&R) -> Value,
}

macro_rules! field {
    ($key:ident, $text:expr, $unit:ident, $kind:ident, $help:expr) => {
        Field {
            key: stringify!($key),
            text: $text,
            unit: Unit::$unit,
            kind: Kind::$kind,
            help: $help,
            get: |r| Value::from(r.$key),
        }
    };
}

/// The SCHED line, in its text order.
#[rustfmt::skip]
pub(crate) static SCHED: &[Field<SchedStats>] = &[
    field!(workers, "workers", Plain, Gauge, "Worker threads of the runtime (Go's gomaxprocs): RuntimeMetrics::num_workers."),
    field!(idle_workers, "idleworkers", Plain, Gauge, "Workers parked now (Go's idleprocs): workers whose worker_park_unpark_count is odd."),
    field!(threads, "threads", Plain, Gauge, "OS threads of the whole process: /proc/self/stat field 20."),
    field!(tasks, "tasks", Plain, Gauge, "Tasks alive in the runtime: num_alive_tasks, less rdebug's own watcher task."),
    field!(blocking_threads, "blocking", Plain, Gauge, "Threads in the blocking pool: num_blocking_threads (tokio_unstable)."),
    field!(idle_blocking_threads, "idleblocking", Plain, Gauge, "Idle threads in the blocking pool: num_idle_blocking_threads (tokio_unstable)."),
    field!(global_queue_depth, "runqueue", Plain, Gauge, "Tasks in the global (injection) queue (Go's runqueue): global_queue_depth."),
    // No text key: the SCHED text line stays Go's shape; JSON lines, /metrics and /debug/vars carry it.
    field!(stalls, "", Plain, Counter, "Polls that held a worker stalltrace ms or more (RDEBUG=stalltrace; the STALL lines)."),
];

/// The blocking-pool `scheddetail` line.
#[rustfmt::skip]
pub(crate) static BLOCKING: &[Field<SchedStats>] = &[
    field!(blocking_threads, "threads", Plain, Gauge, "Threads in the blocking pool: num_blocking_threads (tokio_unstable)."),
    field!(idle_blocking_threads, "idle", Plain, Gauge, "Idle threads in the blocking pool: num_idle_blocking_threads (tokio_unstable)."),
    field!(blocking_queue_depth, "queue", Plain, Gauge, "Tasks waiting for a blocking-pool thread: blocking_queue_depth (tokio_unstable)."),
];

/// A worker's `scheddetail` line, in its text order (`busy%` follows `busy`).
#[rustfmt::skip]
pub(crate) static WORKER: &[Field<WorkerStats>] = &[
    field!(parked, "parked", Plain, Gauge, "1 if the worker is parked now: worker_park_unpark_count is odd."),
    field!(park_count, "parks", Plain, Counter, "Times the worker parked: worker_park_count."),
    field!(busy_ns, "busy", NsAsMs, Counter, "Time the worker was busy, ns: worker_total_busy_duration (flushed at park or every 61 ticks)."),
    field!(polls, "polls", Plain, Counter, "Task polls: worker_poll_count (tokio_unstable)."),
    field!(steals, "steals", Plain, Counter, "Tasks stolen from other workers: worker_steal_count (tokio_unstable)."),
    field!(noops, "noops", Plain, Counter, "Unparks that found no work: worker_noop_count (tokio_unstable)."),
    field!(local_queue_depth, "runqsize", Plain, Gauge, "Tasks in the worker's local queue: worker_local_queue_depth (tokio_unstable)."),
    field!(mean_poll_ns, "meanpoll", NsAsUs, Gauge, "Mean task poll time, ns: worker_mean_poll_time (tokio_unstable; none before the first poll)."),
    field!(park_unpark_count, "", Plain, Counter, "Parks plus unparks: worker_park_unpark_count."),
];

/// The `gc` line (its text shows these by position, Go's way).
#[rustfmt::skip]
pub(crate) static GC: &[Field<GcCycle>] = &[
    field!(num, "", Plain, Counter, "Cycle number, from 1."),
    field!(at_ms, "", Plain, Gauge, "When the cycle closed, ms since init."),
    field!(cpu_fraction, "", Plain, Gauge, "Allocator CPU share since init, 0 to 1."),
    field!(before, "", Plain, Gauge, "Footprint (active + dirty + muzzy) just before the cycle, bytes."),
    field!(after, "", Plain, Gauge, "Footprint at the end of the cycle, bytes."),
    field!(live, "", Plain, Gauge, "Live heap at the end of the cycle, bytes."),
    field!(goal, "", Plain, Gauge, "Goal in effect for the cycle, bytes (0: gcpercent=off)."),
    field!(procs, "", Plain, Gauge, "Workers the CPU share is divided by."),
    field!(forced, "", Plain, Gauge, "The program forced the cycle (free_os_memory)."),
];

/// The `gctrace=2` detail line (its text shows these by position).
#[rustfmt::skip]
pub(crate) static GC_DETAIL: &[Field<GcCycle>] = &[
    field!(num, "", Plain, Counter, "Cycle number, from 1."),
    field!(span_ms, "", Plain, Gauge, "Time since the previous cycle closed, ms."),
    field!(allocated_bytes, "", Plain, Counter, "Bytes allocated during the cycle."),
    field!(allocs, "", Plain, Counter, "Allocation calls during the cycle."),
    field!(allocated_bytes_per_sec, "", Plain, Gauge, "Bytes allocated per second during the cycle."),
    field!(allocs_per_sec, "", Plain, Gauge, "Allocation calls per second during the cycle."),
    field!(freed_bytes, "", Plain, Counter, "Bytes freed during the cycle."),
    field!(frees, "", Plain, Counter, "Deallocation calls during the cycle."),
    field!(freed_bytes_per_sec, "", Plain, Gauge, "Bytes freed per second during the cycle."),
    field!(frees_per_sec, "", Plain, Gauge, "Deallocation calls per second during the cycle."),
    field!(purge_sweeps, "", Plain, Counter, "jemalloc purge sweeps during the cycle."),
    field!(purged, "", Plain, Counter, "Bytes purged during the cycle."),
    field!(resident, "", Plain, Gauge, "jemalloc stats.resident at the end of the cycle, bytes."),
    field!(retained, "", Plain, Gauge, "jemalloc stats.retained at the end of the cycle, bytes."),
    field!(metadata, "", Plain, Gauge, "jemalloc stats.metadata at the end of the cycle, bytes."),
    field!(rss, "", Plain, Gauge, "Process resident set size at the end of the cycle, bytes."),
];

/// [`MemStats`], Go's names in snake_case.
#[rustfmt::skip]
#[cfg_attr(not(all(test, feature = "serde")), allow(dead_code))]
pub(crate) static MEMSTATS: &[Field<MemStats>] = &[
    field!(alloc, "", Plain, Gauge, "Bytes in live heap objects, by requested size (rdebug's counters: total_alloc - freed); same as heap_alloc."),
    field!(total_alloc, "", Plain, Counter, "Bytes allocated over the process's life, by requested size (rdebug's counters)."),
    field!(sys, "", Plain, Gauge, "Memory obtained from the OS: jemalloc mapped + dirty + muzzy + retained + metadata."),
    field!(mallocs, "", Plain, Counter, "Allocation calls over the process's life (rdebug's counters)."),
    field!(frees, "", Plain, Counter, "Deallocation calls over the process's life (rdebug's counters)."),
    field!(heap_alloc, "", Plain, Gauge, "Bytes in live heap objects, by requested size (rdebug's counters)."),
    field!(heap_sys, "", Plain, Gauge, "Heap memory from the OS: heap_inuse + heap_idle."),
    field!(heap_idle, "", Plain, Gauge, "Heap memory not in use: jemalloc dirty + muzzy + retained."),
    field!(heap_inuse, "", Plain, Gauge, "Bytes in pages with live objects: jemalloc stats.active."),
    field!(heap_released, "", Plain, Gauge, "Heap memory given back to the OS: jemalloc muzzy + retained."),
    field!(heap_objects, "", Plain, Gauge, "Live objects: mallocs - frees."),
    field!(next_gc, "", Plain, Gauge, "Goal of the next allocator cycle, bytes."),
    field!(last_gc, "", Plain, Gauge, "When the last allocator cycle closed, ns since the Unix epoch (0: none yet)."),
    field!(num_gc, "", Plain, Counter, "Allocator cycles closed."),
    field!(num_forced_gc, "", Plain, Counter, "Allocator cycles forced by free_os_memory."),
    field!(pause_total_ns, "", Plain, Counter, "Time spent in forced purges, ns."),
    field!(gc_cpu_fraction, "", Plain, Gauge, "Allocator CPU share since init, 0 to 1."),
    field!(allocated, "", Plain, Gauge, "jemalloc's own live bytes, stats.allocated: size-class rounded, incl. objects in its thread caches."),
    field!(resident, "", Plain, Gauge, "Physically resident pages jemalloc maps: stats.resident."),
    field!(retained, "", Plain, Gauge, "Virtual memory jemalloc keeps mapped but returned to the OS: stats.retained."),
    field!(mapped, "", Plain, Gauge, "Memory in active extents: jemalloc stats.mapped."),
    field!(metadata, "", Plain, Gauge, "jemalloc's own metadata: stats.metadata."),
    field!(dirty, "", Plain, Gauge, "Freed pages not yet returned to the OS: jemalloc pdirty x page size."),
    field!(muzzy, "", Plain, Gauge, "Pages lazily returned to the OS (MADV_FREE): jemalloc pmuzzy x page size."),
    field!(purged, "", Plain, Counter, "Bytes jemalloc purged over the process's life."),
    field!(rss, "", Plain, Gauge, "Resident set size of the whole process: /proc/self/statm."),
];

/// The unit part of a Prometheus name, and how the value is scaled for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) enum PromUnit {
    /// A count or a share: no unit in the name.
    None,
    /// `_bytes`.
    Bytes,
    /// `_seconds`; the figure is in nanoseconds and is divided by 1e9.
    NsAsSeconds,
}

/// A figure's Prometheus name, as a table's naming hook gives it:
/// `rdebug_<group>_<stem>[_<unit>]`, then `_total` for a [`Kind::Counter`]. The exporters build
/// the name from this and the field's kind; HELP is the field's `help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) struct PromName {
    /// `memstats`, `gc`, `sched`, `sched_worker`; empty for a process-wide figure that needs no
    /// group (`rdebug_threads`).
    pub group: &'static str,
    /// The key, or the client_golang word for it.
    pub stem: &'static str,
    /// The unit suffix.
    pub unit: PromUnit,
}

const fn prom(group: &'static str, stem: &'static str, unit: PromUnit) -> PromName {
    PromName { group, stem, unit }
}

/// Naming hook of [`MEMSTATS`]: client_golang's `go_memstats_*` / `go_gc_*` names. A figure is
/// `rdebug_memstats_<key>_bytes` unless named here.
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) fn memstats_prom(key: &'static str) -> PromName {
    use PromUnit::*;
    match key {
        // go_memstats_alloc_bytes_total
        "total_alloc" => prom("memstats", "alloc", Bytes),
        "mallocs" | "frees" | "heap_objects" => prom("memstats", key, None),
        // go_memstats_last_gc_time_seconds
        "last_gc" => prom("memstats", "last_gc_time", NsAsSeconds),
        "num_gc" => prom("gc", "cycles", None),
        "num_forced_gc" => prom("gc", "forced_cycles", None),
        "pause_total_ns" => prom("gc", "pause", NsAsSeconds),
        "gc_cpu_fraction" => prom("gc", "cpu_fraction", None),
        _ => prom("memstats", key, Bytes),
    }
}

/// Naming hook of [`SCHED`] and [`BLOCKING`]: `rdebug_sched_<key>` (one series per watched
/// runtime), except the process-wide thread count, `rdebug_threads`.
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) fn sched_prom(key: &'static str) -> PromName {
    match key {
        "threads" => prom("", key, PromUnit::None),
        _ => prom("sched", key, PromUnit::None),
    }
}

/// Naming hook of [`WORKER`]: `rdebug_sched_worker_<key>` (one series per worker), a key
/// ending in `_ns` in seconds without it, and counts named as counters are.
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) fn worker_prom(key: &'static str) -> PromName {
    match key {
        "park_count" => prom("sched_worker", "parks", PromUnit::None),
        "park_unpark_count" => prom("sched_worker", "park_unparks", PromUnit::None),
        _ => match key.strip_suffix("_ns") {
            Some(stem) => prom("sched_worker", stem, PromUnit::NsAsSeconds),
            None => prom("sched_worker", key, PromUnit::None),
        },
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn serde_keys(v: impl serde::Serialize) -> BTreeSet<String> {
        let json = serde_json::to_value(v).expect("serializes");
        json.as_object().expect("object").keys().cloned().collect()
    }

    fn keys<R>(table: &[Field<R>]) -> BTreeSet<String> {
        table.iter().map(|f| f.key.to_owned()).collect()
    }

    #[test]
    fn every_table_names_serde_fields_and_memstats_is_complete() {
        let sched = serde_keys(SchedStats::default());
        assert!(keys(SCHED).is_subset(&sched));
        assert!(keys(BLOCKING).is_subset(&sched));
        let worker = serde_keys(WorkerStats::default());
        assert_eq!(
            keys(WORKER),
            worker,
            "every WorkerStats field is in its line"
        );
        let gc = serde_keys(GcCycle::default());
        let both: BTreeSet<_> = keys(GC).union(&keys(GC_DETAIL)).cloned().collect();
        assert_eq!(both, gc, "every GcCycle field is on a gc line");
        assert_eq!(keys(MEMSTATS), serde_keys(MemStats::default()));
        for t in [SCHED, BLOCKING] {
            // `stalls` alone is left out of the text SCHED line: STALL lines say it.
            assert!(
                t.iter()
                    .all(|f| !f.help.is_empty() && (!f.text.is_empty() || f.key == "stalls"))
            );
        }
        assert!(MEMSTATS.iter().all(|f| !f.help.is_empty()));
    }
}
