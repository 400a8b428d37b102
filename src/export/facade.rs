//! Publishing the figures through the `metrics` facade, for programs that already run a
//! recorder (metrics-exporter-prometheus, statsd, ...), as tokio-metrics does.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::names::{Metric, Num, names};
use super::process::PROCESS;
use super::snapshot::{self, Snapshot};
use crate::stats::fields::{Kind, PromUnit};

/// Sets every rdebug figure, read now, on the installed `metrics` recorder: the same names,
/// labels and HELP texts as [`prometheus_text`](super::prometheus_text) (see the
/// [module docs](super)). Call it once per scrape or interval; it starts no thread.
///
/// Integer counters are set with `Counter::absolute`; the figures the exposition shows as
/// counters in seconds (`process_cpu_seconds_total`, `rdebug_gc_pause_seconds_total`,
/// `rdebug_sched_worker_busy_seconds_total`) are gauges here, as the facade's counters hold
/// integers only. Each call also describes every metric (unit and HELP) to the recorder. With no
/// recorder installed it only costs the read.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // With a recorder installed (e.g. metrics_exporter_prometheus::PrometheusBuilder):
/// let publisher = tokio::spawn(async {
///     let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
///     loop {
///         every.tick().await;
///         rdebug::export::publish_metrics();
///     }
/// });
/// # tokio::task::yield_now().await;
/// # publisher.abort();
/// # }
/// ```
pub fn publish_metrics() {
    publish(&snapshot::take());
}

fn unit(u: PromUnit) -> Option<Unit> {
    match u {
        PromUnit::None => None,
        PromUnit::Bytes => Some(Unit::Bytes),
        PromUnit::NsAsSeconds => Some(Unit::Seconds),
    }
}

/// Sets one series of `name`.
fn set(name: &'static str, kind: Kind, v: Num, labels: &[(&'static str, String)]) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect();
    match (kind, v) {
        (Kind::Counter, Num::Int(v)) => counter!(name, labels).absolute(v),
        (_, v) => gauge!(name, labels).set(v.as_f64()),
    }
}

fn describe(name: &'static str, kind: Kind, v: Num, u: PromUnit, help: &'static str) {
    let is_counter = kind == Kind::Counter && matches!(v, Num::Int(_));
    match (is_counter, unit(u)) {
        (true, Some(u)) => describe_counter!(name, u, help),
        (true, None) => describe_counter!(name, help),
        (false, Some(u)) => describe_gauge!(name, u, help),
        (false, None) => describe_gauge!(name, help),
    }
}

fn one<R>(m: &'static Metric<R>, r: &R, labels: &[(&'static str, String)]) {
    if let Some(v) = m.value(r) {
        describe(&m.name, m.field.kind, v, m.unit, m.field.help);
        set(&m.name, m.field.kind, v, labels);
    }
}

pub(crate) fn publish(s: &Snapshot) {
    for p in PROCESS {
        if let Some(v) = (p.get)(&s.process) {
            describe(p.name, p.kind, v, p.unit, p.help);
            set(p.name, p.kind, v, &[]);
        }
    }
    let n = names();
    for m in &n.mem {
        one(m, &s.mem, &[]);
    }
    for m in &n.sched {
        if !m.per_runtime {
            one(m, &s.process_sched, &[]);
            continue;
        }
        for (label, st) in &s.runtimes {
            one(m, st, &[("runtime", label.clone())]);
        }
    }
    for m in &n.worker {
        for (label, st) in &s.runtimes {
            for (i, w) in st.per_worker.iter().enumerate() {
                one(
                    m,
                    w,
                    &[("runtime", label.clone()), ("worker", i.to_string())],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// Every MemStats figure is published with exactly the snapshot's value, under its name.
    #[test]
    fn every_memstats_figure_is_published_exactly() {
        let s = snapshot::take();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || publish(&s));
        let got: Vec<(String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().labels().next().is_none())
            .map(|(k, _, _, v)| {
                let v = match v {
                    DebugValue::Counter(c) => c as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                };
                (k.key().name().to_owned(), v)
            })
            .collect();
        for m in &names().mem {
            let want = m
                .value(&s.mem)
                .expect("memstats figures are always there")
                .as_f64();
            let found = got.iter().find(|(n, _)| *n == m.name).map(|(_, v)| *v);
            assert_eq!(found, Some(want), "{}", m.name);
        }
    }
}
