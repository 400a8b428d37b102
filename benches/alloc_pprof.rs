//! Alloc + free pairs through `rdebug::Alloc` in a build with the `pprof` feature (jemalloc
//! built with `--enable-prof`): heap sampling on at Go's rate (512 KiB) against sampling
//! paused (`prof.active=false`), in the same run. Compare `alloc_rdebug` built without `pprof`
//! for the cost of `--enable-prof` itself.

#[path = "common/alloc_loop.rs"]
mod alloc_loop;

use criterion::Criterion;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn main() {
    if alloc_loop::fixed_steps() {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    rdebug::profile::set_memprofilerate(524_288).expect("jemalloc profiling");
    alloc_loop::bench_alloc(&mut c, "alloc_pprof_sampling_on");
    rdebug::profile::set_memprofilerate(0).expect("jemalloc profiling");
    alloc_loop::bench_alloc(&mut c, "alloc_pprof_sampling_off");
    c.final_summary();
}
