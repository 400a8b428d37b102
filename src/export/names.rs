//! Prometheus names of every figure, built once from the field tables and their naming hooks
//! ([`memstats_prom`], [`sched_prom`], [`worker_prom`]): `rdebug_<group>_<stem>[_<unit>]`, then
//! `_total` for a counter. No figure is named anywhere else.

use std::sync::OnceLock;

use crate::stats::fields::{
    BLOCKING, Field, Kind, MEMSTATS, PromName, PromUnit, SCHED, Value, WORKER, memstats_prom,
    sched_prom, worker_prom,
};
use crate::stats::{MemStats, SchedStats, WorkerStats};

/// A value as the exporters write it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    /// A whole number.
    Int(u64),
    /// A share, or seconds.
    Float(f64),
}

impl Num {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }
}

/// One figure of a record `R` with its Prometheus name.
#[derive(Debug)]
pub(crate) struct Metric<R: 'static> {
    pub field: &'static Field<R>,
    /// Without the unit and `_total`, which the encoder adds: `rdebug_memstats_heap_alloc`.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub stem: String,
    /// The whole name: `rdebug_memstats_heap_alloc_bytes`.
    #[cfg_attr(not(any(test, feature = "metrics")), allow(dead_code))]
    pub name: String,
    pub unit: PromUnit,
    /// One series per watched runtime (`runtime` label); false for process-wide figures.
    pub per_runtime: bool,
}

impl<R> Metric<R> {
    fn new(field: &'static Field<R>, p: PromName, per_runtime: bool) -> Self {
        let mut stem = String::from("rdebug_");
        if !p.group.is_empty() {
            stem.push_str(p.group);
            stem.push('_');
        }
        stem.push_str(p.stem);
        let name = full_name(&stem, p.unit, field.kind);
        Metric {
            field,
            stem,
            name,
            unit: p.unit,
            per_runtime,
        }
    }

    /// The figure of `r`, scaled for the name's unit; `None` when this build lacks it.
    pub(crate) fn value(&self, r: &R) -> Option<Num> {
        num((self.field.get)(r), self.unit)
    }
}

/// `stem` + unit suffix + `_total` for a counter.
pub(crate) fn full_name(stem: &str, unit: PromUnit, kind: Kind) -> String {
    let mut name = String::from(stem);
    name.push_str(match unit {
        PromUnit::None => "",
        PromUnit::Bytes => "_bytes",
        PromUnit::NsAsSeconds => "_seconds",
    });
    if kind == Kind::Counter {
        name.push_str("_total");
    }
    name
}

fn num(v: Value, unit: PromUnit) -> Option<Num> {
    Some(match (v, unit) {
        (Value::Missing, _) => return None,
        (Value::Int(ns), PromUnit::NsAsSeconds) => Num::Float(ns as f64 / 1e9),
        (Value::Int(v), _) => Num::Int(v),
        (Value::Bool(b), _) => Num::Int(u64::from(b)),
        (Value::Float(v), _) => Num::Float(v),
    })
}

/// Every figure's name, per record kind, in table order.
#[derive(Debug)]
pub(crate) struct Names {
    pub mem: Vec<Metric<MemStats>>,
    /// [`SCHED`], then what [`BLOCKING`] adds to it.
    pub sched: Vec<Metric<SchedStats>>,
    pub worker: Vec<Metric<WorkerStats>>,
}

/// Built on first use (one `String` pair per figure, kept for the process's life).
pub(crate) fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut sched: Vec<Metric<SchedStats>> = Vec::new();
        for f in SCHED.iter().chain(BLOCKING) {
            if !sched.iter().any(|m| m.field.key == f.key) {
                // A figure with no group is process-wide (`rdebug_threads`).
                let p = sched_prom(f.key);
                sched.push(Metric::new(f, p, !p.group.is_empty()));
            }
        }
        Names {
            mem: MEMSTATS
                .iter()
                .map(|f| Metric::new(f, memstats_prom(f.key), false))
                .collect(),
            sched,
            worker: WORKER
                .iter()
                .map(|f| Metric::new(f, worker_prom(f.key), true))
                .collect(),
        }
    })
}

/// The stem of the stall-length histogram (`/metrics` only): `rdebug_sched_stall_seconds`.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
pub(crate) const STALL_STEM: &str = "rdebug_sched_stall";

/// Every name the exporters produce in this build, `process_*` included.
#[cfg(test)]
pub(crate) fn all_names() -> Vec<String> {
    let n = names();
    let mut all: Vec<String> = super::process::PROCESS
        .iter()
        .map(|p| {
            assert_eq!(full_name(p.stem, p.unit, p.kind), p.name);
            p.name.to_owned()
        })
        .collect();
    all.extend(n.mem.iter().map(|m| m.name.clone()));
    all.extend(n.sched.iter().map(|m| m.name.clone()));
    all.extend(n.worker.iter().map(|m| m.name.clone()));
    // The stall-length histogram, which `/metrics` writes beside the field tables.
    all.push(full_name(STALL_STEM, PromUnit::NsAsSeconds, Kind::Gauge));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names DESIGN.md fixes (client_golang's, with `rdebug_` in front).
    const FIXED: &[&str] = &[
        "rdebug_memstats_alloc_bytes",
        "rdebug_memstats_alloc_bytes_total",
        "rdebug_memstats_heap_alloc_bytes",
        "rdebug_memstats_heap_sys_bytes",
        "rdebug_memstats_heap_idle_bytes",
        "rdebug_memstats_heap_inuse_bytes",
        "rdebug_memstats_heap_released_bytes",
        "rdebug_memstats_heap_objects",
        "rdebug_memstats_mallocs_total",
        "rdebug_memstats_frees_total",
        "rdebug_memstats_sys_bytes",
        "rdebug_memstats_next_gc_bytes",
        "rdebug_memstats_last_gc_time_seconds",
        "rdebug_gc_cycles_total",
        "rdebug_gc_forced_cycles_total",
        "rdebug_gc_cpu_fraction",
        "rdebug_threads",
        "rdebug_sched_workers",
        "rdebug_sched_idle_workers",
        "rdebug_sched_tasks",
        "rdebug_sched_global_queue_depth",
        "rdebug_sched_stalls_total",
        "rdebug_sched_blocking_threads",
        "rdebug_sched_idle_blocking_threads",
        "rdebug_sched_blocking_queue_depth",
        "rdebug_sched_worker_local_queue_depth",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ];

    #[test]
    fn every_fixed_name_is_produced_and_names_are_unique_and_valid() {
        let all = all_names();
        for name in FIXED {
            assert!(all.iter().any(|n| n == name), "{name} is not produced");
        }
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a name is produced twice: {all:?}");
        for n in &all {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !n.starts_with(|c: char| c.is_ascii_digit()),
                "{n} is not a plain metric name"
            );
            assert!(
                !n.contains("__") && !n.ends_with("_count") && !n.ends_with("_ns"),
                "{n}"
            );
        }
        let n = names();
        let kinds = (n.mem.iter().map(|m| (&m.name, m.field.kind)))
            .chain(n.sched.iter().map(|m| (&m.name, m.field.kind)))
            .chain(n.worker.iter().map(|m| (&m.name, m.field.kind)));
        for (name, kind) in kinds {
            assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        }
    }

    /// The module docs' table lists exactly the names produced (it cannot drift from the tables).
    #[test]
    fn the_docs_table_lists_every_name() {
        let docs = include_str!("mod.rs");
        let table: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let mut all = all_names();
        all.sort();
        let mut listed: Vec<String> = table.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(
            listed, all,
            "src/export/mod.rs's table vs the names produced"
        );
    }
}
