//! Alloc + free pairs through `rdebug::Alloc`; compare with `alloc_jemalloc` (same loop, plain
//! jemalloc). `scripts/bench-ratios.sh` prints the ratio.

#[path = "common/alloc_loop.rs"]
mod alloc_loop;

use criterion::{Criterion, criterion_group};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn alloc(c: &mut Criterion) {
    alloc_loop::bench_alloc(c, "alloc_rdebug");
}

criterion_group!(benches, alloc);

/// `ALLOC_PAIRED=PAIRS` runs the paired cross-check instead of criterion: plain jemalloc and
/// `rdebug::Alloc` in one process, alternating bursts, on 1 and 2 threads. With
/// `ALLOC_PAIRED_SELF=jemalloc` or `=rdebug`, one allocator against itself (expect 1.00).
fn paired() -> bool {
    let Some(pairs) = std::env::var("ALLOC_PAIRED")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return false;
    };
    let pairs = pairs.max(1);
    for threads in [1, 2] {
        let [p25, p50, p75] = match std::env::var("ALLOC_PAIRED_SELF").as_deref() {
            // Sanity checks of the method: an allocator against itself gives 1.
            Ok("jemalloc") => alloc_loop::paired(&Jemalloc, &Jemalloc, threads, pairs),
            Ok("rdebug") => alloc_loop::paired(&ALLOC, &ALLOC, threads, pairs),
            _ => alloc_loop::paired(&Jemalloc, &ALLOC, threads, pairs),
        };
        println!(
            "paired {threads} thread(s), {pairs} burst pairs: rdebug/jemalloc median {p50:.3} \
             (p25 {p25:.3}, p75 {p75:.3})"
        );
    }
    true
}

fn main() {
    if alloc_loop::fixed_steps() || paired() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
