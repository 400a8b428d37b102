//! The standard process collector set (client_golang's `process_*` names, HELP texts and
//! sources), read from `/proc` into stack buffers. These are Prometheus's names, not rdebug
//! figures, so they have no field table of their own.

use super::names::Num;
use crate::stats::fields::{Kind, PromUnit};
use crate::sys::proc::{max_fds, open_fds, process_files};

/// The process figures, read together.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessStats {
    cpu_ns: Option<u64>,
    resident: Option<u64>,
    virtual_size: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time: Option<f64>,
}

/// Reads them: `/proc/self/stat` and `statm` (kept open), `/proc/self/fd`, `getrlimit`.
pub(crate) fn read() -> ProcessStats {
    let f = process_files();
    ProcessStats {
        cpu_ns: f.cpu_ns(),
        resident: f.rss(),
        virtual_size: f.virtual_size(),
        open_fds: open_fds(),
        max_fds: max_fds(),
        start_time: f.start_time_secs(),
    }
}

/// One process figure.
#[derive(Debug)]
pub(crate) struct ProcessMetric {
    /// Without the unit and `_total`.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub stem: &'static str,
    /// The whole name.
    #[cfg_attr(not(any(test, feature = "metrics")), allow(dead_code))]
    pub name: &'static str,
    pub unit: PromUnit,
    pub kind: Kind,
    pub help: &'static str,
    pub get: fn(&ProcessStats) -> Option<Num>,
}

/// client_golang's process collector, in its order.
pub(crate) static PROCESS: &[ProcessMetric] = &[
    ProcessMetric {
        stem: "process_cpu",
        name: "process_cpu_seconds_total",
        unit: PromUnit::NsAsSeconds,
        kind: Kind::Counter,
        help: "Total user and system CPU time spent in seconds: /proc/self/stat utime + stime.",
        get: |p| p.cpu_ns.map(|ns| Num::Float(ns as f64 / 1e9)),
    },
    ProcessMetric {
        stem: "process_open_fds",
        name: "process_open_fds",
        unit: PromUnit::None,
        kind: Kind::Gauge,
        help: "Number of open file descriptors: entries of /proc/self/fd.",
        get: |p| p.open_fds.map(Num::Int),
    },
    ProcessMetric {
        stem: "process_max_fds",
        name: "process_max_fds",
        unit: PromUnit::None,
        kind: Kind::Gauge,
        help: "Maximum number of open file descriptors: the soft RLIMIT_NOFILE.",
        get: |p| p.max_fds.map(Num::Int),
    },
    ProcessMetric {
        stem: "process_virtual_memory",
        name: "process_virtual_memory_bytes",
        unit: PromUnit::Bytes,
        kind: Kind::Gauge,
        help: "Virtual memory size in bytes: /proc/self/statm size.",
        get: |p| p.virtual_size.map(Num::Int),
    },
    ProcessMetric {
        stem: "process_resident_memory",
        name: "process_resident_memory_bytes",
        unit: PromUnit::Bytes,
        kind: Kind::Gauge,
        help: "Resident memory size in bytes: /proc/self/statm resident.",
        get: |p| p.resident.map(Num::Int),
    },
    ProcessMetric {
        stem: "process_start_time",
        name: "process_start_time_seconds",
        unit: PromUnit::NsAsSeconds,
        kind: Kind::Gauge,
        help: "Start time of the process since unix epoch in seconds: /proc/self/stat starttime + btime.",
        get: |p| p.start_time.map(Num::Float),
    },
];
