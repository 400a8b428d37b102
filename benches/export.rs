//! What one Prometheus scrape costs: `export/prometheus_text` (a whole render into a new
//! `String`: one `memstats()`, the scheduler figures of the watched 2-worker runtime, the
//! `/proc` reads, and the encoding) against `export/memstats` (a bare `rdebug::memstats()`, the
//! read every render starts with) in the same run; the ratio of their times is the price of the
//! exposition on top of the read. Before timing, it prints what one render allocates (calls and
//! bytes, from rdebug's own counters over 1000 renders) and how long its output is.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rdebug::watch(rt.handle());
    let _ = rdebug::export::prometheus_text(); // first use builds the names and the registry

    const N: u64 = 1000;
    let a0 = rdebug::alloc_counters();
    let mut len = 0;
    for _ in 0..N {
        len = black_box(rdebug::export::prometheus_text()).len();
    }
    let a1 = rdebug::alloc_counters();
    for _ in 0..N {
        black_box(rdebug::memstats());
    }
    let a2 = rdebug::alloc_counters();
    eprintln!(
        "export: one render allocates {} calls, {} bytes ({} bytes of text); one memstats() {} calls, {} bytes",
        (a1.allocs - a0.allocs) / N,
        (a1.allocated_bytes - a0.allocated_bytes) / N,
        len,
        (a2.allocs - a1.allocs) / N,
        (a2.allocated_bytes - a1.allocated_bytes) / N,
    );

    let mut g = c.benchmark_group("export");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(40);
    g.bench_function("memstats", |b| b.iter(|| black_box(rdebug::memstats())));
    g.bench_function("prometheus_text", |b| {
        b.iter(|| black_box(rdebug::export::prometheus_text()))
    });
    g.finish();
    drop(rt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
