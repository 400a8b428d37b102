//! `rdebug::export::publish_metrics()` into a real `metrics` recorder (metrics-util's
//! `DebuggingRecorder`): the values it records are `memstats()`'s, bracketed by a read before and
//! after, and the live heap shows memory the test holds.
#![cfg(feature = "metrics")]

#[allow(unused_macros)] // this file runs no child
mod support;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// `name{labels}` -> value, as recorded.
fn publish() -> HashMap<String, f64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, rdebug::export::publish_metrics);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _help, value)| {
            let k = key.key();
            let labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                k.name().to_owned()
            } else {
                format!("{}{{{}}}", k.name(), labels.join(","))
            };
            let v = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => panic!("{name}: no histograms are published"),
            };
            (name, v)
        })
        .collect()
}

#[test]
fn published_values_are_memstats_and_sched_stats() {
    let rt = support::two_worker_runtime();
    rdebug::watch_named(rt.handle(), "app");
    let held = vec![1u8; 32 << 20];
    let m0 = rdebug::memstats();
    let got = publish();
    let m1 = rdebug::memstats();
    let v = |name: &str| {
        *got.get(name)
            .unwrap_or_else(|| panic!("{name} not published: {got:?}"))
    };

    // Counters: between the reads before and after.
    for (name, lo, hi) in [
        ("rdebug_memstats_mallocs_total", m0.mallocs, m1.mallocs),
        ("rdebug_memstats_frees_total", m0.frees, m1.frees),
        (
            "rdebug_memstats_alloc_bytes_total",
            m0.total_alloc,
            m1.total_alloc,
        ),
        ("rdebug_gc_cycles_total", m0.num_gc, m1.num_gc),
    ] {
        let x = v(name);
        assert!(
            lo as f64 <= x && x <= hi as f64,
            "{name}: {lo} <= {x} <= {hi}"
        );
    }
    // The live heap: what the test holds, and within what publishing itself allocated of the reads.
    let heap = v("rdebug_memstats_heap_alloc_bytes");
    assert!(
        heap >= held.len() as f64,
        "heap {heap} < held {}",
        held.len()
    );
    let slack = (m1.total_alloc - m0.total_alloc) as f64;
    for (name, lo, hi) in [
        (
            "rdebug_memstats_heap_alloc_bytes",
            m0.heap_alloc,
            m1.heap_alloc,
        ),
        ("rdebug_memstats_alloc_bytes", m0.alloc, m1.alloc),
    ] {
        let (lo, hi) = (lo.min(hi) as f64 - slack, lo.max(hi) as f64 + slack);
        let x = v(name);
        assert!(lo <= x && x <= hi, "{name}: {lo} <= {x} <= {hi}");
    }
    assert!((0.0..=1.0).contains(&v("rdebug_gc_cpu_fraction")));
    // Scheduler: the runtime's two workers, each with its own series.
    assert_eq!(v(r#"rdebug_sched_workers{runtime="app"}"#), 2.0);
    for w in 0..2 {
        let parked = v(&format!(
            r#"rdebug_sched_worker_parked{{runtime="app",worker="{w}"}}"#
        ));
        assert!(parked == 0.0 || parked == 1.0);
    }
    assert!(v("rdebug_threads") >= 3.0, "main + 2 workers");
    assert!(v("process_resident_memory_bytes") >= held.len() as f64);
    drop(held);
}
