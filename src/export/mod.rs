//! Exporters: every rdebug figure in the Prometheus text format ([`prometheus_text`], what the
//! debug server's `/metrics` serves; feature `prometheus`, implied by `http`) and through the
//! [`metrics`](https://docs.rs/metrics) facade ([`publish_metrics`], feature `metrics`).
//!
//! Both name the figures from the same field tables as the SCHED and gc lines and the serde
//! fields: client_golang's names with an `rdebug_` prefix, `_bytes` / `_seconds` for the unit
//! (nanosecond figures are exported in seconds), `_total` for counters, HELP from the field's doc.
//! Scheduler figures carry a `runtime` label (the name given to [`watch_named`](crate::watch_named),
//! the runtime's tokio name, `rt<id>`, or `main` for the one [`init`](crate::init) watched), and
//! per-worker figures a `worker` label too. Figures that need `--cfg tokio_unstable` are left out
//! without it (not exported as 0). The `process_*` set is client_golang's standard process
//! collector.
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `process_cpu_seconds_total` | counter | | `/proc/self/stat` utime + stime |
//! | `process_open_fds` | gauge | | entries of `/proc/self/fd` |
//! | `process_max_fds` | gauge | | soft `RLIMIT_NOFILE` |
//! | `process_virtual_memory_bytes` | gauge | | `/proc/self/statm` size |
//! | `process_resident_memory_bytes` | gauge | | `/proc/self/statm` resident |
//! | `process_start_time_seconds` | gauge | | `/proc/self/stat` starttime + `/proc/stat` btime |
//! | `rdebug_memstats_alloc_bytes` | gauge | | [`MemStats::alloc`](crate::MemStats::alloc) |
//! | `rdebug_memstats_alloc_bytes_total` | counter | | `total_alloc` |
//! | `rdebug_memstats_sys_bytes` | gauge | | `sys` |
//! | `rdebug_memstats_mallocs_total` | counter | | `mallocs` |
//! | `rdebug_memstats_frees_total` | counter | | `frees` |
//! | `rdebug_memstats_heap_alloc_bytes` | gauge | | `heap_alloc` |
//! | `rdebug_memstats_heap_sys_bytes` | gauge | | `heap_sys` |
//! | `rdebug_memstats_heap_idle_bytes` | gauge | | `heap_idle` |
//! | `rdebug_memstats_heap_inuse_bytes` | gauge | | `heap_inuse` |
//! | `rdebug_memstats_heap_released_bytes` | gauge | | `heap_released` |
//! | `rdebug_memstats_heap_objects` | gauge | | `heap_objects` |
//! | `rdebug_memstats_next_gc_bytes` | gauge | | `next_gc` |
//! | `rdebug_memstats_last_gc_time_seconds` | gauge | | `last_gc` (ns) / 1e9 |
//! | `rdebug_gc_cycles_total` | counter | | `num_gc` |
//! | `rdebug_gc_forced_cycles_total` | counter | | `num_forced_gc` |
//! | `rdebug_gc_pause_seconds_total` | counter | | `pause_total_ns` / 1e9 |
//! | `rdebug_gc_cpu_fraction` | gauge | | `gc_cpu_fraction` |
//! | `rdebug_memstats_allocated_bytes` | gauge | | `allocated` (jemalloc's `stats.allocated`) |
//! | `rdebug_memstats_resident_bytes` | gauge | | `resident` |
//! | `rdebug_memstats_retained_bytes` | gauge | | `retained` |
//! | `rdebug_memstats_mapped_bytes` | gauge | | `mapped` |
//! | `rdebug_memstats_metadata_bytes` | gauge | | `metadata` |
//! | `rdebug_memstats_dirty_bytes` | gauge | | `dirty` |
//! | `rdebug_memstats_muzzy_bytes` | gauge | | `muzzy` |
//! | `rdebug_memstats_purged_bytes_total` | counter | | `purged` |
//! | `rdebug_memstats_rss_bytes` | gauge | | `rss` |
//! | `rdebug_threads` | gauge | | [`SchedStats::threads`](crate::SchedStats::threads) (process-wide) |
//! | `rdebug_sched_workers` | gauge | runtime | `workers` |
//! | `rdebug_sched_idle_workers` | gauge | runtime | `idle_workers` |
//! | `rdebug_sched_tasks` | gauge | runtime | `tasks` |
//! | `rdebug_sched_blocking_threads` | gauge | runtime | `blocking_threads` (tokio_unstable) |
//! | `rdebug_sched_idle_blocking_threads` | gauge | runtime | `idle_blocking_threads` (tokio_unstable) |
//! | `rdebug_sched_global_queue_depth` | gauge | runtime | `global_queue_depth` |
//! | `rdebug_sched_stalls_total` | counter | runtime | `stalls` (`RDEBUG=stalltrace`) |
//! | `rdebug_sched_stall_seconds` | histogram | runtime | each stall's length once its poll ended (the STALL-END lines; `/metrics` only, not the `metrics` facade) |
//! | `rdebug_sched_blocking_queue_depth` | gauge | runtime | `blocking_queue_depth` (tokio_unstable) |
//! | `rdebug_sched_worker_parked` | gauge | runtime, worker | [`WorkerStats::parked`](crate::WorkerStats::parked) (0/1) |
//! | `rdebug_sched_worker_parks_total` | counter | runtime, worker | `park_count` |
//! | `rdebug_sched_worker_busy_seconds_total` | counter | runtime, worker | `busy_ns` / 1e9 |
//! | `rdebug_sched_worker_polls_total` | counter | runtime, worker | `polls` (tokio_unstable) |
//! | `rdebug_sched_worker_steals_total` | counter | runtime, worker | `steals` (tokio_unstable) |
//! | `rdebug_sched_worker_noops_total` | counter | runtime, worker | `noops` (tokio_unstable) |
//! | `rdebug_sched_worker_local_queue_depth` | gauge | runtime, worker | `local_queue_depth` (tokio_unstable) |
//! | `rdebug_sched_worker_mean_poll_seconds` | gauge | runtime, worker | `mean_poll_ns` / 1e9 (tokio_unstable) |
//! | `rdebug_sched_worker_park_unparks_total` | counter | runtime, worker | `park_unpark_count` |
//!
//! A unit test checks that this table lists exactly the names produced.
//!
//! Each scrape or publish takes one snapshot: one [`memstats`](crate::memstats) read, the
//! scheduler figures of every watched runtime, and a few `/proc` reads.

#[cfg(feature = "metrics")]
mod facade;
mod names;
mod process;
#[cfg(feature = "prometheus")]
pub(crate) mod prometheus;
mod snapshot;

#[cfg(feature = "metrics")]
pub use facade::publish_metrics;
#[cfg(feature = "prometheus")]
pub use prometheus::CONTENT_TYPE;

/// Every rdebug figure in the Prometheus text exposition format (version 0.0.4), read now:
/// what the debug server serves at `/metrics`, for programs that serve it themselves. Serve it
/// with [`CONTENT_TYPE`]. The names are listed in the [module docs](self).
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let held = vec![1u8; 16 << 20];
/// let text = rdebug::export::prometheus_text();
/// let heap: f64 = text
///     .lines()
///     .find_map(|l| l.strip_prefix("rdebug_memstats_heap_alloc_bytes "))
///     .unwrap()
///     .parse()
///     .unwrap();
/// assert!(heap >= (16 << 20) as f64);
/// assert!(text.contains("# TYPE rdebug_memstats_mallocs_total counter"));
/// drop(held);
/// ```
#[cfg(feature = "prometheus")]
pub fn prometheus_text() -> String {
    let mut out = String::with_capacity(8 << 10);
    prometheus::render(&mut out);
    out
}
