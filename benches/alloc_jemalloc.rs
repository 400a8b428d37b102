//! The baseline for `alloc_rdebug`: the same loop with plain `tikv_jemallocator::Jemalloc` (same
//! jemalloc build, `stats` on) as the global allocator.

#[path = "common/alloc_loop.rs"]
mod alloc_loop;

use criterion::{Criterion, criterion_group};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static ALLOC: Jemalloc = Jemalloc;

fn alloc(c: &mut Criterion) {
    alloc_loop::bench_alloc(c, "alloc_jemalloc");
}

criterion_group!(benches, alloc);
fn main() {
    if alloc_loop::fixed_steps() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
